//! The baselines: raw async-nats doing what the library does, with the same bytes, the same
//! headers (`Content-Type`, `Nats-Msg-Id`), the same server and the same stream settings.
//!
//! The raw publisher sends bodies encoded before the clock starts (the least a raw client
//! can do), while the library gets the same events as [`events::Event`] values and encodes
//! them itself: the ratio includes the library's encoding.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::header::HeaderValue;
use async_nats::jetstream::{self, consumer::pull};
use events::event::EncodedEvent;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::SideResult;
use crate::env::{BenchStream, Env, EventFactory, RawBody, Tracker, micros_since};
use crate::stats::LatencyRecorder;

/// How the raw consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// `ack()`: fire and forget (one publish, no reply awaited).
    Ack,
    /// `double_ack()`: the ack is confirmed by the server (one request per message), which is
    /// what the library does; up to `max_in_flight` outstanding per instance.
    DoubleAck,
}

impl AckMode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::DoubleAck => "double_ack",
        }
    }
}

/// A JetStream context for raw publishing with `window` acks in flight, built as the
/// library's publisher builds its own (backpressure instead of an error when full).
fn publish_context(env: &Env, window: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_ack_inflight(window.max(1).saturating_mul(2))
        .backpressure_on_inflight(true)
        .build(env.client.clone())
}

/// One event at a time: `js.publish_with_headers(..).await?.await?`.
pub(crate) async fn confirmed(
    env: &Env,
    wires: &[EncodedEvent],
    pb: &ProgressBar,
) -> anyhow::Result<SideResult> {
    let js = publish_context(env, 1);
    let mut errors = 0u64;
    let start = Instant::now();
    for w in wires {
        let res = async {
            js.publish_with_headers(w.subject.clone(), w.headers.clone(), w.payload.clone())
                .await?
                .await
        }
        .await;
        if res.is_err() {
            errors += 1;
        }
        pb.inc(1);
    }
    Ok(SideResult::publish(
        wires.len() as u64,
        errors,
        start.elapsed(),
    ))
}

/// Many in flight: a `FuturesUnordered` of ack futures capped at `window`.
pub(crate) async fn windowed(
    env: &Env,
    wires: &[EncodedEvent],
    window: usize,
    pb: &ProgressBar,
) -> anyhow::Result<SideResult> {
    let js = publish_context(env, window);
    let mut acks = FuturesUnordered::new();
    let mut errors = 0u64;
    let start = Instant::now();
    for w in wires {
        while acks.len() >= window.max(1) {
            if let Some(r) = acks.next().await {
                errors += u64::from(ack_failed(r));
                pb.inc(1);
            }
        }
        match js
            .publish_with_headers(w.subject.clone(), w.headers.clone(), w.payload.clone())
            .await
        {
            Ok(f) => acks.push(f.into_future()),
            Err(_) => {
                errors += 1;
                pb.inc(1);
            }
        }
    }
    while let Some(r) = acks.next().await {
        errors += u64::from(ack_failed(r));
        pb.inc(1);
    }
    Ok(SideResult::publish(
        wires.len() as u64,
        errors,
        start.elapsed(),
    ))
}

fn ack_failed<T, E>(r: Result<T, E>) -> bool {
    r.is_err()
}

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

/// Fills a stream with `n` benchmark events (indices `0..n`) as fast as the server allows:
/// atomic batches of 1,000 (4 in flight) when the stream accepts them, else a window of
/// 2,000 per-message publishes. Fails unless exactly `n` messages are stored.
pub(crate) async fn prefill(
    env: &Env,
    stream: &BenchStream,
    n: u64,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let factory = EventFactory::new(&stream.event_type)?;
    let wires: Vec<EncodedEvent> = factory.events(n)?.iter().map(|e| e.encode()).collect();
    if atomic_batches(env, &wires, 1000, 4, pb).await.is_err() {
        // Retrying what a failed batch left out is safe: the same Nats-Msg-Id is stored once.
        windowed(env, &wires, 2000, pb).await?;
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

/// The durable pull consumer the raw side uses: the settings the library's subscriber
/// declares (explicit ack, 30 s ack wait, unlimited deliveries, `max_ack_pending`).
pub(crate) async fn create_consumer(
    env: &Env,
    stream: &BenchStream,
    max_ack_pending: u32,
) -> anyhow::Result<jetstream::consumer::PullConsumer> {
    let cfg = pull::Config {
        durable_name: Some("raw-bench".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        filter_subject: stream.filter.clone(),
        max_ack_pending: i64::from(max_ack_pending),
        ..Default::default()
    };
    env.js
        .create_consumer_on_stream(cfg, stream.name.as_str())
        .await
        .context("creating the raw consumer")
}

/// How a raw consumer reads the id of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdFrom {
    /// The stream sequence from the reply subject (no body parsing): the pure client cost.
    Sequence,
    /// `data.seq` from the JSON body (and `data.sent_us` for latency).
    Body,
}

/// Settings of one raw consume run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumeSpec {
    pub(crate) instances: usize,
    pub(crate) ack: AckMode,
    pub(crate) max_in_flight: usize,
    pub(crate) fetch_batch: usize,
    pub(crate) max_ack_pending: u32,
    pub(crate) id_from: IdFrom,
    /// Wait at most this long for every id.
    pub(crate) limit: Duration,
}

/// Drains `n` messages with `instances` tasks sharing one durable consumer; each task
/// pulls with `consumer.stream()` and acks. Returns once every id arrived (or the limit).
/// With `latency`, records `now - (epoch + data.sent_us)` per message.
pub(crate) async fn consume(
    env: &Env,
    stream: &BenchStream,
    n: u64,
    spec: ConsumeSpec,
    latency: Option<(Instant, Arc<Mutex<LatencyRecorder>>)>,
    pb: &ProgressBar,
) -> anyhow::Result<SideResult> {
    let consumer = create_consumer(env, stream, spec.max_ack_pending).await?;
    let tracker = Tracker::new(n);
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..spec.instances.max(1) {
        let consumer = consumer.clone();
        let tracker = tracker.clone();
        let stop = stop.clone();
        let pb = pb.clone();
        let latency = latency.clone();
        tasks.spawn(async move { consume_task(consumer, spec, tracker, stop, latency, pb).await });
    }
    let complete = tracker.wait_all(spec.limit).await;
    let elapsed = start.elapsed();
    stop.cancel();
    let mut errors = 0u64;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(30), tasks.join_next())
        .await
        .unwrap_or(None)
    {
        errors += r.unwrap_or(1);
    }
    tasks.abort_all();
    let _ = env
        .js
        .delete_consumer_from_stream("raw-bench", stream.name.as_str())
        .await;
    let mut res = SideResult::consume(tracker.tally(), errors, elapsed);
    if !complete {
        res.note = Some(format!("timed out after {:?}", spec.limit));
    }
    Ok(res)
}

