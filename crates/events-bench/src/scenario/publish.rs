//! Confirmed and windowed publishing. Raw publishes carry the library's two headers
//! (`Content-Type`, a unique `Nats-Msg-Id`) with the client's defaults.

use events::EncodedEvent;
use events::publisher::PublisherConfig;

use crate::env::{Env, EventFactory};
use crate::measure::{
    LIB, Out, Series, SideResult, cpu_figure, pb_msg, throughput, with_cpu, with_cpu_raw,
};
use crate::raw;
use crate::{BenchConfig, goals, library};

pub(crate) async fn publish_confirmed(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = "publish confirmed";
    let mut lib = Series::new("library Publisher::publish");
    let mut raw = Series::new("raw js.publish().await?.await? (client defaults)");
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = env.fresh_stream().await?;
            let evs = EventFactory::new(&s.event_type)?.events(n)?;
            let pb = env.bar(n, pb_msg(scenario, LIB, rep, cfg.reps));
            if let Some(r) = with_cpu(library::confirmed(&env.client, &evs, &pb)).await? {
                out.publish_checks(scenario, LIB, &r, env.stored(&s).await?);
                lib.push(&r);
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;
        }
        if cfg.sides.raw() {
            let s = env.fresh_stream().await?;
            let wires = encode_all(&EventFactory::new(&s.event_type)?.events(n)?);
            let pb = env.bar(n, pb_msg(scenario, "raw", rep, cfg.reps));
            let r = with_cpu_raw(raw::confirmed(env, &wires, &pb)).await?;
            pb.finish_and_clear();
            out.publish_checks(scenario, &raw.label, &r, env.stored(&s).await?);
            raw.push(&r);
            env.delete_stream(&s).await;
        }
    }
    let fig = throughput(scenario, &lib, &[&raw]);
    out.figures
        .push(goals::confirmed(fig, cfg.known_sync(), &raw.label));
    out.figures.extend(cpu_figure(scenario, &lib, &[&raw]));
    Ok(())
}

pub(crate) fn encode_all(evs: &[events::Event]) -> Vec<EncodedEvent> {
    evs.iter().map(events::Event::encode).collect()
}

/// The sizes of the windowed scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windowed {
    pub(crate) events: u64,
    pub(crate) window: usize,
    pub(crate) batch_size: usize,
    pub(crate) batches_in_flight: usize,
}

/// The four lines of the windowed scenario.
struct Lines {
    lib: Series,
    lib_batched: Series,
    raw: Series,
    atomic: Series,
    atomic_error: Option<String>,
}

impl Lines {
    fn new(w: Windowed) -> Self {
        let default_window = PublisherConfig::default().window;
        Self {
            lib: Series::new(format!(
                "library publish_async, per message, window {}",
                w.window
            )),
            lib_batched: Series::new(format!(
                "library publish_async, defaults (batching, window {default_window})"
            )),
            raw: Series::new(format!(
                "raw js.publish, {} acks in flight (client defaults)",
                w.window
            )),
            atomic: Series::new(format!(
                "raw atomic batches of {}, {} in flight",
                w.batch_size, w.batches_in_flight
            )),
            atomic_error: None,
        }
    }
}

/// One library repetition: `cfg` publishing `n` events to a fresh stream.
async fn library_rep(
    env: &Env,
    n: u64,
    cfg: PublisherConfig,
    label: &str,
    scenario: &str,
    out: &mut Out,
) -> anyhow::Result<Option<SideResult>> {
    let s = env.fresh_stream().await?;
    let evs = EventFactory::new(&s.event_type)?.events(n)?;
    let pb = env.bar(n, format!("{scenario} · {label}"));
    let r = with_cpu(library::windowed(&env.client, &evs, cfg, &pb)).await?;
    pb.finish_and_clear();
    if let Some(r) = &r {
        out.publish_checks(scenario, label, r, env.stored(&s).await?);
    }
    env.delete_stream(&s).await;
    Ok(r)
}

/// One raw repetition: per-message windowed, then the atomic batches.
async fn raw_rep(
    env: &Env,
    w: Windowed,
    lines: &mut Lines,
    scenario: &str,
    out: &mut Out,
) -> anyhow::Result<()> {
    let s = env.fresh_stream().await?;
    let wires = encode_all(&EventFactory::new(&s.event_type)?.events(w.events)?);
    let pb = env.bar(w.events, format!("{scenario} · {}", lines.raw.label));
    let r = with_cpu_raw(raw::windowed(env, &wires, w.window, &pb)).await?;
    pb.finish_and_clear();
    out.publish_checks(scenario, &lines.raw.label, &r, env.stored(&s).await?);
    lines.raw.push(&r);
    env.delete_stream(&s).await;
    drop(wires);
    if w.batch_size == 0 {
        return Ok(());
    }
    let s = env.fresh_stream().await?;
    let wires = encode_all(&EventFactory::new(&s.event_type)?.events(w.events)?);
    let pb = env.bar(w.events, format!("{scenario} · {}", lines.atomic.label));
    let run = raw::atomic_batches(env, &wires, w.batch_size, w.batches_in_flight, &pb);
    match with_cpu_raw(run).await {
        Ok(r) => {
            out.publish_checks(scenario, &lines.atomic.label, &r, env.stored(&s).await?);
            lines.atomic.push(&r);
        }
        Err(e) => lines.atomic_error = Some(format!("{e:#}")),
    }
    pb.finish_and_clear();
    env.delete_stream(&s).await;
    Ok(())
}

pub(crate) async fn publish_windowed(
    env: &Env,
    cfg: &BenchConfig,
    w: Windowed,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("publish windowed (window {})", w.window);
    let mut lines = Lines::new(w);
    for _ in 0..cfg.reps {
        if cfg.sides.library() {
            let per_message = library::publisher_config(Some(w.window), false);
            let r = library_rep(env, w.events, per_message, &lines.lib.label, &scenario, out);
            if let Some(r) = r.await? {
                lines.lib.push(&r);
            }
            let defaults = library::publisher_config(None, true);
            let label = lines.lib_batched.label.clone();
            if let Some(r) = library_rep(env, w.events, defaults, &label, &scenario, out).await? {
                lines.lib_batched.push(&r);
            }
        }
        if cfg.sides.raw() {
            raw_rep(env, w, &mut lines, &scenario, out).await?;
        }
    }
    if let Some(note) = &lines.atomic_error {
        // Reported, not fatal: an older server or a stream without allow_atomic.
        let name = format!("failed: {note}");
        out.check(&scenario, &lines.atomic.label, &name, Some(0), 1);
    }
    windowed_figures(&scenario, cfg, &lines, out);
    Ok(())
}

fn windowed_figures(scenario: &str, cfg: &BenchConfig, l: &Lines, out: &mut Out) {
    let sync = cfg.known_sync();
    let raws = [&l.raw, &l.atomic];
    let fig = throughput(scenario, &l.lib, &raws);
    out.figures
        .push(goals::windowed_per_message(fig, sync, &l.raw.label));
    out.figures.extend(cpu_figure(scenario, &l.lib, &raws));
    // The library's defaults group events into atomic batches: held to the raw atomic
    // batches and, under `always`, to ten times raw per-message publishing.
    let batched = format!("{scenario}, library batching");
    let raws = [&l.atomic, &l.raw];
    let fig = throughput(&batched, &l.lib_batched, &raws);
    out.figures.push(goals::windowed_batched(
        fig,
        sync,
        &l.raw.label,
        &l.atomic.label,
    ));
    out.figures
        .extend(cpu_figure(&batched, &l.lib_batched, &raws));
}
