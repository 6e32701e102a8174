//! What one side measured, with its client CPU, and the figures and checks a run collects.

use std::time::Duration;

use crate::env::{self, Tally};
use crate::report::{Better, Check, Figure};
use crate::stats::{self, Stats};

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

    /// A consume run's result from its tracker: every id in (`complete`) or not by `limit`.
    pub(crate) fn drained(
        tally: Tally,
        errors: u64,
        elapsed: Duration,
        complete: bool,
        limit: Duration,
    ) -> Self {
        let mut r = Self::consume(tally, errors, elapsed);
        if !complete {
            r.note = Some(format!("timed out after {limit:?}"));
        }
        r
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
pub(crate) async fn with_cpu<F>(f: F) -> anyhow::Result<Option<SideResult>>
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
pub(crate) async fn with_cpu_raw<F>(f: F) -> anyhow::Result<SideResult>
where
    F: Future<Output = anyhow::Result<SideResult>>,
{
    let c0 = env::process_cpu();
    let mut r = f.await?;
    r.cpu = env::process_cpu().saturating_sub(c0);
    Ok(r)
}

/// One line of a scenario over its repetitions: what it is called, its rates and its
/// client CPU per event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) rate: Vec<f64>,
    pub(crate) cpu: Vec<f64>,
}

impl Series {
    pub(crate) fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }

    /// Adds one repetition's rate and CPU per event.
    pub(crate) fn push(&mut self, r: &SideResult) {
        self.rate.push(r.rate());
        self.cpu.push(r.cpu_us());
    }

    fn rate_stats(&self) -> Option<(String, Stats)> {
        Stats::of(&self.rate).map(|s| (self.label.clone(), s))
    }

    fn cpu_stats(&self) -> Option<(String, Stats)> {
        Stats::of(&self.cpu).map(|s| (self.label.clone(), s))
    }
}

/// The throughput figure of a library line against its raw lines (the first is the one
/// a ratio is read against).
pub(crate) fn throughput(scenario: &str, lib: &Series, raw: &[&Series]) -> Figure {
    Figure::new(
        scenario,
        "throughput",
        "events/s",
        Better::Higher,
        lib.rate_stats(),
        raw.iter().filter_map(|r| r.rate_stats()).collect(),
    )
}

/// The client-CPU figure of the same lines: microseconds of this process's CPU per
/// event; `None` when nothing was measured.
pub(crate) fn cpu_figure(scenario: &str, lib: &Series, raw: &[&Series]) -> Option<Figure> {
    let baselines: Vec<_> = raw.iter().filter_map(|r| r.cpu_stats()).collect();
    let lib = lib.cpu_stats();
    if lib.is_none() && baselines.is_empty() {
        return None;
    }
    Some(Figure::new(
        scenario,
        "client CPU per event",
        "µs",
        Better::Lower,
        lib,
        baselines,
    ))
}

/// Figures and checks collected so far.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) figures: Vec<Figure>,
    pub(crate) checks: Vec<Check>,
    /// Scenarios skipped, with the reason.
    pub(crate) notes: Vec<String>,
}

impl Out {
    /// Adds a check, keeping per (scenario, side, name) the failing or the largest value.
    pub(crate) fn check(
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
    pub(crate) fn publish_checks(
        &mut self,
        scenario: &str,
        side: &str,
        r: &SideResult,
        stored: u64,
    ) {
        self.check(scenario, side, "errors", Some(0), r.errors);
        self.check(scenario, side, "stored", Some(r.count), stored);
    }

    /// Checks of a consume run: every id once, no errors.
    pub(crate) fn consume_checks(&mut self, scenario: &str, side: &str, r: &SideResult) {
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

pub(crate) fn pb_msg(scenario: &str, side: &str, rep: u32, reps: u32) -> String {
    format!("{scenario} · {side} · rep {}/{reps}", rep + 1)
}

pub(crate) const LIB: &str = "library";
