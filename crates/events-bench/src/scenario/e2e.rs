//! Paced publishing with a subscriber draining: end-to-end latency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock_summary;
use crate::env::{Env, EventFactory, Observer, Pace};
use crate::measure::{Out, SideResult, pb_msg};
use crate::raw::{self, ConsumeSpec, IdFrom};
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

/// One side's run: the consumer (started first) and the paced publisher together.
async fn side_rep(
    env: &Env,
    cfg: &BenchConfig,
    library_side: bool,
    pace: Pace,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<Option<(SideResult, u64, Latency)>> {
    let s = env.fresh_stream().await?;
    let factory = EventFactory::new(&s.event_type)?;
    let rec = Arc::new(Mutex::new(LatencyRecorder::new()));
    let observer = Observer {
        latency: Some((pace.epoch, rec.clone())),
        ..Observer::progress(pb)
    };
    let limit = Duration::from_secs_f64(pace.total as f64 / pace.rate.max(1) as f64)
        + Duration::from_secs(60);
    let res = if library_side {
        let spec = library::ConsumeSpec {
            instances: 1,
            config: cfg.subscriber_config(),
            limit,
            id_from_body: true,
        };
        let publisher = library::publisher_config(None, cfg.library_batch());
        let (c, p) = tokio::join!(
            library::consume(&env.js, &s, pace.total, &spec, &observer),
            library::paced_publish(&env.client, &factory, pace, publisher, None),
        );
        c?.zip(p?)
    } else {
        let spec = ConsumeSpec::client_defaults(IdFrom::Body, limit);
        let (c, p) = tokio::join!(
            raw::consume(&env.js, &s, pace.total, spec, &observer),
            raw::paced_publish(&env.client, &factory, pace, None),
        );
        Some((c?, p?))
    };
    env.delete_stream(&s).await;
    Ok(res.map(|(c, p)| (c, p, lock_summary(&rec))))
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
            let r = side_rep(env, cfg, library_side, pace, &pb).await?;
            pb.finish_and_clear();
            if let Some((c, publish_errors, latency)) = r {
                out.check(&scenario, label, "publish errors", Some(0), publish_errors);
                out.consume_checks(&scenario, label, &c);
                samples.push(latency);
            }
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
