//! Benchmarks of the `events` library side by side with raw async-nats.
//!
//! Every scenario runs twice in one invocation, once through the library and once through
//! raw async-nats doing the same work with the same ~300-byte CloudEvent, on the same server
//! and identical streams, so that the ratio library / raw holds on a noisy shared machine.
//! Repetitions alternate library and raw; each figure is reported as median, min and max.
//!
//! | scenario | library | raw baseline(s) |
//! | --- | --- | --- |
//! | publish confirmed | `Publisher::publish`, one at a time | `js.publish_with_headers(..).await?.await?` |
//! | publish windowed | `Publisher::publish_async` with `window` in flight | `FuturesUnordered` of ack futures capped at `window`; atomic batches (reference) |
//! | consume | `Subscriber::run` × K instances of one group (decode, handler, double ack) | pull consumer × K with `ack()` and with `double_ack()` |
//! | e2e | paced `publish_async` + `Subscriber` | paced `js.publish` + pull consumer |
//! | load | 100,000 windowed, drained by a subscriber, every id checked | the same with raw |
//!
//! Entry points: [`run`] with a [`BenchConfig`] (or [`BenchArgs`] from a command line) gives
//! a [`BenchReport`] with [`BenchReport::render_table`] and serde JSON. `eventctl bench`,
//! the `cargo bench -p events-bench` target and `examples/bench.rs` all call it.
//!
//! # Layout
//! - `args`: the clap arguments shared by `eventctl bench` and the example.
//! - `env`: server connection, fresh streams, the benchmark event, id tracking.
//! - `raw`: the async-nats baselines.
//! - `library`: the same work through `events`.
//! - `report`, `stats`: figures, ratios, percentiles, table and JSON.

mod args;
mod env;
mod library;
mod raw;
pub mod report;
pub mod stats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::EncodedEvent;
use events_testkit::{NatsServer, SyncMode};

pub use args::{BenchArgs, PublishMode, ScenarioArg, SyncArg, run_and_print};
pub use report::{Baseline, BenchReport, Better, Check, Figure, Header};
pub use stats::{Latency, LatencyRecorder, Stats};

use env::{Env, EventFactory, Tally};
use raw::{AckMode, ConsumeSpec, IdFrom};

/// The server's `sync_interval` for a server the benchmark starts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSetting {
    /// `sync_interval: always`: the shipped, durable config (fsync per write).
    Always,
    /// The server's default (fsync every 2 minutes).
    Default,
}

/// One scenario with its parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Scenario {
    /// One event at a time, each awaited.
    PublishConfirmed {
        /// Events per repetition.
        events: u64,
    },
    /// Many in flight; plus the raw atomic-batch reference line.
    PublishWindowed {
        /// Events per repetition.
        events: u64,
        /// Publishes in flight.
        window: usize,
        /// Atomic batch size of the raw reference (`0`: no reference line).
        batch_size: usize,
        /// Atomic batches in flight of the raw reference.
        batches_in_flight: usize,
    },
    /// A pre-filled stream drained by `instances` instances of one group.
    Consume {
        /// Events in the stream.
        events: u64,
        /// Instances sharing the group.
        instances: usize,
    },
    /// Publishing at a fixed rate while a consumer handles; latency percentiles.
    E2e {
        /// Events per second.
        rate: u64,
        /// How long to publish.
        duration: Duration,
    },
    /// Publish `events`, consume all, verify every id; peak RSS while draining.
    Load {
        /// Events published and consumed.
        events: u64,
        /// Publish window.
        window: usize,
    },
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Scenarios in order.
    pub scenarios: Vec<Scenario>,
    /// An existing server to use instead of starting a test-kit server.
    pub server: Option<String>,
    /// `sync_interval` of the server started by the benchmark (ignored with `server`).
    pub sync: SyncSetting,
    /// Repetitions per side of each scenario (the load scenario runs once per side).
    pub reps: u32,
    /// Handlers in flight per library instance, and acks in flight per raw instance.
    pub max_in_flight: u32,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Which sides to measure.
    pub sides: Sides,
}

