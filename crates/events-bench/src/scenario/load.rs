//! The load test: a large windowed publish drained by one consumer, every id checked.

use super::consume::consume_limit;
use super::publish::encode_all;
use crate::env::{Env, EventFactory, Observer};
use crate::measure::{LIB, Out, SideResult};
use crate::raw::{self, ConsumeSpec, IdFrom};
use crate::report::{Better, Figure};
use crate::stats::Stats;
use crate::{BenchConfig, library};

/// The library side: publish, then drain; `None` where the library gave no result.
async fn library_side(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    window: usize,
    scenario: &str,
    out: &mut Out,
) -> anyhow::Result<(Option<SideResult>, Option<SideResult>)> {
    let s = env.fresh_stream().await?;
    let evs = EventFactory::new(&s.event_type)?.events(n)?;
    let pb = env.bar(n, format!("{scenario} · library publish"));
    let publisher = library::publisher_config(Some(window), cfg.library_batch());
    let published = library::windowed(&env.client, &evs, publisher, &pb).await?;
    pb.finish_and_clear();
    drop(evs);
    let mut consumed = None;
    if let Some(r) = &published {
        out.publish_checks(scenario, LIB, r, env.stored(&s).await?);
        let pb = env.bar(n, format!("{scenario} · library consume"));
        let spec = library::ConsumeSpec {
            instances: 1,
            config: cfg.subscriber_config(),
            limit: consume_limit(n),
            id_from_body: true,
        };
        consumed = library::consume(&env.js, &s, n, &spec, &Observer::progress(&pb)).await?;
        pb.finish_and_clear();
        if let Some(c) = &consumed {
            out.consume_checks(scenario, LIB, c);
        }
    }
    env.delete_stream(&s).await;
    Ok((published, consumed))
}

/// The raw side: publish with the client's defaults, then drain with its default consumer.
async fn raw_side(
    env: &Env,
    n: u64,
    window: usize,
    scenario: &str,
    label: &str,
    out: &mut Out,
) -> anyhow::Result<(SideResult, SideResult)> {
    let s = env.fresh_stream().await?;
    let wires = encode_all(&EventFactory::new(&s.event_type)?.events(n)?);
    let pb = env.bar(n, format!("{scenario} · raw publish"));
    let published = raw::windowed(env, &wires, window, &pb).await?;
    pb.finish_and_clear();
    drop(wires);
    out.publish_checks(scenario, label, &published, env.stored(&s).await?);
    let pb = env.bar(n, format!("{scenario} · raw consume"));
    let spec = ConsumeSpec::client_defaults(IdFrom::Body, consume_limit(n));
    let consumed = raw::consume(&env.js, &s, n, spec, &Observer::progress(&pb)).await?;
    pb.finish_and_clear();
    out.consume_checks(scenario, label, &consumed);
    env.delete_stream(&s).await;
    Ok((published, consumed))
}

pub(crate) async fn load(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    window: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("load ({n} events)");
    let raw_label = "raw js.publish + messages()/ack (client defaults)";
    let (lib_pub, lib_cons) = if cfg.sides.library() {
        library_side(env, cfg, n, window, &scenario, out).await?
    } else {
        (None, None)
    };
    if !cfg.sides.raw() {
        return Ok(());
    }
    let (raw_pub, raw_cons) = raw_side(env, n, window, &scenario, raw_label, out).await?;
    let one = |metric: String, l: Option<&SideResult>, r: &SideResult, label: &str| {
        Figure::new(
            scenario.clone(),
            metric,
            "events/s",
            Better::Higher,
            l.and_then(|l| Stats::of(&[l.rate()]))
                .map(|s| ("library".to_owned(), s)),
            Stats::of(&[r.rate()])
                .map(|s| (label.to_owned(), s))
                .into_iter()
                .collect(),
        )
    };
    out.figures.push(one(
        format!("publish (window {window})"),
        lib_pub.as_ref(),
        &raw_pub,
        &format!("raw js.publish, {window} in flight (client defaults)"),
    ));
    out.figures.push(one(
        "consume (1 instance)".to_owned(),
        lib_cons.as_ref(),
        &raw_cons,
        raw_label,
    ));
    Ok(())
}
