//! The result of a benchmark run: figures (library beside raw, with ratios), harness checks,
//! a human table and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::Stats;

/// Which direction of a figure is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput: more is better; a ratio of 1.0 or above means the library keeps up.
    Higher,
    /// Latency, memory: less is better; a ratio of 1.0 or below means the library keeps up.
    Lower,
}

/// One raw async-nats baseline of a figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// What the raw client did, e.g. `raw js.publish, window 1000`.
    pub label: String,
    /// The figure over the repetitions.
    pub stats: Stats,
    /// Library median divided by this baseline's median (`None` without a library figure).
    pub ratio: Option<f64>,
}

/// One measured quantity of a scenario: the library's figure and its raw baselines from the
/// same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Scenario and its parameters, e.g. `publish windowed (window 1000)`.
    pub scenario: String,
    /// What is measured, e.g. `throughput` or `p99 latency`.
    pub metric: String,
    /// Unit of the figures, e.g. `events/s` or `ms`.
    pub unit: String,
    /// Which direction is good.
    pub better: Better,
    /// What the library did (`None` for a reference-only line).
    pub library_label: Option<String>,
    /// The library's figure over the repetitions.
    pub library: Option<Stats>,
    /// Raw async-nats doing the same work, in the same run, on the same server.
    pub baselines: Vec<Baseline>,
    /// The goals of issue 12 this figure is held to in this run, each marked met or not.
    pub goals: Vec<Goal>,
}

/// A bound a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Bound {
    /// Library / baseline at least this (throughput).
    RatioAtLeast(f64),
    /// Library / baseline at most this (latency).
    RatioAtMost(f64),
    /// The library's median below this, in the figure's unit.
    Below(f64),
}

/// A goal (issue 12) attached to a figure, and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    /// The baseline a ratio goal is taken against (`None` for an absolute bound).
    pub baseline: Option<String>,
    /// The bound.
    pub bound: Bound,
    /// Whether the medians of this run meet it (`None` when a side was not measured).
    pub met: Option<bool>,
}

impl Goal {
    /// The goal as the table shows it, e.g. `≥ 0.90×: met`.
    pub fn describe(&self, unit: &str) -> String {
        let bound = match self.bound {
            Bound::RatioAtLeast(r) => format!("≥ {r:.2}×"),
            Bound::RatioAtMost(r) => format!("≤ {r:.2}×"),
            Bound::Below(v) => format!("< {} {unit}", num(v)),
        };
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        format!("{bound}: {verdict}")
    }
}

impl Figure {
    /// A figure with the ratios of the library to each baseline computed.
    pub fn new(
        scenario: impl Into<String>,
        metric: impl Into<String>,
        unit: impl Into<String>,
        better: Better,
        library: Option<(String, Stats)>,
        raw: Vec<(String, Stats)>,
    ) -> Self {
        let lib_median = library.as_ref().map(|(_, s)| s.median);
        let baselines = raw
            .into_iter()
            .map(|(label, stats)| {
                let ratio = lib_median.and_then(|m| {
                    if stats.median == 0.0 {
                        None
                    } else {
                        Some(m / stats.median)
                    }
                });
                Baseline {
                    label,
                    stats,
                    ratio,
                }
            })
            .collect();
        let (library_label, library) = match library {
            Some((l, s)) => (Some(l), Some(s)),
            None => (None, None),
        };
        Self {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            better,
            library_label,
            library,
            baselines,
            goals: Vec::new(),
        }
    }

    /// Holds the figure to `bound`: a ratio to the baseline whose label starts with
    /// `baseline`, or (`None`) an absolute bound on the library's median.
    #[must_use]
    pub fn with_goal(mut self, baseline: Option<&str>, bound: Bound) -> Self {
        let base = baseline.and_then(|b| self.baselines.iter().find(|x| x.label.starts_with(b)));
        let met = match bound {
            Bound::RatioAtLeast(r) => base.and_then(|b| b.ratio).map(|x| x >= r),
            Bound::RatioAtMost(r) => base.and_then(|b| b.ratio).map(|x| x <= r),
            Bound::Below(v) => self.library.as_ref().map(|l| l.median < v),
        };
        self.goals.push(Goal {
            baseline: base.map_or_else(|| baseline.map(str::to_owned), |b| Some(b.label.clone())),
            bound,
            met,
        });
        self
    }