impl Default for BenchConfig {
    /// Every scenario at the documented default sizes, under `always`, 3 repetitions.
    fn default() -> Self {
        Self {
            scenarios: vec![
                Scenario::PublishConfirmed { events: 2_000 },
                Scenario::PublishWindowed {
                    events: 20_000,
                    window: 1_000,
                    batch_size: 1_000,
                    batches_in_flight: 4,
                },
                Scenario::Consume {
                    events: 20_000,
                    instances: 1,
                },
                Scenario::E2e {
                    rate: 1_000,
                    duration: Duration::from_secs(10),
                },
                Scenario::E2e {
                    rate: 5_000,
                    duration: Duration::from_secs(10),
                },
                Scenario::Load {
                    events: 100_000,
                    window: 1_000,
                },
            ],
            server: None,
            sync: SyncSetting::Always,
            reps: 3,
            max_in_flight: 32,
            progress: false,
            sides: Sides::Both,
        }
    }
}

/// What one side (library or raw) measured in one repetition.
#[derive(Debug, Clone, Default)]
pub(crate) struct SideResult {
    /// Events sent or expected.
    pub(crate) count: u64,
    /// Failed publishes, acks or undecodable messages.
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) tally: Option<Tally>,
    pub(crate) note: Option<String>,
    /// CPU time (user + system) this process spent during the run: the client's cost.
    pub(crate) cpu: Duration,
}

impl SideResult {
    pub(crate) fn publish(count: u64, errors: u64, elapsed: Duration) -> Self {
        Self {
            count,
            errors,
            elapsed,
            ..Default::default()
        }
    }

    pub(crate) fn consume(tally: Tally, errors: u64, elapsed: Duration) -> Self {
        Self {
            count: tally.expected,
            errors,
            elapsed,
            tally: Some(tally),
            ..Default::default()
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        stats::rate(self.count, self.elapsed)
    }

    /// Client CPU microseconds per event.
    pub(crate) fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64
    }
}

/// Runs `f` and sets the CPU time this process spent meanwhile on its result.
async fn with_cpu<F>(f: F) -> anyhow::Result<Option<SideResult>>
where
    F: Future<Output = anyhow::Result<Option<SideResult>>>,
{
    let c0 = env::process_cpu();
    let r = f.await?;
    let spent = env::process_cpu().saturating_sub(c0);
    Ok(r.map(|mut r| {
        r.cpu = spent;
        r
    }))
}

/// Like [`with_cpu`] for a side that always measures.
async fn with_cpu_raw<F>(f: F) -> anyhow::Result<SideResult>
where
    F: Future<Output = anyhow::Result<SideResult>>,
{
    let c0 = env::process_cpu();
    let mut r = f.await?;
    r.cpu = env::process_cpu().saturating_sub(c0);
    Ok(r)
}

/// Which sides a run measures (for profiling one side alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sides {
    /// Library and raw (the default: the ratios need both).
    #[default]
    Both,
    /// The library only.
    Library,
    /// Raw async-nats only.
    Raw,
}

impl BenchConfig {
    /// Whether the library publisher batches in the e2e and load scenarios: on where the
    /// server fsyncs every write (`always`, where it pays), off under the server default
    /// (where it is slower), as `BatchConfig` advises. The windowed scenario measures both.
    fn library_batch(&self) -> bool {
        self.server.is_none() && self.sync == SyncSetting::Always
    }
}

impl Sides {
    fn library(self) -> bool {
        self != Self::Raw
    }
    fn raw(self) -> bool {
        self != Self::Library
    }
}

/// The client-CPU figure of a scenario: microseconds of this process's CPU per event.
fn cpu_figure(scenario: &str, lib: &[f64], raw: &[f64], raw_label: &str) -> Option<Figure> {
    if lib.is_empty() && raw.is_empty() {
        return None;
    }
    Some(Figure::new(
        scenario,
        "client CPU per event",
        "µs",
        Better::Lower,
        Stats::of(lib).map(|s| ("library".to_owned(), s)),
        Stats::of(raw)
            .map(|s| (raw_label.to_owned(), s))
            .into_iter()
            .collect(),
    ))
}

