//! Run with:
//!
//! ```text
//! scripts/dev-up.sh                  # NATS, the streams, both services in the background
//! cargo run -p catalog-service       # or by hand: this consumer (admin port 127.0.0.1:9092)
//! curl -sS -X POST localhost:8081/users -H 'content-type: application/json' \
//!      -d '{"email":"ada@acme.example","name":"Ada Lovelace","organization_id":"org-acme"}'
//! cargo run -p eventctl -- tail 'auth.>' --from -5m
//! curl -sS localhost:9092/catalogs/org-acme   # the projection: Ada and her workspace
//! curl -sS localhost:9092/metrics             # events_consumed_total, subscription_lag, ...
//! ```
//!
//! The binary: parses the command line, loads the configuration, installs logging and
//! the signal handler, and calls [`catalog_service::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use catalog_service::Config;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Example consumer: group catalog-service on auth.user.*, projecting users per organization.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see services/catalog-service/catalog-service.toml).
    #[arg(long, env = "CATALOG_SERVICE_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server URL(s), comma-separated; overrides the file.
    #[arg(long, env = "EVENTS_NATS_URL", value_delimiter = ',')]
    nats_url: Option<Vec<String>>,
    /// Address of the admin server (/catalogs/{org}, /metrics, ...); overrides the file.
    #[arg(long, env = "CATALOG_SERVICE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH or postgres://user@host/db; overrides the file.
    #[arg(long, env = "CATALOG_SERVICE_DATABASE")]
    database: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // No colour codes in logs captured to files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Many clients must not make accept fail with "Too many open files" (issue #10).
    if let Err(e) = events_admin::raise_open_files_limit() {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Config::from_toml(&text, &path.display().to_string())?
        }
        None => Config::default(),
    };
    if let Some(urls) = cli.nats_url {
        config.nats.urls = urls;
    }
    if let Some(admin) = cli.admin_listen {
        config.admin_listen = admin;
    }
    if let Some(database) = cli.database {
        config.database = database;
    }

    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let result = catalog_service::run(config, shutdown).await;
    signals.abort();
    result
}

/// Cancels `shutdown` on ctrl-c or SIGTERM (as in axum's graceful-shutdown example).
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("signal received, shutting down");
    shutdown.cancel();
}
