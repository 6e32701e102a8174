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
//! - `measure`: one side's result with its client CPU; the figures and checks of a run.
//! - `scenario`: one module per scenario (publish, consume, e2e, load), each alternating
//!   library and raw.
//! - `report`, `stats`: figures, ratios, percentiles, table and JSON.

mod args;
mod env;
mod library;
mod measure;
mod raw;
pub mod report;
mod scenario;
pub mod stats;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use events_testkit::{NatsServer, SyncMode};

pub use args::{BenchArgs, PublishMode, ScenarioArg, SyncArg, run_and_print};
pub use report::{Baseline, BenchReport, Better, Check, Figure, Header};
pub use stats::{Latency, LatencyRecorder, Stats};

use env::Env;
use measure::Out;
pub(crate) use measure::SideResult;
use scenario::{consume, e2e, load, publish_confirmed, publish_windowed};

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
        self.server.is_none() && self.sync == SyncSetting::Always
    }
}

impl Sides {
    pub(crate) fn library(self) -> bool {
        self != Self::Raw
    }
    pub(crate) fn raw(self) -> bool {
        self != Self::Library
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
