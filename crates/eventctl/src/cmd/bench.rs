//! `eventctl bench`: the library against raw async-nats with the client's defaults, side
//! by side, each figure with its goal of issue 12 (met or not). A thin wrapper over
//! `events_bench`: the scenarios, statistics, goals and output live there.

use events_bench::BenchArgs;

use crate::args::ConnArgs;

/// Runs the benchmark. By default it starts its own test-kit server (`--sync` chooses its
/// `sync_interval`); the global `--server` is used only when given on the command line
/// (its default URL would otherwise silently benchmark whatever listens there). On a given
/// server the `restart` scenario is skipped with a printed reason: the bench restarts only
/// a server it started.
pub(crate) async fn run(conn: &ConnArgs, mut args: BenchArgs) -> anyhow::Result<()> {
    let explicit = std::env::args().any(|a| a == "--server" || a.starts_with("--server="));
    if explicit {
        args.server = conn.server.first().cloned();
    }
    // eventctl runs a current-thread runtime; a benchmark wants the multi-threaded one a
    // service would use, so it gets its own runtime on a blocking thread.
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(events_bench::run_and_print(&args)).map(drop)
    })
    .await?
}
