//! Atomic batch publishing (ADR-50) for the windowed path.
//!
//! Events headed for a stream with `allow_atomic: true` are grouped per stream by one
//! batcher task: a batch is sent when it holds `max_messages` events or when its first
//! event has waited `linger`. The messages of a batch carry `Nats-Batch-Id` (one id per
//! batch), `Nats-Batch-Sequence` (1..=n) and, on the last one, `Nats-Batch-Commit: 1`; the
//! others are plain publishes and only the commit is a request, whose reply is the batch's
//! ack (`{"stream", "seq" = last sequence, "batch", "count"}`): event `i` of `n` got
//! sequence `seq - (n - 1 - i)`. The batcher sends every message itself, commits included,
//! so batches leave (and are stored) in submission order.
//!
//! A batch does not wait for its linger when nothing is in flight: an event that finds no
//! batch being stored goes out at once (alone, at a low rate, as a plain publish: one
//! store and one sync like a commit, without the batch's inbox and commit round, which
//! cost milliseconds under `sync_interval: always`), and the events that arrive
//! while batches are being stored go out together as soon as one of them is answered (the
//! stores clock the batches, as Nagle's algorithm does), so `linger` is only the bound on
//! that wait, and a low rate pays one round trip, not the linger.
//!
//! The server stores an atomic batch whole or not at all. When a batch is refused, for
//! instance because it holds a `Nats-Msg-Id` already stored (err_code 10201: a retried
//! event), or its ack does not come, its events fall back to per-message publishing with
//! their own ids and deadlines, so each one's outcome stays exact (a batch that was stored
//! after all shows up as duplicates, not as second copies). A stream that refuses atomic
//! publishing (err_code 10174) is remembered and published to message by message.
//! Verified against nats-server 2.15.1: a batch of 1,000 is acked with `count: 1000`;
//! 1,001 is refused (10199); a stored or repeated id refuses the whole batch (10201) and
//! nothing is stored; a stream without `allow_atomic` refuses (10174) and stores nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subscriber;
use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
use async_nats::jetstream;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{Instrument, debug, warn};

use super::completion::Pending;
use super::deliver::Inner;
use super::spool::spool_now;
use super::wire::Wire;
use super::{PublishAck, PublishError, PublishOutcome};
use crate::reconnect::Reconnect;

/// Room left in `max_payload` for the three batch headers.
pub(super) const BATCH_HEADER_ALLOWANCE: usize = 128;
/// err_code: atomic publish is disabled on the stream.
const ATOMIC_DISABLED: u64 = 10174;
/// How long a route (subject -> stream, atomic or not) is trusted.
const ROUTE_TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered (the per-message path reports the problem).
const FAILED_ROUTE_TTL: Duration = Duration::from_secs(1);

/// A batch's place among the `max_batches_in_flight`; freeing it wakes the batcher, which
/// then sends what gathered meanwhile.
struct Slot {
    _permit: OwnedSemaphorePermit,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.freed.notify_one();
    }
}

/// One event waiting for a batch.
pub(super) struct Item {
    pub(super) wire: Wire,
    pub(super) pending: Pending,
}

impl Item {
    fn complete(self, inner: &Inner, res: Result<PublishOutcome, PublishError>) {
        self.pending.complete(&inner.outcomes, res);
    }
}

/// Where a subject's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Batched, into this stream.
    Atomic(String),
    /// One message per request.
    PerMessage,
}

/// A cached route: the route, the stream name if known, valid until.
type RouteEntry = (Route, Option<String>, Instant);

/// Subject -> route, with an expiry.
#[derive(Default)]
pub(super) struct Routes {
    map: std::sync::Mutex<HashMap<String, RouteEntry>>,
}

impl Routes {
    fn get(&self, subject: &str) -> Option<Route> {
        let map = self.map.lock().ok()?;
        let (route, _, until) = map.get(subject)?;
        (Instant::now() < *until).then(|| route.clone())
    }

    fn put(&self, subject: &str, route: Route, stream: Option<String>, ttl: Duration) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, (_, _, until)| Instant::now() < *until);
            map.insert(subject.to_owned(), (route, stream, Instant::now() + ttl));
        }
    }

    /// The stream refused atomic publishing: route its subjects per message.
    fn demote(&self, stream: &str) {
        if let Ok(mut map) = self.map.lock() {
            for (route, s, until) in map.values_mut() {
                if s.as_deref() == Some(stream) {
                    *route = Route::PerMessage;
                    *until = Instant::now() + ROUTE_TTL;
                }
            }
        }
    }
}

