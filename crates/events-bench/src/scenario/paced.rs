//! One side of a paced run (the e2e and restart scenarios): a consumer started first, a
//! publisher at a steady pace and whatever runs alongside it (the restart), then a bounded
//! wait until every event whose store was acknowledged has been handled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use events::publisher::PublisherConfig;

use crate::env::{BenchStream, EventFactory, Observer, OnAck, Pace, Tracker};
use crate::measure::{LIB, Out};
use crate::raw::{self, ConsumeSpec, IdFrom, RawConsumer};
use crate::stats::GapMeter;
use crate::{BenchConfig, library};

/// How long the consumer may take, after the last publish settled, to handle every
/// event whose store was acknowledged.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Who does the work, on which connection.
pub(crate) struct Side<'a> {
    /// The library (`Publisher` with `publisher`, `Subscriber`), else raw async-nats.
    pub(crate) library: bool,
    pub(crate) publisher: PublisherConfig,
    pub(crate) client: &'a async_nats::Client,
    pub(crate) js: &'a jetstream::Context,
}

/// What one paced run of one side counted.
pub(crate) struct Paced {
    pub(crate) publish_errors: u64,
    /// Events acknowledged as stored.
    pub(crate) acked: u64,
    /// Acknowledged but not handled within [`CATCH_UP`].
    pub(crate) not_handled: u64,
    /// Distinct events handled.
    pub(crate) handled: u64,
    pub(crate) duplicates: u64,
    pub(crate) consumer_errors: u64,
}

enum Consumer {
    Library(library::LibConsumer),
    // Boxed: the raw consumer holds a JetStream context (one value per run, not hot).
    Raw(Box<RawConsumer>),
}

impl Consumer {
    async fn start(
        cfg: &BenchConfig,
        side: &Side<'_>,
        s: &BenchStream,
        tracker: &Arc<Tracker>,
        observer: &Observer,
    ) -> anyhow::Result<Self> {
        if side.library {
            let spec = library::ConsumeSpec {
                instances: 1,
                config: cfg.subscriber_config(),
                limit: CATCH_UP,
                id_from_body: true,
            };
            let c = library::LibConsumer::start(side.js, s, &spec, tracker, observer).await?;
            Ok(Self::Library(c))
        } else {
            let spec = ConsumeSpec::client_defaults(IdFrom::Body, CATCH_UP);
            let c = RawConsumer::start(side.js, s, spec, tracker, observer).await?;
            Ok(Self::Raw(Box::new(c)))
        }
    }

    async fn stop(self) -> u64 {
        match self {
            Self::Library(c) => c.stop().await,
            Self::Raw(c) => c.stop().await,
        }
    }
}

/// The paced publisher of one side, recording the ids of stored acks (and their gaps).
async fn publish(
    side: &Side<'_>,
    factory: &EventFactory,
    pace: Pace,
    gaps: Option<Arc<GapMeter>>,
    acked: Arc<Mutex<Vec<u64>>>,
) -> anyhow::Result<u64> {
    let on_ack: OnAck = Box::new(move |i| {
        if let Some(g) = &gaps {
            g.mark();
        }
        if let Ok(mut a) = acked.lock() {
            a.push(i);
        }
    });
    if side.library {
        let cfg = side.publisher.clone();
        let errors = library::paced_publish(side.client, factory, pace, cfg, Some(on_ack)).await?;
        Ok(errors.unwrap_or(pace.total))
    } else {
        raw::paced_publish(side.client, factory, pace, Some(on_ack)).await
    }
}

/// Runs one side on stream `s`: the consumer, the paced publisher with `alongside`, the
/// catch-up. `ack_gaps` measures the pauses between stored acks.
pub(crate) async fn paced_side<A: Future>(
    cfg: &BenchConfig,
    side: &Side<'_>,
    s: &BenchStream,
    pace: Pace,
    observer: &Observer,
    ack_gaps: Option<Arc<GapMeter>>,
    alongside: A,
) -> anyhow::Result<(Paced, A::Output)> {
    let factory = EventFactory::new(&s.event_type)?;
    let tracker = Tracker::new(pace.total);
    let consumer = Consumer::start(cfg, side, s, &tracker, observer).await?;
    let acked = Arc::default();
    let (published, beside) = tokio::join!(
        publish(side, &factory, pace, ack_gaps, Arc::clone(&acked)),
        alongside,
    );
    let publish_errors = match published {
        Ok(e) => e,
        Err(e) => {
            consumer.stop().await;
            return Err(e);
        }
    };
    let acked: Vec<u64> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    tracker.wait_for(&acked, CATCH_UP).await;
    let not_handled = acked.iter().filter(|&&i| !tracker.has(i)).count() as u64;
    let consumer_errors = consumer.stop().await;
    let tally = tracker.tally();
    let paced = Paced {
        publish_errors,
        acked: acked.len() as u64,
        not_handled,
        handled: tally.unique,
        duplicates: tally.duplicates,
        consumer_errors,
    };
    Ok((paced, beside))
}

/// The checks of a paced run. Nothing acknowledged may go unhandled, on either side. The
/// library must store and deliver every event (it retries); raw async-nats does not
/// retry, so its failed publishes are reported and it must deliver what was stored.
pub(crate) fn paced_checks(out: &mut Out, scenario: &str, side: &str, library: bool, p: &Paced) {
    let name = if library { LIB } else { side };
    let errors = library.then_some(0);
    out.check(scenario, name, "publish errors", errors, p.publish_errors);
    out.check(
        scenario,
        name,
        "delivered",
        library.then_some(p.acked),
        p.handled,
    );
    out.check(scenario, name, "acked, not handled", Some(0), p.not_handled);
    out.check(scenario, name, "consumer errors", errors, p.consumer_errors);
    out.check(scenario, name, "duplicates", None, p.duplicates);
}
