//! The benchmark as a standalone binary, same arguments as `eventctl bench`.
//!
//! Run with
//! ```text
//! scripts/setup-nats.sh   # once: installs nats-server into .tools/nats/bin
//! cargo run --release -p events-bench --example bench -- all --sync always
//! cargo run --release -p events-bench --example bench -- publish --mode windowed --window 1000
//! cargo run --release -p events-bench --example bench -- e2e --rate 5000 --duration 10s --json
//! ```

use std::process::ExitCode;

use clap::Parser;
use events_bench::BenchArgs;

/// Benchmarks the events library against raw async-nats, side by side.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// Use this server instead of starting a test-kit server.
    #[arg(long, env = "EVENTS_BENCH_SERVER", value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    args: BenchArgs,
}

// Multi-threaded like a service; library and raw share the runtime, so the ratio is fair.
#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.args.server = cli.server.take();
    match events_bench::run_and_print(&cli.args).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
