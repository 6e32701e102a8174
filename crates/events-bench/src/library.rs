//! The same work as [`crate::raw`] through the `events` library: [`Publisher`] with its
//! default configuration (retries, metrics, tracing spans all on the path) and
//! [`Subscriber`] with the full handler path (decode, handler, confirmed ack).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::publisher::{BatchConfig, PublishHandle, Publisher, PublisherConfig};
use events::subscriber::{DeliveryContext, HandlerError, Subscriber, SubscriberConfig, handler_fn};
use events::{Event, SubjectFilter};
use futures::FutureExt as _;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::SideResult;
use crate::env::{BenchStream, Env, EventFactory, Tracker, micros_since};
use crate::raw::intended;
use crate::stats::LatencyRecorder;

/// How long `close` may take to flush what is left in flight.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of one library consume run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumeSpec {
    pub(crate) instances: usize,
    pub(crate) max_in_flight: u32,
    pub(crate) limit: Duration,
    /// Take the id from `data.seq` (else from the stream sequence).
    pub(crate) id_from_body: bool,
}

async fn publisher(env: &Env, window: usize, batch: bool) -> anyhow::Result<Publisher> {
    let cfg = PublisherConfig {
        window: window.max(1),
        batch: BatchConfig {
            enabled: batch,
            ..BatchConfig::default()
        },
        ..PublisherConfig::new("bench-service")
    };
    Publisher::new(env.client.clone(), cfg)
        .await
        .context("creating the publisher")
}

/// `Publisher::publish`, one event at a time.
pub(crate) async fn confirmed(
    env: &Env,
    events: &[Event],
    pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    let p = publisher(env, PublisherConfig::default().window, false).await?;
    let mut errors = 0u64;
    let start = Instant::now();
    for ev in events {
        if p.publish(ev).await.is_err() {
            errors += 1;
        }
        pb.inc(1);
    }
    let elapsed = start.elapsed();
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(SideResult::publish(
        events.len() as u64,
        errors,
        elapsed,
    )))
}

/// `Publisher::publish_async` with `window` in flight (the publisher's own backpressure
/// bounds it), outcomes collected as they complete; with `batch`, the publisher groups
/// them into atomic batches (`BatchConfig` defaults: 1,000 events, 5 ms linger).
pub(crate) async fn windowed(
    env: &Env,
    events: &[Event],
    window: usize,
    batch: bool,
    pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    let p = publisher(env, window, batch).await?;
    let mut handles: FuturesUnordered<PublishHandle> = FuturesUnordered::new();
    let mut errors = 0u64;
    let start = Instant::now();
    for ev in events {
        match p.publish_async(ev).await {
            Ok(h) => handles.push(h),
            Err(_) => {
                errors += 1;
                pb.inc(1);
            }
        }
        // Settle what is already done without waiting, so the set stays about `window`.
        while let Some(Some(r)) = handles.next().now_or_never() {
            errors += u64::from(r.is_err());
            pb.inc(1);
        }
    }
    while let Some(r) = handles.next().await {
        errors += u64::from(r.is_err());
        pb.inc(1);
    }
    let elapsed = start.elapsed();
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(SideResult::publish(
        events.len() as u64,
        errors,
        elapsed,
    )))
}

/// `Subscriber::run` with `instances` instances of one group (one durable consumer) and a
/// handler that records the id (and the latency); returns once every id was handled.
pub(crate) async fn consume(
    env: &Env,
    stream: &BenchStream,
    n: u64,
    spec: ConsumeSpec,
    latency: Option<(Instant, Arc<Mutex<LatencyRecorder>>)>,
    pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    let filter = SubjectFilter::new(&stream.filter).context("benchmark filter")?;
    let cfg = SubscriberConfig {
        max_in_flight: spec.max_in_flight,
        ..SubscriberConfig::default()
    };
    let mut subs = Vec::new();
    for _ in 0..spec.instances.max(1) {
        subs.push(
            Subscriber::builder(env.js.clone(), filter.clone())
                .group("bench")
                .stream(stream.name.clone())
                .config(cfg.clone())
                .build()
                .await
                .context("building the subscriber")?,
        );
    }
    let tracker = Tracker::new(n);
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for sub in subs {
        let tracker = tracker.clone();
        let errors = errors.clone();
        let latency = latency.clone();
        let pb = pb.clone();
        let id_from_body = spec.id_from_body;
        let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
            let id = if id_from_body {
                event.data().get("seq").and_then(serde_json::Value::as_u64)
            } else {
                Some(ctx.stream_sequence.saturating_sub(1))
            };
            if let Some((epoch, rec)) = &latency
                && let Some(sent) = event
                    .data()
                    .get("sent_us")
                    .and_then(serde_json::Value::as_u64)
            {
                let lat = Duration::from_micros(micros_since(*epoch).saturating_sub(sent));
                if let Ok(mut r) = rec.lock() {
                    r.record(lat);
                }
            }
            match id {
                Some(i) => tracker.mark(i),
                None => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            pb.inc(1);
            async { Ok::<(), HandlerError>(()) }
        });
        tasks.spawn(sub.run(handler, stop.clone()));
    }
    let complete = tracker.wait_all(spec.limit).await;
    let elapsed = start.elapsed();
    stop.cancel();
    // Subscriber::run drains within its drain_timeout (30 s by default).
    let joined = tokio::time::timeout(Duration::from_secs(45), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let mut res = SideResult::consume(
        tracker.tally(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        elapsed,
    );
    if !complete {
        res.note = Some(format!("timed out after {:?}", spec.limit));
    }
    if joined.is_err() {
        res.errors += 1;
    }
    Ok(Some(res))
}

/// Paced `Publisher::publish_async` (see [`crate::raw::paced_publish`]); outcomes are
/// awaited off the send path. Returns the number of failed publishes.
pub(crate) async fn paced_publish(
    env: &Env,
    factory: &EventFactory,
    epoch: Instant,
    start: Instant,
    rate: u64,
    total: u64,
    batch: bool,
) -> anyhow::Result<Option<u64>> {
    let p = publisher(env, 10_000, batch).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PublishHandle>(20_000);
    let drain = tokio::spawn(async move {
        let mut errors = 0u64;
        let mut handles: FuturesUnordered<PublishHandle> = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(r) = handles.next(), if !handles.is_empty() => errors += u64::from(r.is_err()),
                h = rx.recv() => match h {
                    Some(h) => handles.push(h),
                    None => break,
                },
            }
        }
        while let Some(r) = handles.next().await {
            errors += u64::from(r.is_err());
        }
        errors
    });
    let mut errors = 0u64;
    for i in 0..total {
        let due = intended(start, rate, i);
        tokio::time::sleep_until(due.into()).await;
        let sent_us = u64::try_from((due - epoch).as_micros()).unwrap_or(u64::MAX);
        let ev = factory.event(i, sent_us)?;
        match p.publish_async(&ev).await {
            Ok(h) => {
                if tx.send(h).await.is_err() {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    drop(tx);
    let drained = tokio::time::timeout(Duration::from_secs(60), drain)
        .await
        .context("publish outcomes did not settle within 60 s")?
        .context("outcome drain task failed")?;
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(errors + drained))
}
