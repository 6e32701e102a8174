//! Benchmarks of the `events` library side by side with raw async-nats.
//!
//! Every scenario runs twice in one invocation, once through the library and once through
//! raw async-nats doing the same work with the same ~300-byte CloudEvent, on the same server
//! and identical streams, so that the ratio library / raw holds on a noisy shared machine.
//! Repetitions alternate library and raw; each figure is reported as median, min and max.
//!
//! Raw baselines are what a user who skips the library writes, with the client's defaults
//! (the first baseline of each figure, the one its goal is read against); extra baselines
//! with the library's own sizes are labelled "(library's sizes)".
//!
//! | scenario | library | raw baseline(s) | goal (issue 12) |
//! | --- | --- | --- | --- |
//! | publish confirmed | `Publisher::publish`, one at a time | `js.publish_with_headers(..).await?.await?` | ≥ 0.95× (default sync) |
//! | publish windowed | `publish_async`, per message, `window` in flight; and with the publisher's defaults (batching, its window) | `publish_with_headers` + ack futures capped at `window` (the library's two headers); atomic batches | per message ≥ 0.9× raw (default sync); batched ≥ 0.9× atomic and ≥ 10× per message (`always`) |
//! | consume | `Subscriber::run` × K, defaults (decode, handler, ack) | `consumer.messages()` + `ack()`; pull batches of the library's size with `ack()` and with `double_ack()` | ≥ 0.9× `messages()` |
//! | e2e | paced `publish_async` + `Subscriber` | paced `publish_with_headers` + `messages()`/`ack()` | p99 ≤ 1.5× raw and < 10 ms at 5,000/s (default); p99 ≤ 1.5× raw at 1,000/s (`always`) |
//! | load | 100,000 windowed, drained by a subscriber, every id checked | the same with raw | - |
//! | drain | one `Subscriber` draining N pre-filled events: peak RSS | `messages()` + `ack()` | < 64 MiB for 200,000 |
//! | restart | `publish_async` at a steady pace + `Subscriber`, the server restarted once: longest pauses | `publish_with_headers` + ack futures, `messages()` + `ack()` | figures (lower is better) |
//!
//! Entry points: [`run`] with a [`BenchConfig`] (or [`BenchArgs`] from a command line) gives
//! a [`BenchReport`] with [`BenchReport::render_table`] and serde JSON. `eventctl bench`,
//! the `cargo bench -p events-bench` target and `examples/bench.rs` all call it.
//!
//! # Layout
//! - `args`: the clap arguments shared by `eventctl bench` and the example.
//! - `env`: server connection, fresh streams, the benchmark event, id tracking.
//! - `raw`: the async-nats baselines (publish, atomic batches, consumers).
//! - `library`: the same work through `events` (publish, consume).
//! - `goals`: which figure is held to which goal of issue 12, under which sync.
//! - `measure`: one side's result with its client CPU; the figures and checks of a run.
//! - `scenario`: one module per scenario (publish, consume, e2e, load, drain, restart),
//!   each alternating library and raw.
//! - `report`, `stats`: figures, ratios, percentiles, table and JSON.

mod args;
mod env;
mod goals;
mod library;
mod measure;
mod raw;
pub mod report;
mod scenario;
pub mod stats;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::subscriber::SubscriberConfig;
use events_testkit::{NatsServer, SyncMode};

pub use args::{BenchArgs, PublishMode, ScenarioArg, SyncArg, run_and_print};
pub use report::{Baseline, BenchReport, Better, Bound, Check, Figure, Goal, Header};
pub use stats::{GapMeter, Latency, LatencyRecorder, Stats};

