//! Hostile input: messages published with the raw NATS protocol over a plain TCP socket, so a
//! test can store what no well-behaved client would send (a header block that is not UTF-8,
//! two headers differing only in case, a header line without a colon).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long [`publish_raw`] waits for the server at each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One message for [`publish_raw`].
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The subject, sent as it is.
    pub subject: String,
    /// The header block after the `NATS/1.0\r\n` version line: `name: value\r\n` lines, any
    /// bytes at all. `None` sends the message without headers (`PUB`).
    pub headers: Option<Vec<u8>>,
    /// The body.
    pub body: Vec<u8>,
}

impl RawMessage {
    /// A message with a header block of `lines` (each without its `\r\n`).
    pub fn with_headers(subject: &str, lines: &[&[u8]], body: impl Into<Vec<u8>>) -> Self {
        let mut block = Vec::new();
        for line in lines {
            block.extend_from_slice(line);
            block.extend_from_slice(b"\r\n");
        }
        Self {
            subject: subject.to_owned(),
            headers: Some(block),
            body: body.into(),
        }
    }

    /// The `HPUB`/`PUB` frame of this message.
    fn frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.headers {
            Some(lines) => {
                let mut hdr = b"NATS/1.0\r\n".to_vec();
                hdr.extend_from_slice(lines);
                hdr.extend_from_slice(b"\r\n");
                let total = hdr.len() + self.body.len();
                out.extend_from_slice(
                    format!("HPUB {} {} {total}\r\n", self.subject, hdr.len()).as_bytes(),
                );
                out.extend_from_slice(&hdr);
            }
            None => {
                out.extend_from_slice(
                    format!("PUB {} {}\r\n", self.subject, self.body.len()).as_bytes(),
                );
            }
        }
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Publishes `messages` in order on a fresh plain connection to `host:port` (no auth, no
/// TLS), then waits for the server's `PONG`, so that every message was read by the server
/// before it returns. A JetStream stream stores them a moment later: await
/// [`crate::wait_for_stream_messages`] before reading the stream.
///
/// # Panics
/// If the server cannot be reached, refuses a frame (`-ERR`), or does not answer in time.
pub async fn publish_raw(port: u16, messages: &[RawMessage]) {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("raw publish: connect timed out")
        .expect("raw publish: connect failed");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let info = next_line(&mut lines).await;
    assert!(
        info.starts_with("INFO "),
        "raw publish: expected INFO, got {info:?}"
    );
    let mut out =
        br#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}"#.to_vec();
    out.extend_from_slice(b"\r\n");
    for m in messages {
        out.extend_from_slice(&m.frame());
    }
    out.extend_from_slice(b"PING\r\n");
    tokio::time::timeout(STEP_TIMEOUT, write.write_all(&out))
        .await
        .expect("raw publish: write timed out")
        .expect("raw publish: write failed");
    loop {
        let line = next_line(&mut lines).await;
        assert!(
            !line.starts_with("-ERR"),
            "raw publish: server refused: {line}"
        );
        if line == "PONG" {
            return;
        }
    }
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
) -> String {
    tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
        .await
        .expect("raw publish: no answer from the server in time")
        .expect("raw publish: read failed")
        .expect("raw publish: the server closed the connection")
}