async fn consume_task(
    consumer: jetstream::consumer::PullConsumer,
    spec: ConsumeSpec,
    tracker: Arc<Tracker>,
    stop: CancellationToken,
    latency: Option<(Instant, Arc<Mutex<LatencyRecorder>>)>,
    pb: ProgressBar,
) -> u64 {
    let mut errors = 0u64;
    let mut msgs = match consumer
        .stream()
        .max_messages_per_batch(spec.fetch_batch.max(1))
        .expires(Duration::from_secs(5))
        .messages()
        .await
    {
        Ok(m) => m,
        Err(_) => return 1,
    };
    let mut acks = FuturesUnordered::new();
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(r) = acks.next(), if !acks.is_empty() => {
                errors += u64::from(ack_failed(r));
                continue;
            }
            next = msgs.next() => next,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                errors += 1;
                continue;
            }
            None => break,
        };
        let id = match spec.id_from {
            IdFrom::Sequence => msg.info().ok().map(|i| i.stream_sequence.saturating_sub(1)),
            IdFrom::Body => match serde_json::from_slice::<RawBody>(&msg.payload) {
                Ok(b) => {
                    if let Some((epoch, rec)) = &latency {
                        let lat = Duration::from_micros(
                            micros_since(*epoch).saturating_sub(b.data.sent_us),
                        );
                        if let Ok(mut r) = rec.lock() {
                            r.record(lat);
                        }
                    }
                    Some(b.data.seq)
                }
                Err(_) => None,
            },
        };
        match spec.ack {
            AckMode::Ack => {
                if msg.ack().await.is_err() {
                    errors += 1;
                }
            }
            AckMode::DoubleAck => {
                while acks.len() >= spec.max_in_flight.max(1) {
                    if let Some(r) = acks.next().await {
                        errors += u64::from(ack_failed(r));
                    }
                }
                acks.push(async move { msg.double_ack().await });
            }
        }
        match id {
            Some(i) => tracker.mark(i),
            None => errors += 1,
        }
        pb.inc(1);
    }
    // Settle what is still outstanding so that nothing is left half-acked.
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(10), acks.next()).await {
        errors += u64::from(ack_failed(r));
    }
    errors
}

/// Publishes at `rate` events/s for `total` events: event `i` is due at `start + i / rate`
/// and carries that intended time (µs since `epoch`), so that a publisher falling behind shows up as latency
/// (no coordinated omission). Acks are awaited off the send path by `drain`.
pub(crate) async fn paced_publish(
    env: &Env,
    factory: &EventFactory,
    epoch: Instant,
    start: Instant,
    rate: u64,
    total: u64,
) -> anyhow::Result<u64> {
    let js = publish_context(env, 10_000);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<jetstream::context::PublishAckFuture>(20_000);
    let drain = tokio::spawn(async move {
        let mut errors = 0u64;
        let mut acks = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(r) = acks.next(), if !acks.is_empty() => errors += u64::from(ack_failed(r)),
                f = rx.recv() => match f {
                    Some(f) => acks.push(f.into_future()),
                    None => break,
                },
            }
        }
        while let Some(r) = acks.next().await {
            errors += u64::from(ack_failed(r));
        }
        errors
    });
    let mut errors = 0u64;
    for i in 0..total {
        let due = intended(start, rate, i);
        tokio::time::sleep_until(due.into()).await;
        let sent_us = u64::try_from((due - epoch).as_micros()).unwrap_or(u64::MAX);
        let w = factory.event(i, sent_us)?.encode();
        match js
            .publish_with_headers(w.subject, w.headers, w.payload)
            .await
        {
            Ok(f) => {
                if tx.send(f).await.is_err() {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    drop(tx);
    let drained = tokio::time::timeout(Duration::from_secs(60), drain)
        .await
        .context("publish acks did not settle within 60 s")?
        .context("ack drain task failed")?;
    Ok(errors + drained)
}

/// When event `i` is due at `rate` events/s from `start`.
pub(crate) fn intended(start: Instant, rate: u64, i: u64) -> Instant {
    start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate.max(1))
}