impl Routes {
    /// Which path a subject's events take (one stream lookup per subject and TTL).
    pub(super) async fn lookup(
        &self,
        js: &jetstream::Context,
        t: Duration,
        subject: &str,
    ) -> Route {
        if let Some(r) = self.get(subject) {
            return r;
        }
        let name = match tokio::time::timeout(t, js.stream_by_subject(subject.to_owned())).await {
            Ok(Ok(name)) => name,
            _ => {
                self.put(subject, Route::PerMessage, None, FAILED_ROUTE_TTL);
                return Route::PerMessage;
            }
        };
        let atomic = match tokio::time::timeout(t, js.get_stream(&name)).await {
            Ok(Ok(stream)) => stream.cached_info().config.allow_atomic_publish,
            _ => {
                self.put(subject, Route::PerMessage, None, FAILED_ROUTE_TTL);
                return Route::PerMessage;
            }
        };
        let route = if atomic {
            Route::Atomic(name.clone())
        } else {
            Route::PerMessage
        };
        debug!(subject, stream = %name, atomic, "publish route");
        self.put(subject, route.clone(), Some(name), ROUTE_TTL);
        route
    }
}

/// The batcher: groups items per stream, sends full or lingering batches.
pub(super) async fn run(inner: Arc<Inner>, mut rx: mpsc::Receiver<(String, Item)>) {
    let cfg = inner.config.batch.clone();
    let slots = Arc::new(Semaphore::new(cfg.max_batches_in_flight));
    let freed = Arc::new(Notify::new());
    let mut pending: HashMap<String, (Instant, Vec<Item>)> = HashMap::new();
    loop {
        let next = pending.values().map(|(t, _)| *t + cfg.linger).min();
        let due = tokio::time::Instant::from_std(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        let mut to_send = Vec::new();
        tokio::select! {
            biased;
            () = inner.cancel.cancelled() => break,
            () = tokio::time::sleep_until(due), if next.is_some() => {
                let now = Instant::now();
                let ready: Vec<String> = pending
                    .iter()
                    .filter(|(_, (t, _))| *t + cfg.linger <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for s in ready {
                    if let Some((_, items)) = pending.remove(&s) {
                        to_send.push(items);
                    }
                }
            }
            // A batch was answered: what gathered while it was stored goes now.
            () = freed.notified(), if !pending.is_empty() => {
                to_send.extend(pending.drain().map(|(_, (_, items))| items));
            }
            item = rx.recv() => {
                let Some((stream, item)) = item else { break };
                let entry = pending
                    .entry(stream.clone())
                    .or_insert_with(|| (Instant::now(), Vec::new()));
                entry.1.push(item);
                let idle = slots.available_permits() == cfg.max_batches_in_flight;
                if (idle || entry.1.len() >= cfg.max_messages)
                    && let Some((_, items)) = pending.remove(&stream)
                {
                    to_send.push(items);
                }
            }
        }
        for items in to_send {
            let slot = tokio::select! {
                biased;
                () = inner.cancel.cancelled() => {
                    abandon(&inner, items).await;
                    break;
                }
                s = slots.clone().acquire_owned() => s,
            };
            match slot {
                Ok(permit) => {
                    let slot = Slot {
                        _permit: permit,
                        freed: freed.clone(),
                    };
                    send_batch(&inner, items, slot).await;
                }
                Err(_) => abandon(&inner, items).await,
            }
        }
    }
    // Cancelled (close timed out, or the publisher was dropped): what never went out is
    // spooled if there is a spool, else reported cancelled.
    rx.close();
    let mut left: Vec<Item> = pending.into_values().flat_map(|(_, v)| v).collect();
    while let Ok((_, item)) = rx.try_recv() {
        left.push(item);
    }
    abandon(&inner, left).await;
}

async fn abandon(inner: &Arc<Inner>, items: Vec<Item>) {
    for item in items {
        let res = match &inner.spool {
            Some(spool) => spool_now(spool, &item.wire)
                .await
                .map(|()| PublishOutcome::Spooled),
            None => Err(PublishError::Cancelled),
        };
        item.complete(inner, res);
    }
}

/// Sends one batch (all messages and the commit, in order) and leaves a tracked task
/// waiting for the commit's reply. A batch of one event (what a low rate sends) goes as a
/// plain publish instead: as durable (one store, one sync), the same id, and without the
/// batch's inbox and commit round, which cost a few milliseconds under
/// `sync_interval: always`. It holds its slot all the same, so that what arrives meanwhile
/// still gathers into the next batch.
async fn send_batch(inner: &Arc<Inner>, mut items: Vec<Item>, slot: Slot) {
    if items.len() == 1
        && let Some(item) = items.pop()
    {
        let task_inner = inner.clone();
        let span = item.pending.span.clone();
        inner.tasks.spawn(
            async move {
                let res = task_inner
                    .finish(item.wire.clone(), None, item.pending.started)
                    .await;
                item.complete(&task_inner, res);
                drop(slot);
            }
            .instrument(span),
        );
        return;
    }
    let n = items.len();
    let wires: Vec<&Wire> = items.iter().map(|i| &i.wire).collect();
    let sent = tokio::time::timeout(
        inner.config.ack_timeout,
        publish_batch(&inner.client, &wires),
    )
    .await;
    match sent {
        Ok(Ok(sub)) => {
            let task_inner = inner.clone();
            inner.tasks.spawn(async move {
                await_commit(&task_inner, items, sub, n).await;
                drop(slot);
            });
        }
        Ok(Err(e)) => {
            debug!(error = %e, "batch send failed; publishing its events one by one");
            drop(slot);
            fallback(inner, items, false);
        }
        Err(_) => {
            debug!("batch send timed out; publishing its events one by one");
            drop(slot);
            fallback(inner, items, true);
        }
    }
}

/// Publishes one atomic batch: every message, the last as the commit request whose reply
/// arrives on the returned subscription.
async fn publish_batch(
    client: &async_nats::Client,
    wires: &[&Wire],
) -> Result<Subscriber, async_nats::Error> {
    let n = wires.len();
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let inbox = client.new_inbox();
    let sub = client.subscribe(inbox.clone()).await?;
    for (i, wire) in wires.iter().enumerate() {
        let mut h = wire.headers.clone();
        // Header values built from `&str` must not hold CR/LF; these are hex digits and
        // decimal numbers.
        h.insert(NATS_BATCH_ID, batch_id.as_str());
        h.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
        let subject = wire.subject.clone();
        let payload = wire.payload.clone();
        if i + 1 == n {
            h.insert(NATS_BATCH_COMMIT, "1");
            client
                .publish_with_reply_and_headers(subject, inbox.clone(), h, payload)
                .await?;
        } else {
            client.publish_with_headers(subject, h, payload).await?;
        }
    }
    Ok(sub)
}

/// Sends `wires` as one atomic batch and waits for its ack (each step bounded by the ack
/// timeout). `Some(stream)` if all were stored by this batch; `None` if the batch was
/// refused, not acknowledged or could not be sent (then nothing or everything is stored:
/// publish them again one by one, the ids keep that exact).
pub(super) async fn commit_atomic(inner: &Inner, wires: &[&Wire]) -> Option<String> {
    if wires.is_empty() || wires.len() > 1000 {
        return None;
    }
    let t = inner.config.ack_timeout;
    let mut sub = tokio::time::timeout(t, publish_batch(&inner.client, wires))
        .await
        .ok()?
        .ok()?;
    let msg = tokio::time::timeout(t, sub.next()).await.ok()??;
    match serde_json::from_slice::<BatchReply>(&msg.payload).ok()? {
        BatchReply {
            error: None,
            stream,
            count: Some(count),
            ..
        } if count == wires.len() as u64 => Some(stream),
        BatchReply { error: Some(e), .. } => {
            debug!(error = %e, "atomic batch refused");
            None
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    error: Option<jetstream::Error>,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: Option<u64>,
}

async fn await_commit(inner: &Arc<Inner>, items: Vec<Item>, mut sub: Subscriber, n: usize) {
    let mut reconnect = Reconnect::watch(&inner.client);
    let reply = tokio::select! {
        biased;
        () = inner.cancel.cancelled() => None,
        r = tokio::time::timeout(inner.config.ack_timeout, sub.next()) => r.ok().flatten(),
        // Reconnected: the commit's answer will not come; its events go again, same ids.
        () = reconnect.happened() => None,
        () = batch_denied(inner, &items) => {
            // Nothing of a denied batch is stored; each event settles on its own (a
            // denied one at once, typed).
            debug!(events = n, "atomic batch denied for permissions; publishing its events one by one");
            return fallback(inner, items, false);
        }
    };
    let Some(msg) = reply else {
        warn!(
            events = n,
            "no ack for an atomic batch; publishing its events one by one"
        );
        return fallback(inner, items, true);
    };
    let parsed: Option<BatchReply> = serde_json::from_slice(&msg.payload).ok();
    match parsed {
        Some(BatchReply {
            error: None,
            stream,
            seq,
            count: Some(count),
        }) if count == n as u64 && seq >= count => {
            let first = seq + 1 - count;
            for (i, item) in items.into_iter().enumerate() {
                let ack = PublishAck::new(stream.clone(), first + i as u64, false);
                item.complete(inner, Ok(PublishOutcome::Stored(ack)));
            }
        }
        Some(BatchReply {
            error: Some(e),
            stream,
            ..
        }) => {
            if e.error_code().0 == ATOMIC_DISABLED {
                warn!(stream = %stream, "stream refuses atomic batches; publishing to it message by message");
                inner.routes.demote(&stream);
            } else {
                debug!(error = %e, events = n, "atomic batch refused; publishing its events one by one");
            }
            fallback(inner, items, false);
        }
        _ => {
            warn!(status = ?msg.status, "unexpected reply to an atomic batch; publishing its events one by one");
            fallback(inner, items, true);
        }
    }
}

/// Resolves when the server denies a publish to a subject of the batch (never without
/// the connection's denials).
async fn batch_denied(inner: &Inner, items: &[Item]) {
    let Some(denials) = &inner.denials else {
        return std::future::pending().await;
    };
    let since = items
        .iter()
        .map(|i| i.pending.started)
        .min()
        .unwrap_or_else(Instant::now);
    denials
        .wait_for(since, |d| {
            d.operation == crate::connection::DeniedOperation::Publish
                && items.iter().any(|i| *i.wire.subject == *d.subject)
        })
        .await;
}

/// Per-message publishing of a batch's events, each with its own deadline and outcome.
/// `unconfirmed`: the batch itself may have been committed (sent, no clear answer), so an
/// event whose own tries all stored nothing is still [`PublishError::Unconfirmed`].
fn fallback(inner: &Arc<Inner>, items: Vec<Item>, unconfirmed: bool) {
    for item in items {
        let task_inner = inner.clone();
        let span = item.pending.span.clone();
        inner.tasks.spawn(
            async move {
                let mut res = task_inner
                    .finish(item.wire.clone(), None, item.pending.started)
                    .await;
                if unconfirmed {
                    res = res.map_err(PublishError::into_unconfirmed);
                }
                item.complete(&task_inner, res);
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_expire_and_demote_by_stream() {
        let r = Routes::default();
        assert_eq!(r.get("a.b.c"), None);
        r.put(
            "a.b.c",
            Route::Atomic("A".into()),
            Some("A".into()),
            ROUTE_TTL,
        );
        r.put(
            "a.b.d",
            Route::Atomic("A".into()),
            Some("A".into()),
            ROUTE_TTL,
        );
        r.put(
            "x.y.z",
            Route::Atomic("X".into()),
            Some("X".into()),
            ROUTE_TTL,
        );
        r.put("gone.b.c", Route::PerMessage, None, Duration::ZERO);
        assert_eq!(r.get("gone.b.c"), None, "expired");
        r.demote("A");
        assert_eq!(r.get("a.b.c"), Some(Route::PerMessage));
        assert_eq!(r.get("a.b.d"), Some(Route::PerMessage));
        assert_eq!(r.get("x.y.z"), Some(Route::Atomic("X".into())));
    }

    #[test]
    fn batch_reply_parses_ack_and_error() {
        let ok: BatchReply =
            serde_json::from_str(r#"{"stream":"A","seq":1000,"batch":"b1","count":1000}"#).unwrap();
        assert!(ok.error.is_none());
        assert_eq!(
            (ok.stream.as_str(), ok.seq, ok.count),
            ("A", 1000, Some(1000))
        );
        let err: BatchReply = serde_json::from_str(
            r#"{"error":{"code":400,"err_code":10201,"description":"atomic publish batch contains duplicate message id"},"stream":"A","seq":0}"#,
        )
        .unwrap();
        assert_eq!(err.error.unwrap().error_code().0, 10201);
    }
}
