//! Recovery after a server restart: a publisher at a steady pace while a consumer drains,
//! and the bench restarts its test-kit server (SIGTERM, then start again on the same port
//! and store) once, a third of the way in. Measured: the longest pause between
//! consecutive stored acks (publish side), between consecutive handled events (consume
//! side), and the restart itself. The library connects through `events::connection`
//! (its reconnect policy) and publishes with `publish_async`; raw async-nats connects
//! with the client's defaults, publishes with `publish_with_headers` + ack futures and
//! consumes with `messages()` + `ack()`. Only on a server the bench started.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use async_nats::jetstream;
use events::connection::{ConnectConfig, connect};
use events_testkit::NatsServer;
use futures::FutureExt as _;

use crate::env::{BenchStream, Env, EventFactory, Observer, OnAck, Pace, Tracker};
use crate::measure::{LIB, Out, pb_msg};
use crate::raw::{self, ConsumeSpec, IdFrom, RawConsumer};
use crate::report::{Better, Figure};
use crate::stats::{GapMeter, Stats};
use crate::{BenchConfig, library};

/// How long the consumer may take, after the last publish settled, to handle every
/// event whose store was acknowledged.
const CATCH_UP: Duration = Duration::from_secs(60);

/// What one side's run measured.
struct Recovery {
    ack_gap: Duration,
    handled_gap: Duration,
    restart: Duration,
    publish_errors: u64,
    /// Acknowledged as stored but never handled within [`CATCH_UP`].
    not_handled: u64,
    duplicates: u64,
}

/// A side's own connection: through the library's connection module (its reconnect
/// policy), or `async_nats::connect` with the client's defaults.
async fn connect_side(
    url: &str,
    library_side: bool,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    if library_side {
        let conn = connect(&ConnectConfig::for_url(url))
            .await
            .context("connecting through events::connection")?;
        Ok((conn.client().clone(), conn.jetstream().clone()))
    } else {
        let client = tokio::time::timeout(Duration::from_secs(15), async_nats::connect(url))
            .await
            .context("connecting raw timed out")??;
        Ok((client.clone(), jetstream::new(client)))
    }
}

enum Consumer {
    Library(library::LibConsumer),
    // Boxed: the raw consumer holds a JetStream context (one value per run, not hot).
    Raw(Box<RawConsumer>),
}

