//! Run with:
//!
//! ```text
//! scripts/dev-up.sh                  # NATS, the streams, both services in the background
//! curl -sS -X POST localhost:8081/users -H 'content-type: application/json' \
//!      -d '{"email":"ada@acme.example","name":"Ada Lovelace","organization_id":"org-acme"}'
//! curl -sS 'localhost:8081/users?organization_id=org-acme'
//! cargo run -p eventctl -- tail 'auth.>' --from -5m
//! curl -sS localhost:9092/catalogs/org-acme   # catalog-service's projection
//! curl -sS localhost:9091/metrics             # this service's: outbox_pending, ...
//! scripts/dev-down.sh
//! ```
//!
//! Or by hand: `cargo run -p auth-service` (API on 127.0.0.1:8081, users in
//! `.data/auth-service/auth.db`; `--database postgres://...` for PostgreSQL).
//!
//! An example producer: a user service on its own database. Each change of a user writes
//! the user row and the event `docs/EVENT_CATALOG.md` describes (`auth.user.created`,
//! `auth.user.updated`, `auth.user.deleted`) in one transaction through the library's
//! transactional outbox ([`events::outbox`]), and answers when it commits; the outbox's
//! relay publishes the events in commit order. Requests never wait on NATS: with NATS down,
//! sign-ups keep working and `/readyz` stays ready, and the relay catches up.
//!
//! - [`users`]: the users API's logic, one transaction per change;
//! - [`user`]: a user as stored, and the limits on its fields;
//! - [`error`]: `UserError`, why a request failed;
//! - [`store`]: the `users` table (SQLite or PostgreSQL, `migrations/`);
//! - `validate`: the input rules;
//! - [`schema`]: the event payloads and envelopes;
//! - [`http`]: the axum routes;
//! - [`config`]: the TOML configuration;
//! - [`run`]: the wiring `main` calls (database, NATS, relay, admin server on
//!   127.0.0.1:9091, graceful shutdown).

pub mod config;
pub mod error;
pub mod http;
pub mod schema;
pub mod store;
pub mod user;
pub mod users;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::connection::{Connection, connect_in_background};
use events::db::Database;
use events::names::StreamName;
use events::outbox::{Outbox, Relay, RelayConfig};
use events::publisher::Publisher;
use events_admin::{
    AdminState, HttpLimits, ReadyCheck, ServeError, install_prometheus, serve_router,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;

use crate::schema::SOURCE;
use crate::users::UserService;

/// Serves the users API and the admin server until `shutdown` is cancelled, then stops
/// accepting requests, lets in-flight ones finish, stops the outbox relay, closes the
/// publisher, and stops the admin server; each step is bounded by `config.shutdown_timeout`.
///
/// Opens (and migrates) the database first; NATS is connected in the background, so the
/// service starts and serves while NATS is down: `/readyz` requires only the database.
/// Both servers run under [`events_admin::HttpLimits`].
///
/// Every event is validated against `config.schemas` when it is enqueued, in the
/// request's transaction, so an invalid one never reaches the outbox (loaded at start:
/// from the registry, NATS must answer then).
///
/// # Errors
/// If the database cannot be opened, the NATS configuration is invalid, the schemas cannot
/// be loaded, a port cannot be bound, or the API server fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = store::open(&config.database)
        .await
        .with_context(|| format!("cannot open the database {}", redacted(&config.database)))?;
    let (conn, publisher) = connect_and_publisher(&config).await?;
    // The outbox refuses, at enqueue, what the relay's publisher would refuse.
    let outbox = Outbox::for_publisher(publisher.config());
    let users = Arc::new(UserService::new(db.clone(), outbox.clone()));
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        outbox,
        publisher.clone(),
        RelayConfig::new(SOURCE),
    );
    let relay = tokio::spawn(relay.run(relay_stop.clone()));

    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot bind the users API to {}", config.listen))?;
    let admin_stop = CancellationToken::new();
    let admin = start_admin(&config, &conn, &db, admin_stop.clone()).await?;
    info!(listen = %config.listen, admin = %config.admin_listen, "auth-service ready");

    let mut api: JoinHandle<Result<(), ServeError>> = tokio::spawn(serve_router(
        api_listener,
        http::router(users),
        HttpLimits::default(),
        shutdown.clone(),
    ));
    let ended_early = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        res = &mut api => Some(res), // a completed JoinHandle must not be polled again
    };

    // Shutdown: finish in-flight requests, stop the relay (what it did not send stays in the
    // outbox for the next start), close the publisher, stop the admin server last (so
    // /metrics and /readyz answer while draining).
    let d = config.shutdown_timeout;
    let api_result = match ended_early {
        Some(res) => res,
        None => {
            info!("shutting down: finishing in-flight requests");
            match timeout(d, &mut api).await {
                Ok(res) => res,
                Err(_) => {
                    warn!(timeout = ?d, "requests still running at the shutdown timeout; aborted");
                    api.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    relay_stop.cancel();
    if timeout(d, relay).await.is_err() {
        warn!("outbox relay did not stop in time");
    }
    if let Err(e) = publisher.close(d).await {
        warn!(error = %e, "publisher closed with events in flight");
    }
    stop_admin(admin, &admin_stop, d).await;
    db.close().await;
    info!("auth-service stopped");
    api_result
        .context("users API task failed")?
        .context("users API server failed")
}

/// The URL without a password, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

/// Connects in the background (returns at once) and builds the relay's publisher.
async fn connect_and_publisher(config: &Config) -> anyhow::Result<(Connection, Publisher)> {
    let mut nats = config.nats.clone();
    nats.name.get_or_insert_with(|| SOURCE.to_owned());
    let conn = connect_in_background(&nats)
        .await
        .context("cannot connect to NATS")?;
    let mut pc = config.publisher.clone();
    pc.source = SOURCE.to_owned();
    pc.schemas = config
        .schemas
        .load(conn.jetstream())
        .await
        .context("cannot load the event schemas")?
        .map(Arc::new);
    let publisher = Publisher::on_connection(&conn, pc)
        .await
        .context("cannot create the publisher")?;
    Ok((conn, publisher))
}

/// Binds and starts the admin server (`/metrics`, `/healthz`, `/readyz` requiring the
/// database only: NATS may be down, the outbox holds the events).
async fn start_admin(
    config: &Config,
    conn: &Connection,
    db: &Database,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let prometheus = install_prometheus().context("cannot install the metrics recorder")?;
    let auth_stream = StreamName::new("AUTH_EVENTS").context("stream name")?;
    let db = db.clone();
    let db_check = ReadyCheck(Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.map_err(|e| format!("database: {e}")) })
    }));
    let state = AdminState::new(conn.client().clone())
        .with_prometheus(prometheus)
        .with_required_streams([auth_stream])
        .with_nats_optional()
        .with_ready_check(db_check);
    let listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot bind the admin server to {}", config.admin_listen))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = events_admin::serve_on(listener, state, stop).await {
            warn!(error = %e, "admin server failed");
        }
    }))
}

async fn stop_admin(mut admin: JoinHandle<()>, stop: &CancellationToken, d: Duration) {
    stop.cancel();
    if timeout(d, &mut admin).await.is_err() {
        warn!("admin server did not stop in time; aborted");
        admin.abort();
    }
}
