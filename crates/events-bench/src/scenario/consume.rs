//! Draining a pre-filled stream with K instances of one group: the library's `Subscriber`
//! with its defaults against raw consumers with the client's defaults (the goal's
//! baseline) and with the library's sizes (extra baselines).

use std::time::Duration;

use super::plural;
use crate::env::{BenchStream, Env, Observer};
use crate::measure::{LIB, Out, Series, cpu_figure, pb_msg, throughput, with_cpu, with_cpu_raw};
use crate::raw::{self, AckMode, ConsumeSpec, IdFrom, Pull};
use crate::{BenchConfig, goals, library};

/// How long a consume run may take before it is reported incomplete.
pub(crate) fn consume_limit(n: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(n.saturating_mul(2))
}

/// The raw lines of a consume scenario, the goal's baseline (client defaults) first, then
/// the library's pull size and in-flight count with plain and with confirmed acks.
pub(crate) fn raw_specs(cfg: &BenchConfig, instances: usize, limit: Duration) -> Vec<ConsumeSpec> {
    let lib = cfg.subscriber_config();
    let pull = Pull::Batch {
        batch: lib.fetch_batch as usize,
        max_ack_pending: lib.max_ack_pending,
    };
    let defaults = ConsumeSpec {
        instances,
        ..ConsumeSpec::client_defaults(IdFrom::Sequence, limit)
    };
    let sized = |ack| ConsumeSpec {
        pull,
        ack,
        ..defaults
    };
    vec![
        defaults,
        sized(AckMode::Ack),
        sized(AckMode::DoubleAck {
            max_in_flight: lib.max_in_flight as usize,
        }),
    ]
}

/// A fresh stream holding `n` events.
async fn filled(env: &Env, n: u64, rep: u32, reps: u32) -> anyhow::Result<BenchStream> {
    let s = env.fresh_stream().await?;
    let pb = env.bar(n, format!("prefill {n} · rep {}/{reps}", rep + 1));
    raw::prefill(env, &s, n, &pb).await?;
    pb.finish_and_clear();
    Ok(s)
}

pub(crate) async fn consume(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    instances: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("consume ({instances} instance{})", plural(instances));
    let specs = raw_specs(cfg, instances, consume_limit(n));
    let mut lib = Series::new("library Subscriber (decode+handler+ack), defaults");
    let mut raws: Vec<Series> = specs.iter().map(|s| Series::new(s.label())).collect();
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = filled(env, n, rep, cfg.reps).await?;
            let pb = env.bar(n, pb_msg(&scenario, LIB, rep, cfg.reps));
            let spec = library::ConsumeSpec {
                instances,
                config: cfg.subscriber_config(),
                limit: consume_limit(n),
                id_from_body: false,
            };
            let observer = Observer::progress(&pb);
            let run = library::consume(&env.js, &s, n, &spec, &observer);
            if let Some(r) = with_cpu(run).await? {
                out.consume_checks(&scenario, LIB, &r);
                lib.push(&r);
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;
        }
        for (spec, series) in specs.iter().zip(raws.iter_mut()) {
            if !cfg.sides.raw() {
                break;
            }
            let s = filled(env, n, rep, cfg.reps).await?;
            let pb = env.bar(n, pb_msg(&scenario, &series.label, rep, cfg.reps));
            let observer = Observer::progress(&pb);
            let run = raw::consume(&env.js, &s, n, *spec, &observer);
            let r = with_cpu_raw(run).await?;
            pb.finish_and_clear();
            out.consume_checks(&scenario, &series.label, &r);
            series.push(&r);
            env.delete_stream(&s).await;
        }
    }
    let raw_refs: Vec<&Series> = raws.iter().collect();
    let fig = throughput(&scenario, &lib, &raw_refs);
    out.figures.push(goals::consume(fig, &raws[0].label));
    out.figures.extend(cpu_figure(&scenario, &lib, &raw_refs));
    Ok(())
}
