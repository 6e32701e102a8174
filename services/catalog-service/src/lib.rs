//! Run with:
//!
//! ```text
//! scripts/dev-up.sh                  # NATS, the streams, both services in the background
//! curl -sS -X POST localhost:8081/users -H 'content-type: application/json' \
//!      -d '{"email":"ada@acme.example","name":"Ada Lovelace","organization_id":"org-acme"}'
//! cargo run -p eventctl -- tail 'auth.>' --from -5m
//! curl -sS localhost:9092/catalogs/org-acme   # the projection: Ada and her workspace
//! curl -sS localhost:9092/metrics             # events_consumed_total, subscription_lag, ...
//! ```
//!
//! An example consumer: group `catalog-service` on `auth.user.*`. It keeps a projection of
//! the users of each organization, each with a default workspace made at sign-up, in its
//! database (SQLite `.data/catalog-service/catalog.db` by default, or PostgreSQL), and
//! serves it at `GET /catalogs/{org}` next to the admin routes.
//!
//! - [`projection`]: the read model and its rules (revision ordering, tombstones, supported
//!   schema majors); each event is applied together with its record in the library's
//!   [`Inbox`](events::inbox::Inbox), in one transaction: a redelivered or replayed event
//!   changes nothing;
//! - [`store`]: the `catalog_users` table (`migrations/`);
//! - [`handler`](mod@handler): the subscriber's handler; which failures are permanent (dead letter now)
//!   and which transient (retry with backoff);
//! - [`http`]: `GET /catalogs/{org}`;
//! - [`config`]: the TOML configuration;
//! - [`subscribe`] and [`run`]: the wiring `main` calls (and a daily sweep of inbox records
//!   older than the stream's max age).

pub mod config;
pub mod handler;
pub mod http;
pub mod projection;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use events::SubjectFilter;
use events::connection::{Connection, connect_in_background};
use events::dlq::DLQ_STREAM;
use events::names::StreamName;
use events::subscriber::{SubscribeError, Subscriber, SubscriberBuilder, SubscriberConfig};
use events_admin::{AdminState, HttpLimits, ReadyCheck, install_prometheus, serve_router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;

use crate::handler::CatalogHandler;
use crate::projection::Projection;

/// The consumer group (and the `source` of its logs and NATS connection name).
pub const GROUP: &str = "catalog-service";
/// The subjects the group consumes.
pub const FILTER: &str = "auth.user.*";
/// The stream holding them.
pub const STREAM: &str = "AUTH_EVENTS";

/// Creates (or updates to `config`) the group's durable consumer on `auth.user.*`.
///
/// # Errors
/// [`SubscribeError`] if the configuration is invalid, the stream is missing or the
/// consumer cannot be created.
pub async fn subscribe(
    js: &jetstream::Context,
    config: SubscriberConfig,
) -> Result<Subscriber, SubscribeError> {
    builder(js, config).build().await
}

/// [`subscribe`] on a connection, watching its permission denials: with an identity
/// that may not use the group's consumer it fails at once with
/// [`SubscribeError::PermissionDenied`].
///
/// # Errors
/// As [`subscribe`].
pub async fn subscribe_on(
    conn: &Connection,
    config: SubscriberConfig,
) -> Result<Subscriber, SubscribeError> {
    builder(conn.jetstream(), config)
        .denials(conn.denials().clone())
        .build()
        .await
}

fn builder(js: &jetstream::Context, config: SubscriberConfig) -> SubscriberBuilder {
    // Invariant: FILTER is a constant, valid filter (a unit test checks it).
    let filter = SubjectFilter::new(FILTER).expect("FILTER is a valid subject filter");
    Subscriber::builder(js.clone(), filter)
        .group(GROUP)
        .stream(STREAM)
        .config(config)
}

/// How long inbox records are kept: longer than the stream's max age (7 days), so that
/// no redelivery or replay of the stream can outlive its record.
pub const INBOX_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);
/// How often the inbox is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The admin port's router: `events-admin`'s routes (`/metrics`, `/healthz`, `/readyz`,
/// the admin-only DLQ API) plus `GET /catalogs/{org}`; a wrong method is 405 with a JSON
/// error on every route.
pub fn admin_router(state: AdminState, projection: Projection) -> Router {
    events_admin::router(state)
        .merge(http::routes(projection))
        .method_not_allowed_fallback(events_admin::method_not_allowed)
}

