//! The load test: a large windowed publish drained by a subscriber, every id checked.

use super::consume::consume_limit;
use super::publish::encode_all;
use crate::env::{self, Env, EventFactory};
use crate::measure::{LIB, Out, SideResult};
use crate::raw::{self, AckMode, ConsumeSpec, IdFrom};
use crate::report::{Better, Figure};
use crate::stats::Stats;
use crate::{BenchConfig, library};

pub(crate) async fn load(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    window: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("load ({n} events)");
    let raw_label = "raw js.publish + pull/double_ack";
    let mut lib_pub = None;
    let mut lib_cons = None;
    let mut lib_rss = None;
    if cfg.sides.library() {
        let s = env.fresh_stream().await?;
        let evs = EventFactory::new(&s.event_type)?.events(n)?;
        let pb = env.bar(n, format!("{scenario} · library publish"));
        lib_pub = library::windowed(env, &evs, window, cfg.library_batch(), &pb).await?;
        pb.finish_and_clear();
        drop(evs);
        if let Some(r) = &lib_pub {
            out.publish_checks(&scenario, LIB, r, env.stored(&s).await?);
            let reset = env::reset_peak_rss();
            let pb = env.bar(n, format!("{scenario} · library consume"));
            let spec = library::ConsumeSpec {
                instances: 1,
                max_in_flight: cfg.max_in_flight,
                limit: consume_limit(n),
                id_from_body: true,
            };
            lib_cons = library::consume(env, &s, n, spec, None, &pb).await?;
            pb.finish_and_clear();
            if let (Some(base), Some(peak)) = (reset, env::peak_rss()) {
                lib_rss = Some(peak.saturating_sub(base));
            }
            if let Some(c) = &lib_cons {
                out.consume_checks(&scenario, LIB, c);
            }
        }
        env.delete_stream(&s).await;
    }
    if !cfg.sides.raw() {
        return Ok(());
    }

    let s = env.fresh_stream().await?;
    let wires = encode_all(&EventFactory::new(&s.event_type)?.events(n)?);
    let pb = env.bar(n, format!("{scenario} · raw publish"));
    let raw_pub = raw::windowed(env, &wires, window, &pb).await?;
    pb.finish_and_clear();
    drop(wires);
    out.publish_checks(&scenario, raw_label, &raw_pub, env.stored(&s).await?);
    let reset = env::reset_peak_rss();
    let pb = env.bar(n, format!("{scenario} · raw consume"));
    let spec = ConsumeSpec {
        instances: 1,
        ack: AckMode::DoubleAck,
        max_in_flight: cfg.max_in_flight as usize,
        fetch_batch: cfg.max_in_flight as usize,
        max_ack_pending: 1000,
        id_from: IdFrom::Body,
        limit: consume_limit(n),
    };
    let raw_cons = raw::consume(env, &s, n, spec, None, &pb).await?;
    pb.finish_and_clear();
    let raw_rss = match (reset, env::peak_rss()) {
        (Some(base), Some(peak)) => Some(peak.saturating_sub(base)),
        _ => None,
    };
    out.consume_checks(&scenario, raw_label, &raw_cons);
    env.delete_stream(&s).await;

    let one = |v: f64| Stats::of(&[v]);
    let pair = |l: Option<f64>, r: Option<f64>, label: &str| {
        (
            l.and_then(one).map(|s| ("library".to_owned(), s)),
            r.and_then(one)
                .map(|s| (label.to_owned(), s))
                .into_iter()
                .collect::<Vec<_>>(),
        )
    };
    let (l, r) = pair(
        lib_pub.as_ref().map(SideResult::rate),
        Some(raw_pub.rate()),
        &format!("raw js.publish, {window} in flight"),
    );
    out.figures.push(Figure::new(
        scenario.clone(),
        format!("publish (window {window})"),
        "events/s",
        Better::Higher,
        l,
        r,
    ));
    let (l, r) = pair(
        lib_cons.as_ref().map(SideResult::rate),
        Some(raw_cons.rate()),
        raw_label,
    );
    out.figures.push(Figure::new(
        scenario.clone(),
        "consume (1 instance)",
        "events/s",
        Better::Higher,
        l,
        r,
    ));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (l, r) = pair(lib_rss.map(mib), raw_rss.map(mib), raw_label);
    out.figures.push(Figure::new(
        scenario,
        "RSS growth while draining (peak - start)",
        "MiB",
        Better::Lower,
        l,
        r,
    ));
    Ok(())
}