/// Runs every scenario of `cfg` and returns the figures.
///
/// # Errors
/// If the server cannot be reached or a scenario cannot set up its streams; a harness
/// check that fails (missing ids, errors) does not error: it is in [`BenchReport::checks`].
pub async fn run(cfg: BenchConfig) -> anyhow::Result<BenchReport> {
    let started = Instant::now();
    let load_at_start = env::load_avg();
    let (server, url, sync) = match &cfg.server {
        Some(url) => (None, url.clone(), "external".to_owned()),
        None => {
            let mode = match cfg.sync {
                SyncSetting::Always => SyncMode::Always,
                SyncSetting::Default => SyncMode::Default,
            };
            let s = NatsServer::builder().sync(mode).start().await;
            let url = s.url();
            let label = match cfg.sync {
                SyncSetting::Always => "always",
                SyncSetting::Default => "default",
            };
            (Some(s), url, label.to_owned())
        }
    };
    let client = tokio::time::timeout(Duration::from_secs(15), async_nats::connect(&url))
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
        .with_context(|| format!("connecting to {url}"))?;
    let env = Env::new(client, cfg.progress);
    let mut out = Out::default();
    for sc in &cfg.scenarios {
        match sc {
            Scenario::PublishConfirmed { events } => {
                publish_confirmed(&env, &cfg, *events, &mut out).await?;
            }
            Scenario::PublishWindowed {
                events,
                window,
                batch_size,
                batches_in_flight,
            } => {
                publish_windowed(
                    &env,
                    &cfg,
                    *events,
                    *window,
                    *batch_size,
                    *batches_in_flight,
                    &mut out,
                )
                .await?;
            }
            Scenario::Consume { events, instances } => {
                consume(&env, &cfg, *events, *instances, &mut out).await?;
            }
            Scenario::E2e { rate, duration } => {
                e2e(&env, &cfg, *rate, *duration, &mut out).await?;
            }
            Scenario::Load { events, window } => {
                load(&env, &cfg, *events, *window, &mut out).await?;
            }
        }
    }
    let header = Header {
        server: url,
        own_server: server.is_some(),
        sync,
        server_version: env.client.server_info().version,
        reps: cfg.reps,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: env::cpu_model(),
        load_at_start,
        load_at_end: env::load_avg(),
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    drop(env);
    drop(server);
    Ok(BenchReport {
        header,
        figures: out.figures,
        checks: out.checks,
    })
}

/// Figures and checks collected so far.
#[derive(Default)]
struct Out {
    figures: Vec<Figure>,
    checks: Vec<Check>,
}

impl Out {
    /// Adds a check, keeping per (scenario, side, name) the failing or the largest value.
    fn check(
        &mut self,
        scenario: &str,
        side: &str,
        name: &str,
        expected: Option<u64>,
        actual: u64,
    ) {
        let new = Check {
            scenario: scenario.to_owned(),
            side: side.to_owned(),
            name: name.to_owned(),
            expected,
            actual,
        };
        if let Some(c) = self
            .checks
            .iter_mut()
            .find(|c| c.scenario == scenario && c.side == side && c.name == name)
        {
            let replace = if c.ok() {
                !new.ok() || (expected.is_none() && actual > c.actual)
            } else {
                false
            };
            if replace {
                *c = new;
            }
        } else {
            self.checks.push(new);
        }
    }

    /// Checks of a publish run: no errors, and the stream holds exactly what was sent.
    fn publish_checks(&mut self, scenario: &str, side: &str, r: &SideResult, stored: u64) {
        self.check(scenario, side, "errors", Some(0), r.errors);
        self.check(scenario, side, "stored", Some(r.count), stored);
    }

    /// Checks of a consume run: every id once, no errors.
    fn consume_checks(&mut self, scenario: &str, side: &str, r: &SideResult) {
        self.check(scenario, side, "errors", Some(0), r.errors);
        if let Some(t) = r.tally {
            self.check(scenario, side, "delivered", Some(t.expected), t.unique);
            self.check(scenario, side, "missing", Some(0), t.missing);
            self.check(scenario, side, "unexpected", Some(0), t.unexpected);
            // Redeliveries are legal (at least once) but none should happen in a clean run.
            self.check(scenario, side, "duplicates", None, t.duplicates);
        }
    }
}

fn pb_msg(scenario: &str, side: &str, rep: u32, reps: u32) -> String {
    format!("{scenario} · {side} · rep {}/{reps}", rep + 1)
}

const LIB: &str = "library";
const LIB_BATCH: &str = "library, batching on";

async fn publish_confirmed(
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

fn encode_all(evs: &[events::Event]) -> Vec<EncodedEvent> {
    evs.iter().map(events::Event::encode).collect()
}

async fn publish_windowed(
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

/// How long a consume run may take before it is reported incomplete.
fn consume_limit(n: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(n.saturating_mul(2))
}

async fn consume(
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

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

async fn e2e(
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

fn lock_summary(rec: &Mutex<LatencyRecorder>) -> Latency {
    match rec.lock() {
        Ok(r) => r.summary(),
        Err(p) => p.into_inner().summary(),
    }
}

async fn load(
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
