//! Recovery after a server restart: a publisher at a steady pace while a consumer drains,
//! and the bench restarts its test-kit server (SIGTERM, then start again on the same port
//! and store) once, a third of the way in. Measured: the longest pause between
//! consecutive stored acks (publish side), between consecutive handled events (consume
//! side), and the restart itself. The library connects through `events::connection`
//! (its reconnect policy) and publishes with `publish_async`; raw async-nats connects
//! with the client's defaults, publishes with `publish_with_headers` + ack futures and
//! consumes with `messages()` + `ack()`. Only on a server the bench started.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use async_nats::jetstream;
use events::connection::{ConnectConfig, connect};
use events_testkit::NatsServer;
use futures::FutureExt as _;

use super::paced::{Paced, Side, paced_checks, paced_side};
use crate::env::{Env, Observer, Pace};
use crate::measure::{Out, pb_msg};
use crate::report::{Better, Figure};
use crate::stats::{GapMeter, Stats};
use crate::{BenchConfig, library};

/// What one side's run measured.
struct Recovery {
    ack_gap: Duration,
    handled_gap: Duration,
    restart: Duration,
    paced: Paced,
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

/// One side's run on a fresh stream, on the side's own connection.
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
    let handled = Arc::new(GapMeter::default());
    let observer = Observer {
        gaps: Some(handled.clone()),
        ..Observer::progress(pb)
    };
    let side = Side {
        library: library_side,
        publisher: library::publisher_config(None, true),
        client: &client,
        js: &js,
    };
    let acks = Arc::new(GapMeter::default());
    let third = Duration::from_secs_f64(pace.total as f64 / pace.rate.max(1) as f64 / 3.0);
    let restart = restart_at(server, pace.start + third);
    let run = paced_side(cfg, &side, &s, pace, &observer, Some(acks.clone()), restart).await;
    wait_connected(&env.client).await;
    env.delete_stream(&s).await;
    let (paced, restart) = run?;
    Ok(Recovery {
        ack_gap: acks.longest(),
        handled_gap: handled.longest(),
        restart: restart?,
        paced,
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
            paced_checks(out, &scenario, label, library_side, &r.paced);
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
