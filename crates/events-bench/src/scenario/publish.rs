//! Confirmed and windowed publishing.

use events::EncodedEvent;

use crate::env::{Env, EventFactory};
use crate::measure::{LIB, LIB_BATCH, Out, cpu_figure, pb_msg, with_cpu, with_cpu_raw};
use crate::raw::{self};
use crate::report::{Better, Figure};
use crate::stats::Stats;
use crate::{BenchConfig, library};

pub(crate) async fn publish_confirmed(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = "publish confirmed";
    let raw_label = "raw js.publish().await?.await?";
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    let (mut lib_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = env.fresh_stream().await?;
            let evs = EventFactory::new(&s.event_type)?.events(n)?;
            let pb = env.bar(n, pb_msg(scenario, LIB, rep, cfg.reps));
            if let Some(r) = with_cpu(library::confirmed(env, &evs, &pb)).await? {
                out.publish_checks(scenario, LIB, &r, env.stored(&s).await?);
                lib.push(r.rate());
                lib_cpu.push(r.cpu_us());
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
            out.publish_checks(scenario, raw_label, &r, env.stored(&s).await?);
            raw.push(r.rate());
            raw_cpu.push(r.cpu_us());
            env.delete_stream(&s).await;
        }
    }
    out.figures.push(Figure::new(
        scenario,
        "throughput",
        "events/s",
        Better::Higher,
        Stats::of(&lib).map(|s| ("library Publisher::publish".to_owned(), s)),
        Stats::of(&raw)
            .map(|s| (raw_label.to_owned(), s))
            .into_iter()
            .collect(),
    ));
    out.figures
        .extend(cpu_figure(scenario, &lib_cpu, &raw_cpu, raw_label));
    Ok(())
}

pub(crate) fn encode_all(evs: &[events::Event]) -> Vec<EncodedEvent> {
    evs.iter().map(events::Event::encode).collect()
}

pub(crate) async fn publish_windowed(
    env: &Env,
    cfg: &BenchConfig,
    n: u64,
    window: usize,
    batch_size: usize,
    batches_in_flight: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scenario = format!("publish windowed (window {window})");
    let raw_label = format!("raw js.publish, {window} acks in flight");
    let batch_label = format!("raw atomic batches of {batch_size}, {batches_in_flight} in flight");
    let (mut lib, mut raw, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    let mut batch_note = None;
    let (mut lib_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
    let (mut lib_batch, mut lib_batch_cpu) = (Vec::new(), Vec::new());
    for rep in 0..cfg.reps {
        if cfg.sides.library() {
            let s = env.fresh_stream().await?;
            let evs = EventFactory::new(&s.event_type)?.events(n)?;
            let pb = env.bar(n, pb_msg(&scenario, LIB, rep, cfg.reps));
            if let Some(r) = with_cpu(library::windowed(env, &evs, window, false, &pb)).await? {
                out.publish_checks(&scenario, LIB, &r, env.stored(&s).await?);
                lib.push(r.rate());
                lib_cpu.push(r.cpu_us());
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;

            let s = env.fresh_stream().await?;
            let evs = EventFactory::new(&s.event_type)?.events(n)?;
            let pb = env.bar(n, pb_msg(&scenario, "library, batching on", rep, cfg.reps));
            if let Some(r) = with_cpu(library::windowed(env, &evs, window, true, &pb)).await? {
                out.publish_checks(&scenario, LIB_BATCH, &r, env.stored(&s).await?);
                lib_batch.push(r.rate());
                lib_batch_cpu.push(r.cpu_us());
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;
        }
        if cfg.sides.raw() {
            let s = env.fresh_stream().await?;
            let wires = encode_all(&EventFactory::new(&s.event_type)?.events(n)?);
            let pb = env.bar(n, pb_msg(&scenario, "raw", rep, cfg.reps));
            let r = with_cpu_raw(raw::windowed(env, &wires, window, &pb)).await?;
            pb.finish_and_clear();
            out.publish_checks(&scenario, &raw_label, &r, env.stored(&s).await?);
            raw.push(r.rate());
            raw_cpu.push(r.cpu_us());
            env.delete_stream(&s).await;
        }
        if batch_size > 0 && cfg.sides.raw() {
            let s = env.fresh_stream().await?;
            let wires = encode_all(&EventFactory::new(&s.event_type)?.events(n)?);
            let pb = env.bar(n, pb_msg(&scenario, "raw atomic batch", rep, cfg.reps));
            match raw::atomic_batches(env, &wires, batch_size, batches_in_flight, &pb).await {
                Ok(r) => {
                    out.publish_checks(&scenario, &batch_label, &r, env.stored(&s).await?);
                    batch.push(r.rate());
                }
                Err(e) => batch_note = Some(format!("{e:#}")),
            }
            pb.finish_and_clear();
            env.delete_stream(&s).await;
        }
    }
    if let Some(note) = batch_note {
        // Reported, not fatal: an older server or a stream without allow_atomic.
        out.check(
            &scenario,
            &batch_label,
            &format!("failed: {note}"),
            Some(0),
            1,
        );
    }
    let mut baselines: Vec<(String, Stats)> = Vec::new();
    if let Some(s) = Stats::of(&raw) {
        baselines.push((raw_label.clone(), s));
    }
    if let Some(s) = Stats::of(&batch) {
        baselines.push((batch_label.clone(), s));
    }
    out.figures.push(Figure::new(
        scenario.clone(),
        "throughput",
        "events/s",
        Better::Higher,
        Stats::of(&lib).map(|s| ("library Publisher::publish_async".to_owned(), s)),
        baselines,
    ));
    out.figures
        .extend(cpu_figure(&scenario, &lib_cpu, &raw_cpu, &raw_label));
    // The same, with the publisher grouping events into atomic batches (opt-in), compared
    // with the same raw lines: the goal under `always` is >= 10x raw per-message.
    let batched = format!("{scenario}, library batching on");
    let mut baselines: Vec<(String, Stats)> = Vec::new();
    if let Some(s) = Stats::of(&raw) {
        baselines.push((raw_label.clone(), s));
    }
    if let Some(s) = Stats::of(&batch) {
        baselines.push((batch_label.clone(), s));
    }
    out.figures.push(Figure::new(
        batched.clone(),
        "throughput",
        "events/s",
        Better::Higher,
        Stats::of(&lib_batch).map(|s| {
            (
                "library publish_async, BatchConfig { enabled: true, .. }".to_owned(),
                s,
            )
        }),
        baselines,
    ));
    out.figures
        .extend(cpu_figure(&batched, &lib_batch_cpu, &raw_cpu, &raw_label));
    Ok(())
}
