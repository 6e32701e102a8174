//! A tiny HTTP/1.0 GET for the server's monitoring port (`/healthz`, `/jsz`): enough for
//! a local Go `net/http` server, so no HTTP client crate is needed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One monitoring response: status code and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Response {
    /// The body as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// `GET path` on `127.0.0.1:port`, all of it within `limit`.
///
/// # Errors
///
/// A description of what went wrong (connect, I/O, timeout, unparsable response); the
/// callers poll, so the error only ends up in a panic message.
pub(crate) async fn get(port: u16, path: &str, limit: Duration) -> Result<Response, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write request: {e}"))?;
        let mut raw = Vec::new();
        // HTTP/1.0 without keep-alive: the server closes the connection after the body.
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read response: {e}"))?;
        parse(&raw)
    };
    timeout(limit, exchange)
        .await
        .map_err(|_| format!("GET {path} on port {port}: no response within {limit:?}"))?
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed HTTP response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed HTTP status line: {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let raw = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"status\":\"unavailable\"}";
        let response = parse(raw).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.json().unwrap()["status"], "unavailable");
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse(b"nonsense").is_err());
    }
}
