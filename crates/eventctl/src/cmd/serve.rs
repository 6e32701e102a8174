//! `eventctl serve`: the `events-admin` server (DLQ API, admin only; `/metrics`,
//! `/healthz`, `/readyz`) until SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use events_admin::{AdminState, AdminToken};
use tokio_util::sync::CancellationToken;

use super::shutdown_signal;
use crate::args::{ConnArgs, parse_duration};

/// `serve` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventctl serve\n  \
    eventctl serve --listen 0.0.0.0:9090 --admin-tokens-file /etc/events/admin-tokens\n  \
    eventctl serve --schemas schemas   # + GET /api/v1/events/schemas (discovery)\n  \
    EVENTS_ADMIN_TOKEN_HASHES=ops:3f2a...e9 eventctl serve\n\n\
Admin tokens are configured as <id>:<role>:<sha256 hex of the token> (make one with \
`printf %s \"$TOKEN\" | sha256sum`); role is viewer (list, show), operator (+ replay) or \
admin (+ delete, purge); <id>:<hex> alone is an admin. Requests send `Authorization: Bearer \
<token>`. With no token configured every DLQ request is refused (fail closed); /healthz, \
/readyz and /metrics are open. The tokens file holds one entry per line (# comments \
allowed) and is refused unless only its owner may read it (chmod 600).\n\n\
Stops on SIGTERM or ctrl-c: in-flight requests finish within --shutdown-timeout, exit 0.")]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub(crate) listen: SocketAddr,
    /// An admin token as ID:ROLE:SHA256HEX or ID:SHA256HEX (an admin) (repeatable; the env variable holds a comma-separated
    /// list, used when the flag is not given).
    #[arg(
        long = "admin-token-hash",
        value_name = "ID:SHA256HEX",
        env = "EVENTS_ADMIN_TOKEN_HASHES",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = |s: &str| AdminToken::parse(s.trim()).map_err(|e| e.to_string())
    )]
    pub(crate) admin_token_hash: Vec<AdminToken>,
    /// A file of admin tokens, one ID:ROLE:SHA256HEX per line, mode 0600 (added to the
    /// others).
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_tokens_file: Option<PathBuf>,
    /// Serve the event schemas of this directory (and the producers and consumers of its
    /// catalog.toml) at /api/v1/events/schemas: a discovery document of every type and
    /// version, and each schema document.
    #[arg(long, value_name = "DIR")]
    pub(crate) schemas: Option<PathBuf>,
    /// Longest wait for in-flight requests on shutdown.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) shutdown_timeout: Duration,
}

pub(crate) async fn run(conn: &ConnArgs, args: ServeArgs) -> anyhow::Result<()> {
    // Many clients must not make accept fail with "Too many open files" (issue #10).
    if let Err(e) = events_admin::raise_open_files_limit() {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    let mut tokens = args.admin_token_hash.clone();
    if let Some(path) = &args.admin_tokens_file {
        tokens.extend(events_admin::load_token_file(path)?);
    }
    let prometheus = events_admin::install_prometheus()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("installing the Prometheus recorder")?;
    // A server outlives NATS restarts: reconnect without limit (the other commands give
    // up after a few tries).
    let mut config = conn.connect_config();
    config.reconnect.max_reconnects = None;
    let nats = events::connection::connect(&config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if tokens.is_empty() {
        eprintln!(
            "warning: no admin token configured: every DLQ API request is refused (fail \
             closed); add --admin-token-hash ID:SHA256HEX or --admin-tokens-file FILE"
        );
    } else {
        let ids: Vec<String> = tokens.iter().map(|t| format!("{t:?}")).collect();
        tracing::info!(tokens = %ids.join(", "), "admin tokens configured");
        eprintln!("{} admin token(s) configured", tokens.len());
    }
    let mut state = AdminState::new(nats.client().clone())
        .with_tokens(tokens)
        .with_prometheus(prometheus);
    if let Some(dir) = &args.schemas {
        state = state.with_schemas(super::schema::directory(dir)?);
    }
    eprintln!(
        "eventctl serve: listening on http://{addr} (NATS {})",
        nats.urls()
    );

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(events_admin::serve_on(listener, state, shutdown.clone()));
    let server_handle = server.abort_handle();
    tokio::pin!(server);
    let early = tokio::select! {
        r = &mut server => Some(r),
        () = shutdown_signal() => None,
    };
    if let Some(r) = early {
        r.context("admin server task failed")??;
        bail!("admin server stopped on its own");
    }
    eprintln!("eventctl serve: shutting down");
    shutdown.cancel();
    match tokio::time::timeout(args.shutdown_timeout, &mut server).await {
        Ok(r) => r.context("admin server task failed")??,
        Err(_) => {
            server_handle.abort();
            bail!(
                "requests still running after {}; stopped them",
                humantime::format_duration(args.shutdown_timeout)
            );
        }
    }
    eprintln!("eventctl serve: stopped");
    Ok(())
}
