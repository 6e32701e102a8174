//! Consuming through [`Subscriber`]: K instances of one group, the full handler path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use events::subscriber::{DeliveryContext, HandlerError, Subscriber, SubscriberConfig, handler_fn};
use events::{Event, SubjectFilter};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::SideResult;
use crate::env::{BenchStream, Observer, Tracker};

/// Settings of one library consume run.
#[derive(Debug, Clone)]
pub(crate) struct ConsumeSpec {
    pub(crate) instances: usize,
    /// The subscriber's configuration (the library's defaults unless the run overrides
    /// `max_in_flight`).
    pub(crate) config: SubscriberConfig,
    pub(crate) limit: Duration,
    /// Take the id from `data.seq` (else from the stream sequence).
    pub(crate) id_from_body: bool,
}

/// `instances` subscribers of group `bench` running a handler that marks ids, until
/// stopped.
pub(crate) struct LibConsumer {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    errors: Arc<AtomicU64>,
}

impl LibConsumer {
    /// Builds the subscribers (which declare their durable consumer) and runs them.
    pub(crate) async fn start(
        js: &jetstream::Context,
        stream: &BenchStream,
        spec: &ConsumeSpec,
        tracker: &Arc<Tracker>,
        observer: &Observer,
    ) -> anyhow::Result<Self> {
        let filter = SubjectFilter::new(&stream.filter).context("benchmark filter")?;
        let mut subs = Vec::new();
        for _ in 0..spec.instances.max(1) {
            subs.push(
                Subscriber::builder(js.clone(), filter.clone())
                    .group("bench")
                    .stream(stream.name.clone())
                    .config(spec.config.clone())
                    .build()
                    .await
                    .context("building the subscriber")?,
            );
        }
        let errors = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for sub in subs {
            let handler = handler(spec.id_from_body, tracker, &errors, observer);
            let stop = stop.clone();
            // What the drain reports is not a figure here; the tracker has every id.
            tasks.spawn(async move {
                let _ = sub.run(handler, stop).await;
            });
        }
        Ok(Self {
            tasks,
            stop,
            errors,
        })
    }

    /// Stops the subscribers (each drains within its `drain_timeout`, bounded here) and
    /// returns the errors seen: ids not found, and a run that did not end in time.
    pub(crate) async fn stop(mut self) -> u64 {
        self.stop.cancel();
        let joined = tokio::time::timeout(Duration::from_secs(45), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        self.errors.load(Ordering::Relaxed) + u64::from(joined.is_err())
    }
}

/// The bench's handler: finds the id, observes the event, marks the id; no other work.
fn handler(
    id_from_body: bool,
    tracker: &Arc<Tracker>,
    errors: &Arc<AtomicU64>,
    observer: &Observer,
) -> impl events::subscriber::Handler + use<> {
    let (tracker, errors, observer) = (tracker.clone(), errors.clone(), observer.clone());
    handler_fn(move |event: Event, ctx: DeliveryContext| {
        let id = if id_from_body {
            event.data().get("seq").and_then(serde_json::Value::as_u64)
        } else {
            Some(ctx.stream_sequence.saturating_sub(1))
        };
        let sent = event
            .data()
            .get("sent_us")
            .and_then(serde_json::Value::as_u64);
        observer.handled(sent);
        match id {
            Some(i) => tracker.mark(i),
            None => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        async { Ok::<(), HandlerError>(()) }
    })
}

/// Drains `n` events (ids `0..n`) with `Subscriber::run`; returns once every id was
/// handled, or at the limit.
pub(crate) async fn consume(
    js: &jetstream::Context,
    stream: &BenchStream,
    n: u64,
    spec: &ConsumeSpec,
    observer: &Observer,
) -> anyhow::Result<Option<SideResult>> {
    let tracker = Tracker::new(n);
    let consumer = LibConsumer::start(js, stream, spec, &tracker, observer).await?;
    let start = Instant::now();
    let complete = tracker.wait_all(spec.limit).await;
    let elapsed = start.elapsed();
    let errors = consumer.stop().await;
    let res = SideResult::drained(tracker.tally(), errors, elapsed, complete, spec.limit);
    Ok(Some(res))
}
