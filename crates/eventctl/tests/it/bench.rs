//! `eventctl bench`: every scenario at a tiny size, on the server the command starts itself
//! (its default), in human and `--json` form. Correctness of the harness, not speed.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{assert_code, stderr, stdout};

/// Runs `eventctl bench <args>` without `--server`, so it starts its own test-kit server.
async fn bench(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventctl"));
    cmd.arg("bench")
        .args(args)
        .env_remove("EVENTS_NATS_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("bench finished within 120 s")
        .expect("eventctl ran")
}

const TINY: &[&str] = &[
    "--confirmed-events",
    "20",
    "--windowed-events",
    "200",
    "--consume-events",
    "200",
    "--events",
    "300",
    "--rate",
    "200",
    "--duration",
    "1s",
    "--reps",
    "1",
];

#[tokio::test]
async fn bench_runs_every_scenario_library_beside_raw() {
    let mut args = vec!["all", "--json"];
    args.extend_from_slice(TINY);
    let out = bench(&args).await;
    assert_code(&out, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("bench --json is JSON ({e}): {}", stdout(&out)));
    let figures = report["figures"].as_array().expect("figures");
    let scenarios: std::collections::BTreeSet<&str> = figures
        .iter()
        .map(|f| f["scenario"].as_str().unwrap_or_default())
        .collect();
    for prefix in [
        "publish confirmed",
        "publish windowed",
        "consume",
        "e2e",
        "load",
    ] {
        assert!(
            scenarios.iter().any(|s| s.starts_with(prefix)),
            "no {prefix} figure in {scenarios:?}"
        );
    }
    // Every library figure stands beside a raw baseline, and its ratio is library / raw.
    for f in figures {
        let lib = f["library"]["median"].as_f64().expect("library median");
        let baselines = f["baselines"].as_array().expect("baselines");
        assert!(!baselines.is_empty(), "{f}");
        // Reference lines (raw atomic batches) and CPU figures too small to measure at this
        // size (0 µs) carry no ratio; every throughput figure has one.
        let with_ratio: Vec<_> = baselines
            .iter()
            .filter(|b| b["ratio"].is_number())
            .collect();
        if f["metric"] == "throughput" {
            assert!(!with_ratio.is_empty(), "no baseline with a ratio: {f}");
        }
        for b in with_ratio {
            let raw = b["stats"]["median"].as_f64().expect("raw median");
            let ratio = b["ratio"].as_f64().expect("ratio");
            assert!(raw > 0.0, "{f}");
            assert!(
                (ratio - lib / raw).abs() <= 1e-9 * ratio.abs().max(1.0),
                "{f}"
            );
        }
    }
    // The harness's own checks (stored and delivered counts, no missing ids) all held.
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    for c in checks {
        // `expected: null` marks a count that is reported, not required (duplicates under
        // at-least-once delivery).
        if !c["expected"].is_null() {
            assert_eq!(c["expected"], c["actual"], "{c}");
        }
    }
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "missing" || c["name"] == "stored"),
        "{checks:?}"
    );
}

#[tokio::test]
async fn bench_prints_a_table_with_ratios_and_refuses_bad_flags() {
    let mut args = vec!["publish", "--mode", "confirmed"];
    args.extend_from_slice(TINY);
    let out = bench(&args).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("library"), "{text}");
    assert!(text.contains("raw"), "{text}");
    assert!(text.contains('×'), "ratio column missing: {text}");
    assert!(
        text.contains("sync_interval") || text.contains("sync"),
        "{text}"
    );

    let out = bench(&["publish", "--mode", "sideways"]).await;
    assert_code(&out, 2);
    assert!(stderr(&out).contains("sideways"), "{}", stderr(&out));
}