impl Consumer {
    async fn start(
        cfg: &BenchConfig,
        js: &jetstream::Context,
        s: &BenchStream,
        tracker: &Arc<Tracker>,
        observer: &Observer,
        library_side: bool,
    ) -> anyhow::Result<Self> {
        if library_side {
            let spec = library::ConsumeSpec {
                instances: 1,
                config: cfg.subscriber_config(),
                limit: CATCH_UP,
                id_from_body: true,
            };
            let c = library::LibConsumer::start(js, s, &spec, tracker, observer).await?;
            Ok(Self::Library(c))
        } else {
            let spec = ConsumeSpec::client_defaults(IdFrom::Body, CATCH_UP);
            let c = RawConsumer::start(js, s, spec, tracker, observer).await?;
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

/// Restarts the server at `at`; returns how long the restart took.
async fn restart_at(server: &mut NatsServer, at: Instant) -> anyhow::Result<Duration> {
    tokio::time::sleep_until(at.into()).await;
    let t = Instant::now();
    // The test kit panics when the server is not back within its bound: an error here.
    AssertUnwindSafe(server.restart())
        .catch_unwind()
        .await
        .map_err(|_| anyhow!("the test-kit server did not come back after the restart"))?;
    Ok(t.elapsed())
}

/// Waits (at most 20 s) until the harness's own client is connected again after the
/// restart, so that the next stream is not requested into a reconnect.
async fn wait_connected(client: &async_nats::Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.connection_state() != async_nats::connection::State::Connected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The paced publisher of one side, recording the gaps and the ids of stored acks.
async fn publish_side(
    client: &async_nats::Client,
    factory: &EventFactory,
    pace: Pace,
    library_side: bool,
    gaps: Arc<GapMeter>,
    acked: Arc<Mutex<Vec<u64>>>,
) -> anyhow::Result<u64> {
    let on_ack: OnAck = Box::new(move |i| {
        gaps.mark();
        if let Ok(mut a) = acked.lock() {
            a.push(i);
        }
    });
    if library_side {
        let cfg = library::publisher_config(None, true);
        let errors = library::paced_publish(client, factory, pace, cfg, Some(on_ack)).await?;
        Ok(errors.unwrap_or(pace.total))
    } else {
        raw::paced_publish(client, factory, pace, Some(on_ack)).await
    }
}

/// One side's run on a fresh stream.
async fn side_run(
    env: &Env,
    cfg: &BenchConfig,
    server: &mut NatsServer,
    library_side: bool,
    pace: Pace,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<Recovery> {
    let s = env.fresh_stream().await?;
    let (client, js) = connect_side(&server.url(), library_side).await?;
    let factory = EventFactory::new(&s.event_type)?;
    let tracker = Tracker::new(pace.total);
    let handled = Arc::new(GapMeter::default());
    let observer = Observer {
        gaps: Some(handled.clone()),
        ..Observer::progress(pb)
    };
    let consumer = Consumer::start(cfg, &js, &s, &tracker, &observer, library_side).await?;
    let (acks, acked) = (Arc::new(GapMeter::default()), Arc::default());
    let third = Duration::from_secs_f64(pace.total as f64 / pace.rate.max(1) as f64 / 3.0);
    let (published, restarted) = tokio::join!(
        publish_side(
            &client,
            &factory,
            pace,
            library_side,
            acks.clone(),
            Arc::clone(&acked)
        ),
        restart_at(server, pace.start + third),
    );
    let restart = restarted?;
    let publish_errors = published?;
    wait_connected(&env.client).await;
    let acked: Vec<u64> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    tracker.wait_for(&acked, CATCH_UP).await;
    let not_handled = acked.iter().filter(|&&i| !tracker.has(i)).count() as u64;
    consumer.stop().await;
    env.delete_stream(&s).await;
    Ok(Recovery {
        ack_gap: acks.longest(),
        handled_gap: handled.longest(),
        restart,
        publish_errors,
        not_handled,
        duplicates: tracker.tally().duplicates,
    })
}

/// The pauses of each side over the repetitions, in milliseconds.
#[derive(Default)]
struct Pauses {
    ack_gap: Vec<f64>,
    handled_gap: Vec<f64>,
    restart: Vec<f64>,
}

impl Pauses {
    fn push(&mut self, r: &Recovery) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.ack_gap.push(ms(r.ack_gap));
        self.handled_gap.push(ms(r.handled_gap));
        self.restart.push(ms(r.restart));
    }
}

pub(crate) async fn restart(
    env: &Env,
    cfg: &BenchConfig,
    server: Option<&mut NatsServer>,
    rate: u64,
    duration: Duration,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("restart ({rate}/s for {duration:?})");
    let Some(server) = server else {
        let note = format!(
            "{scenario} skipped: the bench restarts only a server it started itself, and \
             it was given an external one"
        );
        eprintln!("{note}");
        out.notes.push(note);
        return Ok(());
    };
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let lib_label = "library publish_async + Subscriber, defaults";
    let raw_label = "raw publish_with_headers + messages()/ack (client defaults)";
    let (mut lib, mut raw) = (Pauses::default(), Pauses::default());
    for rep in 0..cfg.reps {
        for (library_side, label, pauses) in
            [(true, lib_label, &mut lib), (false, raw_label, &mut raw)]
        {
            if !cfg.sides.wants(library_side) {
                continue;
            }
            let pace = Pace::new(rate, total, Duration::from_millis(300));
            let pb = env.bar(total, pb_msg(&scenario, label, rep, cfg.reps));
            let r = side_run(env, cfg, server, library_side, pace, &pb).await?;
            pb.finish_and_clear();
            restart_checks(out, &scenario, library_side, label, &r);
            pauses.push(&r);
        }
    }
    let lib_l = lib_label.to_owned();
    for (metric, l, r) in [
        (
            "longest pause between stored acks",
            &lib.ack_gap,
            &raw.ack_gap,
        ),
        (
            "longest pause between handled events",
            &lib.handled_gap,
            &raw.handled_gap,
        ),
        (
            "server restart (stop, start until ready)",
            &lib.restart,
            &raw.restart,
        ),
    ] {
        out.figures.push(Figure::new(
            scenario.clone(),
            metric,
            "ms",
            Better::Lower,
            Stats::of(l).map(|s| (lib_l.clone(), s)),
            Stats::of(r)
                .map(|s| (raw_label.to_owned(), s))
                .into_iter()
                .collect(),
        ));
    }
    Ok(())
}

/// Nothing acknowledged may go unhandled, on either side. The library must store every
/// event (it retries); raw async-nats does not retry, so its failed publishes are only
/// reported.
fn restart_checks(out: &mut Out, scenario: &str, library_side: bool, label: &str, r: &Recovery) {
    let side = if library_side { LIB } else { label };
    let expected_errors = library_side.then_some(0);
    out.check(
        scenario,
        side,
        "publish errors",
        expected_errors,
        r.publish_errors,
    );
    out.check(scenario, side, "acked, not handled", Some(0), r.not_handled);
    out.check(scenario, side, "duplicates", None, r.duplicates);
}
