//! Smoke test of the benchmark harness: every scenario at a tiny size against a test-kit
//! server. It checks the harness (counts, no missing ids, figures and ratios present), not
//! speed.

use std::time::Duration;

use events_bench::{BenchConfig, BenchReport, Better, Scenario, SyncSetting};

/// Sizes small enough for CI yet large enough that every code path runs (several windows,
/// several atomic batches, several fetch batches, two instances).
fn tiny() -> (BenchConfig, Sizes) {
    let sizes = Sizes {
        confirmed: 40,
        windowed: 300,
        window: 50,
        batch: 100,
        consume: 300,
        instances: 2,
        rate: 200,
        duration: Duration::from_secs(1),
        load: 600,
    };
    let cfg = BenchConfig {
        scenarios: vec![
            Scenario::PublishConfirmed {
                events: sizes.confirmed,
            },
            Scenario::PublishWindowed {
                events: sizes.windowed,
                window: sizes.window,
                batch_size: sizes.batch,
                batches_in_flight: 2,
            },
            Scenario::Consume {
                events: sizes.consume,
                instances: sizes.instances,
            },
            Scenario::E2e {
                rate: sizes.rate,
                duration: sizes.duration,
            },
            Scenario::Load {
                events: sizes.load,
                window: sizes.window,
            },
        ],
        server: None,
        sync: SyncSetting::Default,
        reps: 2,
        max_in_flight: 8,
        progress: false,
        sides: events_bench::Sides::Both,
    };
    (cfg, sizes)
}

struct Sizes {
    confirmed: u64,
    windowed: u64,
    window: usize,
    batch: usize,
    consume: u64,
    instances: usize,
    rate: u64,
    duration: Duration,
    load: u64,
}

fn check_value(
    report: &BenchReport,
    scenario_prefix: &str,
    side_prefix: &str,
    name: &str,
) -> Vec<(Option<u64>, u64)> {
    report
        .checks
        .iter()
        .filter(|c| {
            c.scenario.starts_with(scenario_prefix)
                && c.side.starts_with(side_prefix)
                && c.name == name
        })
        .map(|c| (c.expected, c.actual))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_every_scenario_counts_every_event() {
    let (cfg, sizes) = tiny();
    let report = tokio::time::timeout(Duration::from_secs(150), events_bench::run(cfg))
        .await
        .expect("the tiny benchmark finishes within 150 s")
        .expect("the benchmark runs");
    let table = report.render_table();
    println!("{table}");

    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok()).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert_eq!(report.header.sync, "default");
    assert!(report.header.own_server);

    // Every event of every raw publish run is stored, exactly the number sent.
    assert_eq!(
        check_value(&report, "publish confirmed", "raw", "stored"),
        vec![(Some(sizes.confirmed), sizes.confirmed)]
    );
    let windowed_stored = check_value(&report, "publish windowed", "raw", "stored");
    assert_eq!(
        windowed_stored.len(),
        2,
        "per-message and atomic batch lines: {windowed_stored:?}"
    );
    assert!(
        windowed_stored
            .iter()
            .all(|&v| v == (Some(sizes.windowed), sizes.windowed))
    );
    // The library side: every publish stored, every id handled once.
    assert_eq!(
        check_value(&report, "publish confirmed", "library", "stored"),
        vec![(Some(sizes.confirmed), sizes.confirmed)]
    );
    // Per message and with batching on.
    assert_eq!(
        check_value(&report, "publish windowed", "library", "stored"),
        vec![(Some(sizes.windowed), sizes.windowed); 2]
    );
    assert_eq!(
        check_value(&report, "consume", "library", "delivered"),
        vec![(Some(sizes.consume), sizes.consume)]
    );
    assert_eq!(
        check_value(&report, "load", "library", "missing"),
        vec![(Some(0), 0)]
    );
    // Consume: both raw ack modes delivered every id once, none missing.
    for side in ["raw pull + ack", "raw pull + double_ack"] {
        assert_eq!(
            check_value(&report, "consume", side, "delivered"),
            vec![(Some(sizes.consume), sizes.consume)],
            "{side}"
        );
        assert_eq!(
            check_value(&report, "consume", side, "missing"),
            vec![(Some(0), 0)],
            "{side}"
        );
    }
    // e2e: rate × duration events, all delivered.
    let e2e_total = sizes.rate * sizes.duration.as_secs();
    for side in ["raw", "library"] {
        assert_eq!(
            check_value(&report, "e2e", side, "delivered"),
            vec![(Some(e2e_total), e2e_total)],
            "{side}"
        );
    }
    // Load: every id, none missing.
    assert_eq!(
        check_value(&report, "load", "raw", "delivered"),
        vec![(Some(sizes.load), sizes.load)]
    );

    // Figures: throughput and client CPU per publish scenario and consume, four latency
    // figures, three for load.
    let scen = |p: &str| {
        report
            .figures
            .iter()
            .filter(|f| f.scenario.starts_with(p))
            .count()
    };
    assert_eq!(scen("publish confirmed"), 2);
    assert_eq!(scen("publish windowed"), 4);
    assert_eq!(scen("consume"), 2);
    assert_eq!(scen("e2e"), 4);
    assert_eq!(scen("load"), 3);
    for f in &report.figures {
        assert!(
            !f.baselines.is_empty(),
            "{} {} has a raw baseline",
            f.scenario,
            f.metric
        );
        for b in &f.baselines {
            assert_eq!(
                b.stats.samples.len(),
                if f.scenario.starts_with("load") { 1 } else { 2 }
            );
            assert!(b.stats.min <= b.stats.median && b.stats.median <= b.stats.max);
            // CPU time is counted in 10 ms ticks and RSS growth may be nil: a tiny run may
            // see zero there; everything else is a positive rate or latency.
            let may_be_zero = f.metric == "client CPU per event" || f.unit == "MiB";
            if !may_be_zero {
                assert!(
                    b.stats.median > 0.0,
                    "{} {} {}",
                    f.scenario,
                    f.metric,
                    b.label
                );
            }
            // Where the library measured the same thing, the ratio is its median over raw's.
            if let Some(l) = &f.library
                && b.stats.median > 0.0
            {
                let r = b.ratio.expect("a ratio beside every library figure");
                assert!((r - l.median / b.stats.median).abs() < 1e-9);
            }
        }
        if f.metric.contains("latency") {
            assert_eq!(f.better, Better::Lower);
        }
    }
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