    /// The goals shown on the row of `side` (a baseline's label, or `None` for the
    /// library's row, which carries the absolute ones).
    fn goals_of(&self, side: Option<&str>) -> String {
        self.goals
            .iter()
            .filter(|g| match (&g.baseline, side) {
                (Some(b), Some(s)) => b == s,
                (None, None) => true,
                _ => false,
            })
            .map(|g| g.describe(&self.unit))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The ratio of the library to the first baseline, the one a goal is stated against.
    pub fn ratio(&self) -> Option<f64> {
        self.baselines.first().and_then(|b| b.ratio)
    }
}

/// A correctness check of the harness: counts, missing and duplicate ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Scenario the check belongs to.
    pub scenario: String,
    /// `library` or the raw label.
    pub side: String,
    /// What was checked, e.g. `delivered` or `duplicates`.
    pub name: String,
    /// Expected value (`None` when any value is fine and it is only reported).
    pub expected: Option<u64>,
    /// Worst value seen over the repetitions (largest deviation from `expected`).
    pub actual: u64,
}

impl Check {
    /// True if the check passed (or only reports a value).
    pub fn ok(&self) -> bool {
        self.expected.is_none_or(|e| e == self.actual)
    }
}

/// Where the figures came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// Server URL.
    pub server: String,
    /// True if the benchmark started its own test-kit server.
    pub own_server: bool,
    /// The server's `sync_interval`: `always`, `default`, or `external` (unknown).
    pub sync: String,
    /// nats-server version reported by the server.
    pub server_version: String,
    /// Repetitions per side.
    pub reps: u32,
    /// Logical CPUs of this machine.
    pub cpus: usize,
    /// CPU model from `/proc/cpuinfo` (empty if unknown).
    pub cpu_model: String,
    /// Load average (1 min) when the run started, from `/proc/loadavg` (to judge noise).
    pub load_at_start: Option<f64>,
    /// Load average (1 min) when the run ended.
    pub load_at_end: Option<f64>,
    /// Wall time of the whole run in seconds.
    pub elapsed_s: f64,
}

/// Everything one `run` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Server, sync setting, machine.
    pub header: Header,
    /// Library and raw figures with ratios.
    pub figures: Vec<Figure>,
    /// Harness correctness checks.
    pub checks: Vec<Check>,
    /// Scenarios skipped, each with its reason (e.g. `restart` on an external server).
    pub notes: Vec<String>,
}

impl BenchReport {
    /// True if every check passed.
    pub fn all_checks_ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A human-readable table: one line per side (library first, then its raw baselines),
    /// median / min / max over the repetitions and the ratio library / raw.
    pub fn render_table(&self) -> String {
        let h = &self.header;
        let mut out = String::new();
        let load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "events bench · server {} ({}, nats-server {}) · sync_interval: {} · {} reps",
            h.server,
            if h.own_server {
                "started by the bench"
            } else {
                "external"
            },
            h.server_version,
            h.sync,
            h.reps
        );
        let _ = writeln!(
            out,
            "machine: {} CPUs, {} · load avg {} → {} · {:.1} s",
            h.cpus,
            if h.cpu_model.is_empty() {
                "unknown CPU"
            } else {
                &h.cpu_model
            },
            load(h.load_at_start),
            load(h.load_at_end),
            h.elapsed_s
        );
        let rows = self.rows();
        let mut widths = [0usize; 8];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut last_scenario = String::new();
        for (i, r) in rows.iter().enumerate() {
            if i > 0 && r[0] != last_scenario {
                out.push('\n');
            }
            let scenario = if i > 0 && r[0] == last_scenario {
                ""
            } else {
                &r[0]
            };
            last_scenario.clone_from(&r[0]);
            let _ = write!(out, "{scenario:<w$}  ", w = widths[0]);
            let _ = write!(out, "{:<w$}  ", r[1], w = widths[1]);
            let _ = write!(out, "{:<w$}  ", r[2], w = widths[2]);
            for c in 3..7 {
                let _ = write!(out, "{:>w$}  ", r[c], w = widths[c]);
            }
            let _ = writeln!(out, "{}", r[7]);
        }
        for n in &self.notes {
            let _ = writeln!(out, "\nnote: {n}");
        }
        self.render_checks(&mut out);
        out
    }
}

