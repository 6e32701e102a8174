//! The server's atomic batch publish (ADR-50) as a raw client writes it: the reference line
//! of batched publishing, and the fast prefill of the consume scenarios.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::header::HeaderValue;
use events::event::EncodedEvent;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{BenchStream, Env, EventFactory};

/// Outcome of one atomic batch commit.
#[derive(Debug)]
struct BatchAck {
    stored: u64,
    error: Option<String>,
}

/// The server's atomic batch publish (ADR-50): every message of a batch carries
/// `Nats-Batch-Id` and `Nats-Batch-Sequence` (1-based); the last one also
/// `Nats-Batch-Commit: 1` and is sent as a request whose reply is the batch's PubAck
/// (`count` = messages stored). The others are plain publishes. Up to `in_flight` batches
/// wait for their commit ack at once.
pub(crate) async fn atomic_batches(
    env: &Env,
    wires: &[EncodedEvent],
    batch: usize,
    in_flight: usize,
    pb: &ProgressBar,
) -> anyhow::Result<SideResult> {
    let client = env.client.clone();
    let mut commits = FuturesUnordered::new();
    let mut errors = 0u64;
    let mut first_error = None;
    let start = Instant::now();
    for chunk in wires.chunks(batch.max(1)) {
        while commits.len() >= in_flight.max(1) {
            if let Some(r) = commits.next().await {
                settle_batch(r, &mut errors, &mut first_error, pb);
            }
        }
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let last = chunk.len() - 1;
        let mut sub = None;
        for (i, w) in chunk.iter().enumerate() {
            let mut headers = w.headers.clone();
            headers.insert("Nats-Batch-Id", header(&batch_id)?);
            headers.insert("Nats-Batch-Sequence", header(&(i + 1).to_string())?);
            if i == last {
                headers.insert("Nats-Batch-Commit", header("1")?);
                let inbox = client.new_inbox();
                let s = client.subscribe(inbox.clone()).await?;
                client
                    .publish_with_reply_and_headers(
                        w.subject.clone(),
                        inbox,
                        headers,
                        w.payload.clone(),
                    )
                    .await?;
                sub = Some(s);
            } else {
                client
                    .publish_with_headers(w.subject.clone(), headers, w.payload.clone())
                    .await?;
            }
        }
        let n = chunk.len() as u64;
        let Some(mut sub) = sub else { continue };
        commits.push(async move {
            let reply = tokio::time::timeout(Duration::from_secs(30), sub.next()).await;
            let ack = match reply {
                Ok(Some(msg)) => parse_batch_ack(&msg.payload),
                Ok(None) => BatchAck {
                    stored: 0,
                    error: Some("commit reply subscription closed".into()),
                },
                Err(_) => BatchAck {
                    stored: 0,
                    error: Some("no commit reply within 30 s".into()),
                },
            };
            (n, ack)
        });
    }
    while let Some(r) = commits.next().await {
        settle_batch(r, &mut errors, &mut first_error, pb);
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        bail!("atomic batch publish failed ({errors} events not stored), first error: {e}");
    }
    Ok(SideResult::publish(wires.len() as u64, errors, elapsed))
}

fn settle_batch(
    (n, ack): (u64, BatchAck),
    errors: &mut u64,
    first_error: &mut Option<String>,
    pb: &ProgressBar,
) {
    if let Some(e) = ack.error {
        *errors += n;
        first_error.get_or_insert(e);
    } else if ack.stored != n {
        *errors += n.saturating_sub(ack.stored);
        first_error.get_or_insert(format!("batch of {n} stored {}", ack.stored));
    }
    pb.inc(n);
}

fn parse_batch_ack(body: &[u8]) -> BatchAck {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return BatchAck {
                stored: 0,
                error: Some(format!("commit reply is not JSON: {e}")),
            };
        }
    };
    if let Some(err) = v.get("error") {
        return BatchAck {
            stored: 0,
            error: Some(err.to_string()),
        };
    }
    BatchAck {
        stored: v
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        error: None,
    }
}

fn header(v: &str) -> anyhow::Result<HeaderValue> {
    v.parse::<HeaderValue>()
        .map_err(|e| anyhow::anyhow!("bad header value {v:?}: {e}"))
}

/// Events encoded and held at once while filling a stream: bounds the bench's own memory
/// (it matters to the consumer-memory figure measured afterwards in the same process).
const PREFILL_CHUNK: u64 = 10_000;

/// Fills a stream with `n` benchmark events (indices `0..n`) as fast as the server allows,
/// [`PREFILL_CHUNK`] at a time: atomic batches of 1,000 (4 in flight) when the stream
/// accepts them, else a window of 2,000 per-message publishes. Fails unless exactly `n`
/// messages are stored.
pub(crate) async fn prefill(
    env: &Env,
    stream: &BenchStream,
    n: u64,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let factory = EventFactory::new(&stream.event_type)?;
    let mut from = 0;
    while from < n {
        let to = (from + PREFILL_CHUNK).min(n);
        let wires: Vec<EncodedEvent> = factory
            .events_in(from..to)?
            .iter()
            .map(events::Event::encode)
            .collect();
        if atomic_batches(env, &wires, 1000, 4, pb).await.is_err() {
            // Retrying what a failed batch left out is safe: the same Nats-Msg-Id is
            // stored once.
            super::windowed(env, &wires, 2000, pb).await?;
        }
        from = to;
    }
    let stored = env.stored(stream).await?;
    if stored != n {
        bail!(
            "prefill of {} stored {stored} messages, expected {n}",
            stream.name
        );
    }
    Ok(())
}
