//! Paced publishing with a subscriber draining: end-to-end latency.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock_summary;
use crate::env::{Env, EventFactory};
use crate::measure::{LIB, Out, pb_msg};
use crate::raw::{self, AckMode, ConsumeSpec, IdFrom};
use crate::report::{Better, Figure};
use crate::stats::{Latency, LatencyRecorder, Stats};
use crate::{BenchConfig, library};

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

pub(crate) async fn e2e(
    env: &Env,
    cfg: &BenchConfig,
    rate: u64,
    duration: Duration,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("e2e ({rate}/s for {duration:?})");
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let raw_label = "raw js.publish + pull/double_ack";
    let (mut lib, mut raw) = (LatencySamples::default(), LatencySamples::default());
    let limit = duration + Duration::from_secs(60);
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = env.fresh_stream().await?;
            let factory = EventFactory::new(&s.event_type)?;
            let rec = Arc::new(Mutex::new(LatencyRecorder::new()));
            // Publishing starts 300 ms after the epoch so the consumer is pulling by then.
            let epoch = Instant::now();
            let start = epoch + Duration::from_millis(300);
            let pb = env.bar(total, pb_msg(&scenario, LIB, rep, cfg.reps));
            let spec = library::ConsumeSpec {
                instances: 1,
                max_in_flight: cfg.max_in_flight,
                limit,
                id_from_body: true,
            };
            let (c, p) = tokio::join!(
                library::consume(env, &s, total, spec, Some((epoch, rec.clone())), &pb),
                library::paced_publish(
                    env,
                    &factory,
                    epoch,
                    start,
                    rate,
                    total,
                    cfg.library_batch()
                ),
            );
            pb.finish_and_clear();
            if let (Some(c), Some(p)) = (c?, p?) {
                out.check(&scenario, LIB, "publish errors", Some(0), p);
                out.consume_checks(&scenario, LIB, &c);
                lib.push(lock_summary(&rec));
            }
            env.delete_stream(&s).await;
        }
        if !cfg.sides.raw() {
            continue;
        }
        let s = env.fresh_stream().await?;
        let factory = EventFactory::new(&s.event_type)?;
        let rec = Arc::new(Mutex::new(LatencyRecorder::new()));
        let epoch = Instant::now();
        let start = epoch + Duration::from_millis(300);
        let pb = env.bar(total, pb_msg(&scenario, "raw", rep, cfg.reps));
        let spec = ConsumeSpec {
            instances: 1,
            ack: AckMode::DoubleAck,
            max_in_flight: cfg.max_in_flight as usize,
            fetch_batch: cfg.max_in_flight as usize,
            max_ack_pending: 1000,
            id_from: IdFrom::Body,
            limit,
        };
        let (c, p) = tokio::join!(
            raw::consume(env, &s, total, spec, Some((epoch, rec.clone())), &pb),
            raw::paced_publish(env, &factory, epoch, start, rate, total),
        );
        pb.finish_and_clear();
        let (c, p) = (c?, p?);
        out.check(&scenario, raw_label, "publish errors", Some(0), p);
        out.consume_checks(&scenario, raw_label, &c);
        raw.push(lock_summary(&rec));
        env.delete_stream(&s).await;
    }
    for (metric, l, r) in [
        ("p50 latency", &lib.p50, &raw.p50),
        ("p95 latency", &lib.p95, &raw.p95),
        ("p99 latency", &lib.p99, &raw.p99),
        ("max latency", &lib.max, &raw.max),
    ] {
        out.figures.push(Figure::new(
            scenario.clone(),
            metric,
            "ms",
            Better::Lower,
            Stats::of(l).map(|s| ("library".to_owned(), s)),
            Stats::of(r)
                .map(|s| (raw_label.to_owned(), s))
                .into_iter()
                .collect(),
        ));
    }
    Ok(())
}