impl BenchReport {
    /// The checks' summary, and each failed or reported-only check on a line.
    fn render_checks(&self, out: &mut String) {
        if !self.checks.is_empty() {
            let bad: Vec<&Check> = self.checks.iter().filter(|c| !c.ok()).collect();
            let _ = writeln!(
                out,
                "\nchecks: {} of {} passed",
                self.checks.len() - bad.len(),
                self.checks.len()
            );
            for c in &self.checks {
                if c.expected.is_none() || !c.ok() {
                    let _ = writeln!(
                        out,
                        "  {} · {} · {}: {}{}",
                        c.scenario,
                        c.side,
                        c.name,
                        c.actual,
                        c.expected
                            .map_or_else(String::new, |e| format!(" (expected {e}) FAILED"))
                    );
                }
            }
        }
    }

    /// The table's rows: a header, then per figure the library's row and one per
    /// baseline, each with its ratio and the goals it is held to.
    fn rows(&self) -> Vec<[String; 8]> {
        let mut rows: Vec<[String; 8]> = vec![[
            "scenario".into(),
            "metric".into(),
            "side".into(),
            "median".into(),
            "min".into(),
            "max".into(),
            "lib/raw".into(),
            "goal".into(),
        ]];
        for f in &self.figures {
            let metric = format!("{} ({})", f.metric, f.unit);
            let row = |label: &str, s: &Stats, ratio: String, goal: String| {
                [
                    f.scenario.clone(),
                    metric.clone(),
                    label.to_owned(),
                    num(s.median),
                    num(s.min),
                    num(s.max),
                    ratio,
                    goal,
                ]
            };
            if let (Some(label), Some(s)) = (&f.library_label, &f.library) {
                rows.push(row(label, s, String::new(), f.goals_of(None)));
            }
            for b in &f.baselines {
                let ratio = b.ratio.map_or_else(String::new, |r| format!("{r:.2}×"));
                rows.push(row(&b.label, &b.stats, ratio, f.goals_of(Some(&b.label))));
            }
        }
        rows
    }
}

/// A figure with a precision that suits its size.
fn num(v: f64) -> String {
    if v >= 1000.0 {
        let n = v.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_library_over_raw() {
        let f = Figure::new(
            "publish",
            "throughput",
            "events/s",
            Better::Higher,
            Some(("library".into(), Stats::of(&[900.0]).unwrap())),
            vec![("raw".into(), Stats::of(&[1000.0]).unwrap())],
        );
        assert_eq!(f.ratio(), Some(0.9));
    }

    #[test]
    fn goals_are_judged_on_the_medians() {
        let stats = |v: f64| Stats::of(&[v]).unwrap();
        let f = Figure::new(
            "e2e",
            "p99 latency",
            "ms",
            Better::Lower,
            Some(("library".into(), stats(12.0))),
            vec![("raw a".into(), stats(10.0)), ("raw b".into(), stats(6.0))],
        )
        .with_goal(Some("raw a"), Bound::RatioAtMost(1.5))
        .with_goal(Some("raw b"), Bound::RatioAtMost(1.5))
        .with_goal(None, Bound::Below(10.0))
        .with_goal(Some("raw c"), Bound::RatioAtLeast(0.9));
        let met: Vec<_> = f.goals.iter().map(|g| g.met).collect();
        assert_eq!(met, [Some(true), Some(false), Some(false), None]);
        assert_eq!(f.goals_of(Some("raw a")), "≤ 1.50×: met");
        assert_eq!(f.goals_of(None), "< 10.0 ms: NOT MET");
        assert_eq!(f.goals[3].describe("ms"), "≥ 0.90×: not measured");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(999.0), "999");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
    }
}