/// Wait between two tries to set up the subscription while NATS is not there.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// Consumes until `shutdown` is cancelled, then drains the subscriber (in-flight handlers
/// finish within `subscriber.drain_timeout`, the rest is redelivered later) and stops the
/// admin server within `shutdown_timeout`.
///
/// Starts while NATS is down: the admin server answers `/healthz` at once and `/readyz`
/// says not ready; the client connects in the background and the subscription is set up
/// (retried every second) once NATS and `AUTH_EVENTS` are there.
///
/// Events are validated against `config.schemas` before the handler runs (loaded at
/// start: from the registry, NATS must answer then).
///
/// # Errors
/// If the database cannot be opened, the NATS configuration is invalid, the schemas cannot
/// be read, the admin port cannot be bound, or the server denies the group's consumer to
/// this identity.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = store::open(&config.database)
        .await
        .context("cannot open the catalog database")?;
    let projection = Projection::new(db.clone(), GROUP);
    let mut nats = config.nats.clone();
    nats.name.get_or_insert_with(|| GROUP.to_owned());
    let conn = connect_in_background(&nats)
        .await
        .context("cannot connect to NATS")?;
    let js = conn.jetstream().clone();
    config.subscriber.schemas = config
        .schemas
        .load(&js)
        .await
        .context("cannot load the event schemas")?
        .map(Arc::new);

    let prometheus = install_prometheus().context("cannot install the metrics recorder")?;
    let required = [STREAM, DLQ_STREAM]
        .map(|s| StreamName::new(s).context("stream name"))
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state = AdminState::new(conn.client().clone())
        .with_prometheus(prometheus)
        .with_required_streams(required)
        .with_ready_check(db_check(&projection));
    let listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot bind the admin server to {}", config.admin_listen))?;
    let admin_stop = CancellationToken::new();
    let app = admin_router(state, projection.clone());
    let mut admin = tokio::spawn(serve_router(
        listener,
        app,
        HttpLimits::default(),
        admin_stop.clone(),
    ));

    let sweeper = tokio::spawn(sweep_inbox(projection.clone(), shutdown.clone()));
    let (ready, mut result) = match set_up(&conn, &config, &shutdown).await {
        Ok(ready) => (ready, Ok(())),
        Err(e) => (None, Err(e)),
    };
    if let Some(subscriber) = ready {
        info!(
            group = GROUP,
            filter = FILTER,
            consumer = subscriber.durable_name(),
            admin = %config.admin_listen,
            "catalog-service consuming"
        );
        let drain_timeout = config.subscriber.drain_timeout;
        let handler = CatalogHandler::new(projection.clone());
        let consumer = tokio::spawn(subscriber.run(handler, shutdown.clone()));
        if consume(consumer, &shutdown, drain_timeout).await {
            result = Err(anyhow::anyhow!(
                "the server denies this identity's pulls on consumer {}; fix its permissions",
                events::subscriber::durable_name(GROUP, &SubjectFilter::new(FILTER)?)?
            ));
        }
    }
    shutdown.cancel();
    if timeout(config.shutdown_timeout, sweeper).await.is_err() {
        warn!("inbox sweep did not stop in time");
    }
    admin_stop.cancel();
    if timeout(config.shutdown_timeout, &mut admin).await.is_err() {
        warn!("admin server did not stop in time; aborted");
        admin.abort();
    }
    db.close().await;
    info!("catalog-service stopped");
    result
}

/// `/readyz` also requires the database.
fn db_check(projection: &Projection) -> ReadyCheck {
    let db = projection.db().clone();
    ReadyCheck(Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.map_err(|e| format!("database: {e}")) })
    }))
}

/// Deletes inbox records older than [`INBOX_RETENTION`] at start and then hourly, until
/// `shutdown`.
async fn sweep_inbox(projection: Projection, shutdown: CancellationToken) {
    loop {
        match projection
            .inbox()
            .sweep(projection.db(), INBOX_RETENTION)
            .await
        {
            Ok(n) if n > 0 => info!(deleted = n, "inbox swept"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "inbox sweep failed; next try in an hour"),
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// The subscription, retried until it is set up (NATS may not be there yet); `None` if
/// `shutdown` comes first; an error, not a retry, when the server denies the consumer to
/// this identity.
async fn set_up(
    conn: &Connection,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Subscriber>> {
    let bound = config.nats.request_timeout;
    loop {
        let attempt = async {
            subscribe_on(conn, config.subscriber.clone())
                .await
                .context("cannot subscribe")
        };
        let res = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(None),
            res = timeout(bound, attempt) => res,
        };
        match res {
            Ok(Ok(ready)) => return Ok(Some(ready)),
            Ok(Err(e)) if is_denied(&e) => return Err(e),
            Ok(Err(e)) => warn!(error = %format!("{e:#}"), "not consuming yet; retrying"),
            Err(_) => warn!(timeout = ?bound, "NATS did not answer the setup; retrying"),
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(SETUP_RETRY) => {}
        }
    }
}

/// True if the server refused the subscription's setup for permissions: no retry helps.
fn is_denied(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<SubscribeError>(),
        Some(SubscribeError::PermissionDenied { .. })
    )
}

/// Waits for `shutdown` (or the subscriber ending on its own), then drains it; true if the
/// subscriber stopped because the server denied its pulls.
async fn consume(
    mut consumer: JoinHandle<events::subscriber::DrainReport>,
    shutdown: &CancellationToken,
    drain_timeout: Duration,
) -> bool {
    // `run` returns only after `shutdown` is cancelled; a panic would end it earlier.
    let ended_early = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        res = &mut consumer => Some(res),
    };
    shutdown.cancel();
    let drained = match ended_early {
        Some(res) => {
            warn!("subscriber stopped on its own");
            Ok(res)
        }
        None => {
            info!("shutting down: draining the subscriber");
            // The subscriber bounds its drain by `drain_timeout`; the margin covers acks.
            timeout(drain_timeout + Duration::from_secs(5), &mut consumer).await
        }
    };
    match drained {
        Ok(Ok(report)) => {
            info!(?report, "subscriber drained");
            report.denied
        }
        Ok(Err(e)) => {
            warn!(error = %e, "subscriber task failed");
            false
        }
        Err(_) => {
            warn!("subscriber did not drain in time; aborted (unsettled messages are redelivered)");
            consumer.abort();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_setup_is_not_retried() {
        let denial = events::connection::Denial {
            operation: events::connection::DeniedOperation::Publish,
            subject: "$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x".into(),
            at: std::time::Instant::now(),
        };
        let denied = anyhow::Error::new(SubscribeError::PermissionDenied {
            consumer: "x".into(),
            source: denial.into(),
        })
        .context("cannot subscribe");
        assert!(is_denied(&denied));
        assert!(!is_denied(&anyhow::anyhow!("NATS is not there yet")));
    }

    #[test]
    fn the_filter_is_valid_and_matches_the_user_events() {
        let f = SubjectFilter::new(FILTER).unwrap();
        assert!(f.matches("auth.user.created"));
        assert!(!f.matches("auth.organization.created"));
        StreamName::new(STREAM).unwrap();
    }
}
