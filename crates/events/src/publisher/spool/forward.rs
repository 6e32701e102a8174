//! The forwarder: while the spool holds records and NATS is connected, sends them in order
//! with their original ids (a chunk as one atomic batch when the stream allows it), then
//! advances the log's `acked` position.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State as ConnState;
use tracing::error;

use super::log::{Batch, Pos, Spool, SpoolRecord};
use crate::metrics::EVENTS_PUBLISHED_TOTAL;
use crate::publisher::deliver::{Inner, Stop};
use crate::publisher::wire::{Wire, spool_headers, wire_size};
/// Records forwarded between two writes of the `acked` position (and most in one atomic
/// batch: the server takes at most 1,000).
const FORWARD_CHUNK: usize = 1000;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

/// The forwarder: while the spool holds records and NATS is connected, publishes them in
/// order (a chunk as one atomic batch when its stream allows, else one at a time with the
/// same ids and retries), then advances the acked position.
pub(in crate::publisher) async fn forward(inner: Arc<Inner>, spool: Arc<Spool>, poll: Duration) {
    let idle = || async {
        tokio::select! {
            biased;
            () = inner.cancel.cancelled() => false,
            () = tokio::time::sleep(poll) => true,
        }
    };
    loop {
        if inner.cancel.is_cancelled() {
            break;
        }
        if spool.pending() == 0 || inner.client.connection_state() != ConnState::Connected {
            if !idle().await {
                break;
            }
            continue;
        }
        let s = spool.clone();
        let batch = match blocking(move || s.peek(FORWARD_CHUNK)).await {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot read the spool");
                if !idle().await {
                    break;
                }
                continue;
            }
        };
        // Fast path: the whole chunk as one atomic batch (stored whole or not at all, so
        // the order holds), when its stream takes atomic batches.
        let stalled = if forward_atomic(&inner, &batch.records).await {
            let bytes = batch.records.iter().map(|r| r.2).sum();
            let n = batch.records.len() as u64;
            for (rec, _, _) in &batch.records {
                metrics::counter!(EVENTS_PUBLISHED_TOTAL, "event_type" => rec.subject.clone(), "status" => "ok").increment(1);
            }
            persist(&spool, batch.end, n, bytes).await;
            false
        } else {
            forward_each(&inner, &spool, batch).await
        };
        if stalled && !idle().await {
            break;
        }
    }
}

/// Forwards the chunk's records one at a time, in order, stopping at the first that must
/// be tried again; then advances the acked position past the settled ones. True if it
/// stopped early.
async fn forward_each(inner: &Inner, spool: &Arc<Spool>, batch: Batch) -> bool {
    let (mut acked, mut n, mut bytes) = (None, 0u64, 0u64);
    let mut stalled = false;
    for (rec, after, size) in batch.records {
        if !forward_record(inner, spool, &rec).await {
            stalled = true;
            break;
        }
        (acked, n, bytes) = (Some(after), n + 1, bytes + size);
    }
    if !stalled {
        acked = Some(batch.end);
    }
    if let Some(pos) = acked {
        persist(spool, pos, n, bytes).await;
    }
    stalled
}

/// Sends one spooled record. True if it is settled: stored, or refused for good and moved
/// to `rejected.log`; false if it must be tried again later.
async fn forward_record(inner: &Inner, spool: &Arc<Spool>, rec: &SpoolRecord) -> bool {
    let Some(headers) = spool_headers(&rec.msg_id) else {
        error!(event_id = %rec.msg_id, "spooled event id is not a valid header value; moved to rejected.log");
        return reject(spool, rec).await.is_ok();
    };
    let wire = Wire {
        size: wire_size(&headers, rec.payload.len()),
        event_id: rec.msg_id.clone(),
        subject: rec.subject.as_str().into(),
        headers,
        payload: rec.payload.clone(),
    };
    let deadline = Instant::now() + inner.config.deadline;
    let res = tokio::select! {
        biased;
        () = inner.cancel.cancelled() => Err(Stop::Cancelled),
        r = inner.deliver(&wire, None, deadline, true) => r,
    };
    match res {
        Ok(ack) => {
            let status = if ack.duplicate { "duplicate" } else { "ok" };
            metrics::counter!(EVENTS_PUBLISHED_TOTAL, "event_type" => rec.subject.clone(), "status" => status).increment(1);
            true
        }
        Err(Stop::Permanent(e)) => {
            error!(event_id = %rec.msg_id, subject = %rec.subject, error = %e, "stream refused a spooled event; moved to rejected.log");
            metrics::counter!(EVENTS_PUBLISHED_TOTAL, "event_type" => rec.subject.clone(), "status" => e.kind()).increment(1);
            match reject(spool, rec).await {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %e, "cannot write rejected.log; will retry the event");
                    false
                }
            }
        }
        Err(Stop::Exhausted { .. } | Stop::Cancelled) => false,
    }
}

/// Moves `rec` to `rejected.log`.
async fn reject(spool: &Arc<Spool>, rec: &SpoolRecord) -> io::Result<()> {
    let (s, r) = (spool.clone(), rec.clone());
    blocking(move || s.reject(&r)).await
}

/// Persists the acked position (`n` records, `bytes` on disk, forwarded up to `pos`).
async fn persist(spool: &Arc<Spool>, pos: Pos, n: u64, bytes: u64) {
    let s = spool.clone();
    if let Err(e) = blocking(move || s.ack(pos, n, bytes)).await {
        error!(error = %e, "cannot persist the spool position; events may be forwarded again (same ids)");
    }
}

/// Forwards a chunk as one atomic batch if every record goes to the same stream, that
/// stream allows atomic publishing and every message fits; false if not tried or refused
/// (then the records go one by one).
async fn forward_atomic(inner: &Inner, records: &[(SpoolRecord, Pos, u64)]) -> bool {
    if records.len() < 2 || records.len() > 1000 {
        return false;
    }
    let max = inner.max_payload();
    let mut wires = Vec::with_capacity(records.len());
    let mut stream: Option<String> = None;
    let mut routes: Vec<(&str, String)> = Vec::new();
    for (rec, _, _) in records {
        let Some(headers) = spool_headers(&rec.msg_id) else {
            return false;
        };
        let size = wire_size(&headers, rec.payload.len());
        if !crate::publisher::wire::fits_batch(size, max) {
            return false;
        }
        let route = match routes.iter().find(|(s, _)| *s == rec.subject) {
            Some((_, name)) => name.clone(),
            None => match inner.route(&rec.subject).await {
                crate::publisher::batch::Route::Atomic(name) => {
                    routes.push((&rec.subject, name.clone()));
                    name
                }
                crate::publisher::batch::Route::PerMessage => return false,
            },
        };
        if stream.get_or_insert_with(|| route.clone()) != &route {
            return false;
        }
        wires.push(Wire {
            size,
            event_id: rec.msg_id.clone(),
            subject: rec.subject.as_str().into(),
            headers,
            payload: rec.payload.clone(),
        });
    }
    let refs: Vec<&Wire> = wires.iter().collect();
    tokio::select! {
        biased;
        () = inner.cancel.cancelled() => false,
        r = crate::publisher::batch::commit_atomic(inner, &refs) => r.is_some(),
    }
}
