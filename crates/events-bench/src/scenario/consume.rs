//! Draining a stream with K instances of one group.

use std::time::Duration;

use super::plural;
use crate::env::Env;
use crate::measure::{LIB, Out, cpu_figure, pb_msg, with_cpu, with_cpu_raw};
use crate::raw::{self, AckMode, ConsumeSpec, IdFrom};
use crate::report::{Better, Figure};
use crate::stats::Stats;
use crate::{BenchConfig, library};

/// How long a consume run may take before it is reported incomplete.
pub(crate) fn consume_limit(n: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(n.saturating_mul(2))
}

pub(crate) async fn consume(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    instances: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("consume ({instances} instance{})", plural(instances));
    let modes = [AckMode::Ack, AckMode::DoubleAck];
    let mut lib = Vec::new();
    let mut raw: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let (mut lib_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = env.fresh_stream().await?;
            let pb = env.bar(n, format!("prefill {n} · rep {}/{}", rep + 1, cfg.reps));
            raw::prefill(env, &s, n, &pb).await?;
            pb.finish_and_clear();
            let pb = env.bar(n, pb_msg(&scenario, LIB, rep, cfg.reps));
            let spec = library::ConsumeSpec {
                instances,
                max_in_flight: cfg.max_in_flight,
                limit: consume_limit(n),
                id_from_body: false,
            };
            if let Some(r) = with_cpu(library::consume(env, &s, n, spec, None, &pb)).await? {
                out.consume_checks(&scenario, LIB, &r);
                lib.push(r.rate());
                lib_cpu.push(r.cpu_us());
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;
        }

        for (i, mode) in modes.iter().enumerate() {
            if !cfg.sides.raw() {
                break;
            }
            let s = env.fresh_stream().await?;
            let pb = env.bar(n, format!("prefill {n} · rep {}/{}", rep + 1, cfg.reps));
            raw::prefill(env, &s, n, &pb).await?;
            pb.finish_and_clear();
            let side = format!("raw pull + {}", mode.label());
            let pb = env.bar(n, pb_msg(&scenario, &side, rep, cfg.reps));
            let spec = ConsumeSpec {
                instances,
                ack: *mode,
                max_in_flight: cfg.max_in_flight as usize,
                fetch_batch: cfg.max_in_flight as usize,
                max_ack_pending: 1000,
                id_from: IdFrom::Sequence,
                limit: consume_limit(n),
            };
            let r = with_cpu_raw(raw::consume(env, &s, n, spec, None, &pb)).await?;
            pb.finish_and_clear();
            out.consume_checks(&scenario, &side, &r);
            raw[i].push(r.rate());
            if *mode == AckMode::DoubleAck {
                raw_cpu.push(r.cpu_us());
            }
            env.delete_stream(&s).await;
        }
    }
    // The library confirms each ack (double_ack): that baseline is the like-for-like one,
    // so it comes first; plain ack shows what confirming costs.
    let mut baselines = Vec::new();
    for i in [1usize, 0] {
        if let Some(s) = Stats::of(&raw[i]) {
            baselines.push((format!("raw pull + {}", modes[i].label()), s));
        }
    }
    out.figures.push(Figure::new(
        scenario.clone(),
        "throughput",
        "events/s",
        Better::Higher,
        Stats::of(&lib).map(|s| {
            (
                "library Subscriber (decode+handler+double ack)".to_owned(),
                s,
            )
        }),
        baselines,
    ));
    out.figures.extend(cpu_figure(
        &scenario,
        &lib_cpu,
        &raw_cpu,
        "raw pull + double_ack",
    ));
    Ok(())
}
