//! Smoke test of the benchmark harness: every scenario at a tiny size against a test-kit
//! server. It checks the harness (counts, no missing ids, every line of every scenario
//! present with its ratio), never speed.

use std::time::Duration;

use events_bench::{BenchConfig, BenchReport, Better, Figure, Scenario, Sides, SyncSetting};

/// Sizes small enough for CI yet large enough that every code path runs (several windows,
/// several atomic batches, several pull batches, two instances, a restart mid-run).
fn tiny() -> BenchConfig {
    BenchConfig {
        scenarios: vec![
            Scenario::PublishConfirmed { events: 40 },
            Scenario::PublishWindowed {
                events: 300,
                window: 50,
                batch_size: 100,
                batches_in_flight: 2,
            },
            Scenario::Consume {
                events: 300,
                instances: 2,
            },
            Scenario::E2e {
                rate: 200,
                duration: Duration::from_secs(1),
            },
            Scenario::Load {
                events: 600,
                window: 50,
            },
            Scenario::Drain { events: 500 },
            Scenario::Restart {
                rate: 200,
                duration: Duration::from_secs(3),
            },
        ],
        server: None,
        sync: SyncSetting::Default,
        reps: 1,
        max_in_flight: None,
        progress: false,
        sides: Sides::Both,
    }
}

/// What the report must hold for one scenario: the scenario name's prefix, its metrics,
/// and how many raw lines each figure has.
struct Expected {
    prefix: &'static str,
    metrics: &'static [&'static str],
    baselines: usize,
    /// Events every consumer of the scenario must have handled (`None`: not checked here).
    delivered: Option<u64>,
}

fn expected(s: &Scenario) -> Vec<Expected> {
    let one = |prefix, metrics, baselines, delivered| Expected {
        prefix,
        metrics,
        baselines,
        delivered,
    };
    let thr: &'static [&'static str] = &["throughput", "client CPU per event"];
    match s {
        Scenario::PublishConfirmed { .. } => vec![one("publish confirmed", thr, 1, None)],
        // Per message (against raw per message and atomic batches), and batched.
        Scenario::PublishWindowed { .. } => vec![
            one("publish windowed", thr, 2, None),
            one(
                "publish windowed (window 50), library batching",
                thr,
                2,
                None,
            ),
        ],
        // Client defaults, and the library's sizes with ack and with double_ack.
        Scenario::Consume { events, .. } => vec![one("consume", thr, 3, Some(*events))],
        Scenario::E2e { rate, duration } => vec![one(
            "e2e",
            &["p50 latency", "p95 latency", "p99 latency", "max latency"],
            1,
            Some(rate * duration.as_secs()),
        )],
        Scenario::Load { events, .. } => vec![one(
            "load",
            &["publish (window 50)", "consume (1 instance)"],
            1,
            Some(*events),
        )],
        Scenario::Drain { events } => vec![one(
            "drain",
            &[
                "peak RSS while draining (whole bench process)",
                "RSS growth while draining (peak - start)",
            ],
            1,
            Some(*events),
        )],
        Scenario::Restart { rate, duration } => vec![one(
            "restart",
            &[
                "longest pause between stored acks",
                "longest pause between handled events",
                "server restart (stop, start until ready)",
            ],
            1,
            Some(rate * duration.as_secs()),
        )],
        _ => panic!("a scenario the smoke test does not know: {s:?}"),
    }
}

fn figures<'a>(report: &'a BenchReport, e: &Expected) -> Vec<&'a Figure> {
    report
        .figures
        .iter()
        .filter(|f| {
            f.scenario.starts_with(e.prefix)
                && (e.prefix.contains("library batching") || !f.scenario.contains("batching"))
        })
        .collect()
}

