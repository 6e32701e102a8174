//! Raw per-message publishing with the client's defaults (`jetstream::new(client)`: 5 s
//! request timeout, 5,000 acks in flight with backpressure), each message with the two
//! headers the library sends: `Content-Type` and a unique `Nats-Msg-Id`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture};
use events::event::EncodedEvent;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{Env, EventFactory, Pace};

/// The JetStream context a user who skips the library writes: the client's defaults.
pub(crate) fn context(client: &async_nats::Client) -> jetstream::Context {
    jetstream::new(client.clone())
}

/// One event at a time: `js.publish_with_headers(..).await?.await?`.
pub(crate) async fn confirmed(
    env: &Env,
    wires: &[EncodedEvent],
    pb: &ProgressBar,
) -> anyhow::Result<SideResult> {
    let js = context(&env.client);
    let mut errors = 0u64;
    let start = Instant::now();
    for w in wires {
        let res = async {
            js.publish_with_headers(w.subject.clone(), w.headers.clone(), w.payload.clone())
                .await?
                .await
        }
        .await;
        errors += u64::from(res.is_err());
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
    let js = context(&env.client);
    let mut acks = FuturesUnordered::new();
    let mut errors = 0u64;
    let start = Instant::now();
    for w in wires {
        while acks.len() >= window.max(1) {
            if let Some(r) = acks.next().await {
                errors += u64::from(failed(r));
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
        errors += u64::from(failed(r));
        pb.inc(1);
    }
    Ok(SideResult::publish(
        wires.len() as u64,
        errors,
        start.elapsed(),
    ))
}

pub(crate) fn failed<T, E>(r: Result<T, E>) -> bool {
    r.is_err()
}

/// Where a paced publisher reports the index of each stored event (the restart scenario's
/// gaps and its list of what must arrive).
pub(crate) type OnAck = Box<dyn FnMut(u64) + Send>;

/// Publishes at `rate` events/s for `total` events: event `i` is due at `start + i / rate`
/// and carries that intended time (µs since `epoch`), so that a publisher falling behind
/// shows up as latency (no coordinated omission). Acks are awaited off the send path;
/// `on_ack` runs once per stored ack. Returns the number of failed publishes.
pub(crate) async fn paced_publish(
    client: &async_nats::Client,
    factory: &EventFactory,
    pace: Pace,
    on_ack: Option<OnAck>,
) -> anyhow::Result<u64> {
    let js = context(client);
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, PublishAckFuture)>(20_000);
    let drain = tokio::spawn(drain_acks(rx, on_ack));
    let mut errors = 0u64;
    for i in 0..pace.total {
        let (due, sent_us) = pace.due(i);
        tokio::time::sleep_until(due.into()).await;
        let w = factory.event(i, sent_us)?.encode();
        match js
            .publish_with_headers(w.subject, w.headers, w.payload)
            .await
        {
            Ok(f) => errors += u64::from(tx.send((i, f)).await.is_err()),
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

async fn drain_acks(
    mut rx: tokio::sync::mpsc::Receiver<(u64, PublishAckFuture)>,
    mut on_ack: Option<OnAck>,
) -> u64 {
    let mut errors = 0u64;
    let mut acks = FuturesUnordered::new();
    let mut settle = |(i, r): (u64, Result<_, _>), errors: &mut u64| {
        if failed(r) {
            *errors += 1;
        } else if let Some(f) = on_ack.as_mut() {
            f(i);
        }
    };
    loop {
        tokio::select! {
            Some(r) = acks.next(), if !acks.is_empty() => settle(r, &mut errors),
            f = rx.recv() => match f {
                Some((i, f)) => acks.push(async move { (i, f.await) }),
                None => break,
            },
        }
    }
    while let Some(r) = acks.next().await {
        settle(r, &mut errors);
    }
    errors
}
