//! `cargo bench -p events-bench`: every scenario at a modest size under the shipped
//! `sync_interval: always`, library beside raw async-nats (the same code as
//! `eventctl bench`; set `EVENTS_BENCH_SYNC=default` to compare with the server default).

use std::time::Duration;

use events_bench::{BenchConfig, Scenario, SyncSetting};

fn main() {
    // `cargo test --benches` runs this with `--test`: nothing to measure there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let sync = match std::env::var("EVENTS_BENCH_SYNC").as_deref() {
        Ok("default") => SyncSetting::Default,
        _ => SyncSetting::Always,
    };
    let cfg = BenchConfig {
        scenarios: vec![
            Scenario::PublishConfirmed { events: 1_000 },
            Scenario::PublishWindowed {
                events: 10_000,
                window: 1_000,
                batch_size: 1_000,
                batches_in_flight: 4,
            },
            Scenario::Consume {
                events: 10_000,
                instances: 1,
            },
            Scenario::E2e {
                rate: 1_000,
                duration: Duration::from_secs(5),
            },
            Scenario::Load {
                events: 20_000,
                window: 1_000,
            },
            Scenario::Drain { events: 50_000 },
            Scenario::Restart {
                rate: 2_000,
                duration: Duration::from_secs(6),
            },
        ],
        sync,
        reps: 3,
        ..BenchConfig::default()
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a Tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(events_bench::run(cfg)) {
        Ok(report) => print!("{}", report.render_table()),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
