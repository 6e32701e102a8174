//! A consumer's memory: a stream pre-filled with N events (10,000 encoded at a time, so
//! that the bench itself holds little) drained by one consumer; the peak resident size of
//! the whole bench process during the drain (VmHWM after resetting it), an upper bound of
//! what a process that only consumes needs. Once per side.

use super::consume::consume_limit;
use crate::env::{self, Env, Observer};
use crate::measure::{LIB, Out, SideResult};
use crate::raw::{self, ConsumeSpec, IdFrom};
use crate::report::{Better, Figure};
use crate::stats::Stats;
use crate::{BenchConfig, goals, library};

/// What one side's drain measured.
struct Drained {
    result: SideResult,
    /// Peak resident bytes during the drain.
    peak: Option<u64>,
    /// Peak minus the resident bytes when the drain started.
    growth: Option<u64>,
}

async fn drain_side(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    library_side: bool,
    label: &str,
) -> anyhow::Result<Option<Drained>> {
    let s = env.fresh_stream().await?;
    let pb = env.bar(n, format!("prefill {n}"));
    raw::prefill(env, &s, n, &pb).await?;
    pb.finish_and_clear();
    let pb = env.bar(n, format!("drain ({n} events) · {label}"));
    let observer = Observer::progress(&pb);
    let base = env::reset_peak_rss();
    let result = if library_side {
        let spec = library::ConsumeSpec {
            instances: 1,
            config: cfg.subscriber_config(),
            limit: consume_limit(n),
            id_from_body: false,
        };
        library::consume(&env.js, &s, n, &spec, &observer).await?
    } else {
        let spec = ConsumeSpec::client_defaults(IdFrom::Sequence, consume_limit(n));
        Some(raw::consume(&env.js, &s, n, spec, &observer).await?)
    };
    let peak = env::peak_rss();
    pb.finish_and_clear();
    env.delete_stream(&s).await;
    Ok(result.map(|result| Drained {
        result,
        peak,
        growth: base.zip(peak).map(|(b, p)| p.saturating_sub(b)),
    }))
}

pub(crate) async fn drain(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("drain ({n} events)");
    let lib_label = "library Subscriber, defaults";
    let raw_label = "raw messages() + ack (client defaults)";
    let mut lib = None;
    if cfg.sides.library() {
        lib = drain_side(env, cfg, n, true, lib_label).await?;
        if let Some(d) = &lib {
            out.consume_checks(&scenario, LIB, &d.result);
        }
    }
    let mut raw = None;
    if cfg.sides.raw() {
        raw = drain_side(env, cfg, n, false, raw_label).await?;
        if let Some(d) = &raw {
            out.consume_checks(&scenario, raw_label, &d.result);
        }
    }
    let mib = |b: Option<u64>| b.and_then(|b| Stats::of(&[b as f64 / (1024.0 * 1024.0)]));
    let figure = |metric: &str, f: fn(&Drained) -> Option<u64>| {
        Figure::new(
            scenario.clone(),
            metric,
            "MiB",
            Better::Lower,
            mib(lib.as_ref().and_then(f)).map(|s| (lib_label.to_owned(), s)),
            mib(raw.as_ref().and_then(f))
                .map(|s| (raw_label.to_owned(), s))
                .into_iter()
                .collect(),
        )
    };
    let peak = figure("peak RSS while draining (whole bench process)", |d| d.peak);
    out.figures.push(goals::drain_rss(peak, n));
    out.figures
        .push(figure("RSS growth while draining (peak - start)", |d| {
            d.growth
        }));
    Ok(())
}
