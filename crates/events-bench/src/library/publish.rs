//! Publishing through [`Publisher`]: confirmed, windowed, paced.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::Event;
use events::publisher::{PublishHandle, Publisher, PublisherConfig};
use futures::FutureExt as _;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{EventFactory, OnAck, Pace, run_paced};

/// How long `close` may take to flush what is left in flight.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The publisher's configuration in the bench: the library's defaults, publishing per
/// message (`batch: false`) or in atomic batches, with `window` when given.
pub(crate) fn publisher_config(window: Option<usize>, batch: bool) -> PublisherConfig {
    let mut cfg = PublisherConfig::new("bench-service");
    if let Some(w) = window {
        cfg.window = w.max(1);
    }
    cfg.batch.enabled = batch;
    cfg
}

async fn publisher(client: &async_nats::Client, cfg: PublisherConfig) -> anyhow::Result<Publisher> {
    Publisher::new(client.clone(), cfg)
        .await
        .context("creating the publisher")
}

/// Closes the publisher once a run's clock stopped and gives the run's result.
async fn finish(p: &Publisher, n: usize, errors: u64, start: Instant) -> SideResult {
    let elapsed = start.elapsed();
    let _ = p.close(CLOSE_TIMEOUT).await;
    SideResult::publish(n as u64, errors, elapsed)
}

/// `Publisher::publish`, one event at a time, with the default configuration.
pub(crate) async fn confirmed(
    client: &async_nats::Client,
    events: &[Event],
    pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    let p = publisher(client, PublisherConfig::new("bench-service")).await?;
    let mut errors = 0u64;
    let start = Instant::now();
    for ev in events {
        errors += u64::from(p.publish(ev).await.is_err());
        pb.inc(1);
    }
    Ok(Some(finish(&p, events.len(), errors, start).await))
}

/// `Publisher::publish_async` with `cfg.window` in flight (the publisher's own
/// backpressure bounds it), outcomes collected as they complete.
pub(crate) async fn windowed(
    client: &async_nats::Client,
    events: &[Event],
    cfg: PublisherConfig,
    pb: &ProgressBar,
) -> anyhow::Result<Option<SideResult>> {
    let p = publisher(client, cfg).await?;
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
    Ok(Some(finish(&p, events.len(), errors, start).await))
}

/// Paced `Publisher::publish_async` (see [`Pace`]); outcomes are awaited off the send
/// path, `on_ack` runs with the index of each stored event. Returns the number of failed
/// publishes.
pub(crate) async fn paced_publish(
    client: &async_nats::Client,
    factory: &EventFactory,
    pace: Pace,
    cfg: PublisherConfig,
    on_ack: Option<OnAck>,
) -> anyhow::Result<Option<u64>> {
    let p = publisher(client, cfg).await?;
    let errors = run_paced(pace, on_ack, async |i, sent_us| {
        let ev = factory.event(i, sent_us)?;
        let handle = p.publish_async(&ev).await.ok();
        Ok(handle.map(|h| async move { h.await.is_ok() }))
    })
    .await?;
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(errors))
}
