//! A minimal HTTP/1.0 GET for the monitoring port (`/varz`): loopback or a trusted
//! network, plain HTTP, one JSON body; bounded by a timeout.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET {base}{path}` parsed as JSON.
///
/// # Errors
/// A URL that is not `http://host:port`, no answer within `limit`, a status other than
/// 200, or a body that is not JSON.
pub(super) async fn get_json(
    base: &str,
    path: &str,
    limit: Duration,
) -> anyhow::Result<serde_json::Value> {
    let Some(authority) = base.strip_prefix("http://") else {
        bail!("monitoring URL {base:?} must start with http://");
    };
    let authority = authority.trim_end_matches('/');
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        socket.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {base}{path} within {limit:?}"))?
        .with_context(|| format!("cannot read {base}{path}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.lines().next().is_some_and(|l| l.contains(" 200")) {
        bail!(
            "{base}{path} answered {:?}",
            head.lines().next().unwrap_or("")
        );
    }
    serde_json::from_str(body).with_context(|| format!("{base}{path} did not answer JSON"))
}

/// The monitoring URL to try when none is given: port 8222 on the first server's host.
pub(super) fn default_monitor_url(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = match host_port.rsplit_once(':') {
        Some((h, _)) => h,
        None => host_port,
    };
    format!("http://{host}:8222")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_url_defaults_to_the_server_host() {
        assert_eq!(
            default_monitor_url("nats://127.0.0.1:4222"),
            "http://127.0.0.1:8222"
        );
        assert_eq!(
            default_monitor_url("tls://u:p@nats-1:4222"),
            "http://nats-1:8222"
        );
        assert_eq!(default_monitor_url("localhost"), "http://localhost:8222");
    }
}