use env::Env;
use measure::Out;
pub(crate) use measure::SideResult;
use scenario::{Windowed, consume, drain, e2e, load, publish_confirmed, publish_windowed, restart};

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
    /// Publish `events`, consume all, verify every id.
    Load {
        /// Events published and consumed.
        events: u64,
        /// Publish window.
        window: usize,
    },
    /// A pre-filled stream drained by one consumer: its peak resident memory.
    Drain {
        /// Events in the stream.
        events: u64,
    },
    /// A steady publisher and a consumer while the server restarts once: the longest
    /// pauses. Skipped (with a note) on an external server.
    Restart {
        /// Events per second.
        rate: u64,
        /// How long to publish; the restart comes a third of the way in.
        duration: Duration,
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
    /// Handlers in flight per library instance (and the in-flight count of the raw
    /// "library's sizes" baselines); `None`: the library's default.
    pub max_in_flight: Option<u32>,
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
                Scenario::Drain { events: 200_000 },
                Scenario::Restart {
                    rate: 2_000,
                    duration: Duration::from_secs(9),
                },
            ],
            server: None,
            sync: SyncSetting::Always,
            reps: 3,
            max_in_flight: None,
            progress: false,
            sides: Sides::Both,
        }
    }
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
    pub(crate) fn library_batch(&self) -> bool {
        self.known_sync() == Some(SyncSetting::Always)
    }

    /// The server's `sync_interval` when the bench started the server (else unknown).
    pub(crate) fn known_sync(&self) -> Option<SyncSetting> {
        self.server.is_none().then_some(self.sync)
    }

    /// The library subscriber's configuration: its defaults, with `max_in_flight` when the
    /// run sets it.
    pub(crate) fn subscriber_config(&self) -> SubscriberConfig {
        let mut c = SubscriberConfig::default();
        if let Some(m) = self.max_in_flight {
            c.max_in_flight = m.max(1);
        }
        c
    }
}

impl Sides {
    pub(crate) fn library(self) -> bool {
        self != Self::Raw
    }
    pub(crate) fn raw(self) -> bool {
        self != Self::Library
    }
    /// Whether the library side (`true`) or the raw side (`false`) is measured.
    pub(crate) fn wants(self, library_side: bool) -> bool {
        if library_side {
            self.library()
        } else {
            self.raw()
        }
    }
}

/// Runs every scenario of `cfg` and returns the figures.
///
/// # Errors
/// If the server cannot be reached or a scenario cannot set up its streams; a harness
/// check that fails (missing ids, errors) does not error: it is in [`BenchReport::checks`].
pub async fn run(cfg: BenchConfig) -> anyhow::Result<BenchReport> {
    let started = Instant::now();
    let load_at_start = env::load_avg();
    let (mut server, url, sync) = match &cfg.server {
        Some(url) => (None, url.clone(), "external".to_owned()),
        None => {
            let (mode, label) = match cfg.sync {
                SyncSetting::Always => (SyncMode::Always, "always"),
                SyncSetting::Default => (SyncMode::Default, "default"),
            };
            let s = NatsServer::builder().sync(mode).start().await;
            let url = s.url();
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
        run_scenario(&env, &cfg, sc, server.as_mut(), &mut out).await?;
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
        notes: out.notes,
    })
}

async fn run_scenario(
    env: &Env,
    cfg: &BenchConfig,
    sc: &Scenario,
    server: Option<&mut NatsServer>,
    out: &mut Out,
) -> anyhow::Result<()> {
    match sc {
        Scenario::PublishConfirmed { events } => publish_confirmed(env, cfg, *events, out).await,
        Scenario::PublishWindowed {
            events,
            window,
            batch_size,
            batches_in_flight,
        } => {
            let w = Windowed {
                events: *events,
                window: *window,
                batch_size: *batch_size,
                batches_in_flight: *batches_in_flight,
            };
            publish_windowed(env, cfg, w, out).await
        }
        Scenario::Consume { events, instances } => {
            consume(env, cfg, *events, *instances, out).await
        }
        Scenario::E2e { rate, duration } => e2e(env, cfg, *rate, *duration, out).await,
        Scenario::Load { events, window } => load(env, cfg, *events, *window, out).await,
        Scenario::Drain { events } => drain(env, cfg, *events, out).await,
        Scenario::Restart { rate, duration } => {
            restart(env, cfg, server, *rate, *duration, out).await
        }
    }
}
