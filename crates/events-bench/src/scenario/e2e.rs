//! Paced publishing with a subscriber draining: end-to-end latency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock_summary;
use super::paced::{Paced, Side, paced_checks, paced_side};
use crate::env::{Env, Observer, Pace};
use crate::measure::{Out, pb_msg};
use crate::report::{Better, Figure};
use crate::stats::{Latency, LatencyRecorder, Stats};
use crate::{BenchConfig, goals, library};

/// Latency percentiles of one side over the repetitions.
#[derive(Default)]
struct LatencySamples {
    p50: Vec<f64>,
    p95: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
}

impl LatencySamples {
    fn push(&mut self, l: Latency) {
        self.p50.push(l.p50_ms);
        self.p95.push(l.p95_ms);
        self.p99.push(l.p99_ms);
        self.max.push(l.max_ms);
    }
}

/// One side's run on a fresh stream; the latency percentiles of what it handled.
async fn side_rep(
    env: &Env,
    cfg: &BenchConfig,
    library_side: bool,
    pace: Pace,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<(Paced, Latency)> {
    let s = env.fresh_stream().await?;
    let rec = Arc::new(Mutex::new(LatencyRecorder::new()));
    let observer = Observer {
        latency: Some((pace.epoch, rec.clone())),
        ..Observer::progress(pb)
    };
    let side = Side {
        library: library_side,
        publisher: library::publisher_config(None, cfg.library_batch()),
        client: &env.client,
        js: &env.js,
    };
    let run = paced_side(cfg, &side, &s, pace, &observer, None, async {}).await;
    env.delete_stream(&s).await;
    let (paced, ()) = run?;
    Ok((paced, lock_summary(&rec)))
}

pub(crate) async fn e2e(
    env: &Env,
    cfg: &BenchConfig,
    rate: u64,
    duration: Duration,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("e2e ({rate}/s for {duration:?})");
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let lib_label = format!(
        "library publish_async (batching {}) + Subscriber",
        if cfg.library_batch() { "on" } else { "off" }
    );
    let raw_label = "raw js.publish + messages()/ack (client defaults)";
    let (mut lib, mut raw) = (LatencySamples::default(), LatencySamples::default());
    for rep in 0..cfg.reps {
        for (library_side, label, samples) in [
            (true, lib_label.as_str(), &mut lib),
            (false, raw_label, &mut raw),
        ] {
            if !cfg.sides.wants(library_side) {
                continue;
            }
            // Publishing starts 300 ms after the epoch so that the consumer is pulling.
            let pace = Pace::new(rate, total, Duration::from_millis(300));
            let pb = env.bar(total, pb_msg(&scenario, label, rep, cfg.reps));
            let (paced, latency) = side_rep(env, cfg, library_side, pace, &pb).await?;
            pb.finish_and_clear();
            paced_checks(out, &scenario, label, library_side, &paced);
            samples.push(latency);
        }
    }
    for (metric, l, r) in [
        ("p50 latency", &lib.p50, &raw.p50),
        ("p95 latency", &lib.p95, &raw.p95),
        ("p99 latency", &lib.p99, &raw.p99),
        ("max latency", &lib.max, &raw.max),
    ] {
        let fig = Figure::new(
            scenario.clone(),
            metric,
            "ms",
            Better::Lower,
            Stats::of(l).map(|s| (lib_label.clone(), s)),
            Stats::of(r)
                .map(|s| (raw_label.to_owned(), s))
                .into_iter()
                .collect(),
        );
        out.figures.push(if metric == "p99 latency" {
            goals::e2e_p99(fig, cfg.known_sync(), rate, raw_label)
        } else {
            fig
        });
    }
    Ok(())
}
