//! Publishing through [`Publisher`]: confirmed, windowed, paced.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::Event;
use events::publisher::{PublishHandle, Publisher, PublisherConfig};
use futures::FutureExt as _;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{EventFactory, Pace};
use crate::raw::OnAck;

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
    let elapsed = start.elapsed();
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(SideResult::publish(
        events.len() as u64,
        errors,
        elapsed,
    )))
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
    let elapsed = start.elapsed();
    let _ = p.close(CLOSE_TIMEOUT).await;
    Ok(Some(SideResult::publish(
        events.len() as u64,
        errors,
        elapsed,
    )))
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
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, PublishHandle)>(20_000);
    let drain = tokio::spawn(drain_outcomes(rx, on_ack));
    let mut errors = 0u64;
    for i in 0..pace.total {
        let (due, sent_us) = pace.due(i);
        tokio::time::sleep_until(due.into()).await;
        let ev = factory.event(i, sent_us)?;
        match p.publish_async(&ev).await {
            Ok(h) => errors += u64::from(tx.send((i, h)).await.is_err()),
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

async fn drain_outcomes(
    mut rx: tokio::sync::mpsc::Receiver<(u64, PublishHandle)>,
    mut on_ack: Option<OnAck>,
) -> u64 {
    let mut errors = 0u64;
    let mut handles = FuturesUnordered::new();
    let mut settle = |(i, ok): (u64, bool), errors: &mut u64| {
        if !ok {
            *errors += 1;
        } else if let Some(f) = on_ack.as_mut() {
            f(i);
        }
    };
    loop {
        tokio::select! {
            Some(r) = handles.next(), if !handles.is_empty() => settle(r, &mut errors),
            h = rx.recv() => match h {
                Some((i, h)) => handles.push(async move { (i, h.await.is_ok()) }),
                None => break,
            },
        }
    }
    while let Some(r) = handles.next().await {
        settle(r, &mut errors);
    }
    errors
}
