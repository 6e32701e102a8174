//! Raw per-message publishing with the client's defaults (`jetstream::new(client)`: 5 s
//! request timeout, 5,000 acks in flight with backpressure), each message with the two
//! headers the library sends: `Content-Type` and a unique `Nats-Msg-Id`.

use std::time::Instant;

use async_nats::jetstream;
use events::event::EncodedEvent;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;

use crate::SideResult;
use crate::env::{Env, EventFactory, OnAck, Pace, run_paced};

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
    run_paced(pace, on_ack, async |i, sent_us| {
        let w = factory.event(i, sent_us)?.encode();
        let ack = js
            .publish_with_headers(w.subject, w.headers, w.payload)
            .await
            .ok();
        Ok(ack.map(|f| async move { f.await.is_ok() }))
    })
    .await
}