/// Every figure has a library line, the expected raw lines, each with its ratio.
fn assert_lines(report: &BenchReport, e: &Expected) {
    let figs = figures(report, e);
    let metrics: Vec<&str> = figs.iter().map(|f| f.metric.as_str()).collect();
    assert_eq!(metrics, e.metrics, "metrics of {}", e.prefix);
    for f in figs {
        let what = format!("{} · {}", f.scenario, f.metric);
        let lib = f
            .library
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: library"));
        assert_eq!(f.baselines.len(), e.baselines, "{what}: raw lines");
        for b in &f.baselines {
            assert!(b.stats.min <= b.stats.median && b.stats.median <= b.stats.max);
            if b.stats.median > 0.0 {
                let r = b.ratio.unwrap_or_else(|| panic!("{what}: ratio"));
                assert!((r - lib.median / b.stats.median).abs() < 1e-9, "{what}");
            }
        }
        if f.unit == "ms" || f.unit == "MiB" || f.metric.contains("CPU") {
            assert_eq!(f.better, Better::Lower, "{what}");
        } else {
            assert_eq!(f.better, Better::Higher, "{what}");
        }
    }
}

/// Every consumer of the scenario held to it handled `n` distinct ids, none missing.
fn assert_delivered(report: &BenchReport, prefix: &str, n: u64) {
    let delivered: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.scenario.starts_with(prefix) && c.name == "delivered")
        .collect();
    assert!(!delivered.is_empty(), "{prefix}: delivered checks");
    for c in delivered {
        // Raw paced runs only report it: a raw publish is not retried, so what a restart
        // loses is not stored (that nothing acknowledged went unhandled is a check).
        match c.expected {
            Some(e) => assert_eq!((e, c.actual), (n, n), "{prefix} · {}", c.side),
            None => assert!(c.actual <= n, "{prefix} · {}", c.side),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_every_scenario_has_every_line() {
    let cfg = tiny();
    let scenarios = cfg.scenarios.clone();
    let report = tokio::time::timeout(Duration::from_secs(170), events_bench::run(cfg))
        .await
        .expect("the tiny benchmark finishes within 170 s")
        .expect("the benchmark runs");
    let table = report.render_table();
    println!("{table}");

    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok()).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert_eq!(report.header.sync, "default");
    assert!(report.header.own_server);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let mut count = 0;
    for s in &scenarios {
        for e in expected(s) {
            assert_lines(&report, &e);
            if let Some(n) = e.delivered {
                assert_delivered(&report, e.prefix, n);
            }
            count += e.metrics.len();
        }
    }
    assert_eq!(
        report.figures.len(),
        count,
        "no figure beyond the expected ones"
    );

    // The goals that hold whatever the sync: consume against the client's defaults.
    let consume = report
        .figures
        .iter()
        .find(|f| f.scenario.starts_with("consume") && f.metric == "throughput")
        .unwrap();
    assert!(consume.baselines[0].label.contains("client defaults"));
    assert_eq!(
        consume.goals[0].baseline.as_deref(),
        Some(consume.baselines[0].label.as_str())
    );
    assert!(consume.goals[0].met.is_some());
    // Under the server default, confirmed publish is held to ≥ 0.95× raw.
    let confirmed = &report.figures[0];
    assert_eq!(confirmed.goals.len(), 1, "{confirmed:?}");
    assert!(table.contains("≥ 0.95×"));

    // Latency percentiles are ordered.
    let med = |m: &str| {
        report
            .figures
            .iter()
            .find(|f| f.scenario.starts_with("e2e") && f.metric == m)
            .map(|f| f.baselines[0].stats.median)
            .unwrap()
    };
    assert!(med("p50 latency") <= med("p95 latency"));
    assert!(med("p95 latency") <= med("p99 latency"));
    assert!(med("p99 latency") <= med("max latency"));

    // JSON round-trips through serde_json as an object with the same figures.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        json["figures"].as_array().unwrap().len(),
        report.figures.len()
    );
    assert!(table.contains("sync_interval: default"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_restart_is_skipped_with_a_reason_on_an_external_server() {
    let server = events_testkit::NatsServer::start().await;
    let cfg = BenchConfig {
        scenarios: vec![Scenario::Restart {
            rate: 100,
            duration: Duration::from_secs(1),
        }],
        server: Some(server.url()),
        ..tiny()
    };
    let report = tokio::time::timeout(Duration::from_secs(60), events_bench::run(cfg))
        .await
        .expect("a skipped scenario returns at once")
        .expect("the benchmark runs");
    assert!(report.figures.is_empty(), "{:?}", report.figures);
    assert_eq!(report.notes.len(), 1);
    assert!(report.notes[0].contains("external"), "{}", report.notes[0]);
    assert!(report.render_table().contains(&report.notes[0]));
}
