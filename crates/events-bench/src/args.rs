//! Command-line arguments shared by `eventctl bench` and `examples/bench.rs`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{BenchConfig, Scenario, Sides, SyncSetting};

/// A scenario name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    /// Publish (see `--mode`).
    Publish,
    /// Drain a pre-filled stream with `--instances` instances.
    Consume,
    /// Latency at `--rate` for `--duration`.
    E2e,
    /// Publish `--events`, consume all, verify every id.
    Load,
    /// Drain `--drain-events` with one consumer: its peak resident memory.
    Drain,
    /// Publish at `--restart-rate` while a consumer drains; the server restarts once.
    Restart,
    /// Every scenario.
    All,
}

/// Which publish scenarios `publish` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishMode {
    /// One event at a time, each awaited.
    Confirmed,
    /// `--window` events in flight.
    Windowed,
    /// Both.
    Both,
}

/// `sync_interval` of the server the benchmark starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync every write (the shipped config).
    Always,
    /// The server's default (fsync every 2 minutes).
    Default,
}

/// Benchmarks the library against raw async-nats on the same server, side by side.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order.
    #[arg(value_enum, default_values_t = [ScenarioArg::All])]
    pub scenarios: Vec<ScenarioArg>,
    /// Publish scenarios to run.
    #[arg(long, value_enum, default_value_t = PublishMode::Both)]
    pub mode: PublishMode,
    /// Publishes in flight (windowed publish and the load test).
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
    /// Events per repetition of confirmed publish.
    #[arg(long, default_value_t = 2000)]
    pub confirmed_events: u64,
    /// Events per repetition of windowed publish.
    #[arg(long, default_value_t = 20_000)]
    pub windowed_events: u64,
    /// Atomic batch size of the raw reference line (0 = skip it).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Atomic batches in flight of the raw reference line.
    #[arg(long, default_value_t = 4)]
    pub batches_in_flight: usize,
    /// Instances of the consumer group, comma-separated for several runs (`1,2`).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub instances: Vec<usize>,
    /// Events in the pre-filled stream of the consume scenario.
    #[arg(long, default_value_t = 20_000)]
    pub consume_events: u64,
    /// Handlers in flight per library instance (and the raw "library's sizes" lines);
    /// default: the library's default.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Publish rates of the e2e scenario, events/s, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub rate: Vec<u64>,
    /// How long the e2e scenario publishes (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Events of the load scenario.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events the drain scenario's consumer drains.
    #[arg(long, default_value_t = 200_000)]
    pub drain_events: u64,
    /// Publish rate of the restart scenario, events/s.
    #[arg(long, default_value_t = 2_000)]
    pub restart_rate: u64,
    /// How long the restart scenario publishes (the restart comes a third of the way in).
    #[arg(long, default_value = "9s", value_parser = humantime::parse_duration)]
    pub restart_duration: Duration,
    /// Use this server instead of starting a test-kit server. Not parsed here: `eventctl`
    /// fills it from its global `--server` when that is given explicitly, the example
    /// binary from its own `--server`.
    #[arg(skip)]
    pub server: Option<String>,
    /// `sync_interval` of the server the benchmark starts.
    #[arg(long, value_enum, default_value_t = SyncArg::Always)]
    pub sync: SyncArg,
    /// Repetitions per side (the load scenario runs once per side).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Measure only one side (to profile it); the ratios need both.
    #[arg(long, value_enum, default_value_t = Sides::Both)]
    pub side: Sides,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The configuration these arguments describe.
    pub fn to_config(&self) -> BenchConfig {
        let all = self.scenarios.contains(&ScenarioArg::All);
        let wants = |s: ScenarioArg| all || self.scenarios.contains(&s);
        let mut scenarios = Vec::new();
        if wants(ScenarioArg::Publish) {
            if matches!(self.mode, PublishMode::Confirmed | PublishMode::Both) {
                scenarios.push(Scenario::PublishConfirmed {
                    events: self.confirmed_events,
                });
            }
            if matches!(self.mode, PublishMode::Windowed | PublishMode::Both) {
                scenarios.push(Scenario::PublishWindowed {
                    events: self.windowed_events,
                    window: self.window,
                    batch_size: self.batch_size,
                    batches_in_flight: self.batches_in_flight,
                });
            }
        }
        if wants(ScenarioArg::Consume) {
            for &instances in &self.instances {
                scenarios.push(Scenario::Consume {
                    events: self.consume_events,
                    instances,
                });
            }
        }
        if wants(ScenarioArg::E2e) {
            for &rate in &self.rate {
                scenarios.push(Scenario::E2e {
                    rate,
                    duration: self.duration,
                });
            }
        }
        if wants(ScenarioArg::Load) {
            scenarios.push(Scenario::Load {
                events: self.events,
                window: self.window,
            });
        }
        if wants(ScenarioArg::Drain) {
            scenarios.push(Scenario::Drain {
                events: self.drain_events,
            });
        }
        if wants(ScenarioArg::Restart) {
            scenarios.push(Scenario::Restart {
                rate: self.restart_rate,
                duration: self.restart_duration,
            });
        }
        BenchConfig {
            scenarios,
            server: self.server.clone(),
            sync: match self.sync {
                SyncArg::Always => SyncSetting::Always,
                SyncArg::Default => SyncSetting::Default,
            },
            reps: self.reps.max(1),
            max_in_flight: self.max_in_flight,
            progress: crate::env::progress_wanted(self.json),
            sides: self.side,
        }
    }
}

/// Runs the benchmark described by `args` and prints the report to stdout (the table, or
/// JSON with `--json`). What `eventctl bench` and the example binary do.
///
/// # Errors
/// As [`crate::run`], and if a harness check failed (missing ids, errors), after printing.
pub async fn run_and_print(args: &BenchArgs) -> anyhow::Result<crate::BenchReport> {
    // On ctrl-c the run is dropped, and with it the server it started (killed on drop).
    let report = tokio::select! {
        r = crate::run(args.to_config()) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render_table());
    }
    if !report.all_checks_ok() {
        anyhow::bail!("some harness checks failed (see the report)");
    }
    Ok(report)
}
