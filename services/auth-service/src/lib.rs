//! Run with:
//!
//! ```text
//! scripts/dev-up.sh                  # nats-server + the streams of deploy/streams.toml
//! cargo run -p catalog-service       # second terminal: the consumer
//! cargo run -p auth-service          # third terminal: this producer (API on 127.0.0.1:8081)
//! curl -sS -X POST localhost:8081/users -H 'content-type: application/json' \
//!      -d '{"email":"ada@acme.example","name":"Ada Lovelace","organization_id":"org-acme"}'
//! cargo run -p eventctl -- tail 'auth.>' --from -5m
//! curl -sS localhost:9092/catalogs/org-acme   # catalog-service's projection
//! curl -sS localhost:9092/metrics             # catalog-service's metrics
//! curl -sS localhost:9091/metrics             # this service's: events_published_total, ...
//! cargo run -p auth-service -- --simulate 100 # publish 100 sign-ups, then exit
//! ```
//!
//! An example producer: a tiny user service. Each change of a user publishes the event
//! `docs/EVENT_CATALOG.md` describes (`auth.user.created`, `auth.user.updated`,
//! `auth.user.deleted`) through the library's [`Publisher`],
//! and is committed only once the stream has acknowledged it.
//!
//! - [`users`]: validation, the in-memory store and the publishing logic, behind the
//!   [`EventPublisher`](events::publisher::EventPublisher) trait so that it is unit-tested
//!   with a [`RecordingPublisher`](events::publisher::RecordingPublisher);
//! - [`schema`]: the event payloads and envelopes;
//! - [`http`]: the axum routes;
//! - [`config`]: the TOML configuration;
//! - [`run`] and [`simulate`]: the wiring `main` calls (connect, publisher, admin server on
//!   127.0.0.1:9091, graceful shutdown).

pub mod config;
pub mod http;
pub mod schema;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::connection::{Connection, connect, connect_in_background};
use events::names::StreamName;
use events::publisher::Publisher;
use events_admin::{AdminState, HttpLimits, ServeError, install_prometheus, serve_router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;

use crate::schema::SOURCE;
use crate::users::{NewUser, UserService};

/// Serves the users API and the admin server until `shutdown` is cancelled, then stops
/// accepting requests, lets in-flight ones finish, flushes and closes the publisher, and
/// stops the admin server; each step is bounded by `config.shutdown_timeout`.
///
/// Starts while NATS is down: the client connects in the background, `/healthz` answers,
/// `/readyz` says not ready until NATS and `AUTH_EVENTS` are there, and sign-ups go to the
/// publisher's spool if one is configured (otherwise they answer 202, outcome unknown, or
/// 503; see [`users`]). Both servers run under [`events_admin::HttpLimits`].
///
/// Every event is validated against `config.schemas` before it is published (loaded at
/// start: from the registry, NATS must answer then).
///
/// # Errors
/// If the NATS configuration is invalid, the schemas cannot be loaded, a port cannot be
/// bound, or the API server fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (conn, publisher) = connect_and_publisher(&config, Connect::InBackground).await?;
    let users = Arc::new(UserService::new(Arc::new(publisher.clone())));

    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot bind the users API to {}", config.listen))?;
    let admin_stop = CancellationToken::new();
    let admin = start_admin(&config, &conn, admin_stop.clone()).await?;
    info!(listen = %config.listen, admin = %config.admin_listen, "auth-service ready");

    let api_stop = shutdown.clone();
    let mut api: JoinHandle<Result<(), ServeError>> = tokio::spawn(serve_router(
        api_listener,
        http::router(users),
        HttpLimits::default(),
        api_stop,
    ));
    let ended_early = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        res = &mut api => Some(res), // a completed JoinHandle must not be polled again
    };

    // Shutdown: stop accepting and finish in-flight requests, flush the publisher, stop the
    // admin server last (so /metrics and /readyz answer while draining).
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
    if let Err(e) = publisher.close(d).await {
        warn!(error = %e, "publisher closed with events in flight");
    }
    stop_admin(admin, &admin_stop, d).await;
    info!("auth-service stopped");
    api_result
        .context("users API task failed")?
        .context("users API server failed")
}

/// Publishes `n` sign-ups in `organization` (as `POST /users` would), then closes the
/// publisher. Stops early when `shutdown` is cancelled.
///
/// # Errors
/// If NATS cannot be reached or a publish fails.
pub async fn simulate(
    config: Config,
    n: u32,
    organization: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (_conn, publisher) = connect_and_publisher(&config, Connect::Bounded).await?;
    let users = UserService::new(Arc::new(publisher.clone()));
    let run_id = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let mut result = Ok(());
    for i in 1..=n {
        if shutdown.is_cancelled() {
            warn!(published = i - 1, "interrupted");
            break;
        }
        let new = NewUser {
            email: Some(format!("sim-{run_id}-{i}@{organization}.example")),
            name: Some(format!("Simulated User {i}")),
            organization_id: Some(organization.to_owned()),
            roles: None,
        };
        match users.create(new).await {
            Ok((user, event)) => println!(
                "{} {} {} seq={}",
                event.event_type,
                user.id,
                user.email,
                event
                    .sequence
                    .map_or_else(|| "spooled".into(), |s| s.to_string())
            ),
            Err(e) => {
                result = Err(anyhow::Error::new(e).context(format!("sign-up {i} of {n}")));
                break;
            }
        }
    }
    if let Err(e) = publisher.close(config.shutdown_timeout).await {
        warn!(error = %e, "publisher closed with events in flight");
    }
    result
}

/// How [`connect_and_publisher`] connects.
#[derive(Clone, Copy)]
enum Connect {
    /// Fail within the connect timeout if no server answers (`--simulate`).
    Bounded,
    /// Return at once and connect when a server answers (the service).
    InBackground,
}

async fn connect_and_publisher(
    config: &Config,
    how: Connect,
) -> anyhow::Result<(Connection, Publisher)> {
    let mut nats = config.nats.clone();
    nats.name.get_or_insert_with(|| SOURCE.to_owned());
    let conn = match how {
        Connect::Bounded => connect(&nats).await,
        Connect::InBackground => connect_in_background(&nats).await,
    }
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

/// Binds and starts the admin server (`/metrics`, `/healthz`, `/readyz` requiring
/// `AUTH_EVENTS`).
async fn start_admin(
    config: &Config,
    conn: &Connection,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let prometheus = install_prometheus().context("cannot install the metrics recorder")?;
    let auth_stream = StreamName::new("AUTH_EVENTS").context("stream name")?;
    let state = AdminState::new(conn.client().clone())
        .with_prometheus(prometheus)
        .with_required_streams([auth_stream]);
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
