//! Admin HTTP server for the `events` library (axum): the dead-letter API, admin only, and
//! the operational endpoints. Mounted by `eventctl serve`; embeddable in any service.
//!
//! | route | access |
//! | --- | --- |
//! | `GET /api/v1/events/dlq` (filters and `after`/`limit` as query parameters) | admin |
//! | `GET /api/v1/events/dlq/{seq}` | admin |
//! | `POST /api/v1/events/dlq/{seq}/replay` (`?dry_run=true`) | admin |
//! | `POST /api/v1/events/dlq/replay` (JSON `{ filter, max_count, dry_run }`) | admin |
//! | `DELETE /api/v1/events/dlq/{seq}` | admin |
//! | `GET /metrics`, `GET /healthz`, `GET /readyz` | open |
//!
//! Admin requests carry `Authorization: Bearer <token>`. Tokens are configured as
//! SHA-256 hashes with an id ([`AdminToken`], [`hash_token`]) and compared in constant
//! time. With no token configured every DLQ request is refused (403, fail closed); a
//! missing or wrong token is 401. Errors are JSON: `{ "error": { "code", "message" } }`.
//! Each replay and delete is logged with the token id and the dead letter.
//!
//! # Configuring admin tokens
//!
//! Only the SHA-256 of a token is configured, as `<id>:<hex>` ([`AdminToken::parse`]); the
//! id names who acted in the audit log. To make one:
//!
//! ```text
//! $ TOKEN=$(openssl rand -hex 32)     # give this to the operator, store it nowhere else
//! $ printf %s "$TOKEN" | sha256sum | cut -d' ' -f1
//! # or: printf %s "$TOKEN" | cargo run -q -p events-admin --example hash_token -- ops
//! ```
//!
//! [`hash_token`] computes the same value in code.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use events_admin::{AdminState, AdminToken, install_prometheus, serve};
//! use tokio_util::sync::CancellationToken;
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let state = AdminState::new(client)
//!     .with_token(AdminToken::parse(&std::env::var("EVENTS_ADMIN_TOKEN_SHA256")?)?)
//!     .with_prometheus(install_prometheus()?);
//! let shutdown = CancellationToken::new();
//! serve("127.0.0.1:9090".parse()?, state, shutdown.child_token()).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod dlq;
mod error;
mod ops;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use async_nats::jetstream;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use events::dlq::{DLQ_STREAM, DeadLetters};
use events::names::StreamName;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

pub use auth::{Admin, AdminToken, TokenError, hash_token};
pub use dlq::{DEFAULT_PAGE_SIZE, DEFAULT_REPLAY_BATCH, MAX_PAGE_SIZE, MAX_REPLAY_BATCH};
pub use error::ApiError;

/// Largest request body accepted, in bytes; larger is 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Metrics the admin server itself records (bounded labels).
pub mod metric_names {
    /// Counter `events_admin_requests_total{route,status}`: route is the matched route
    /// template (`unmatched` otherwise), status the HTTP status code.
    pub const ADMIN_REQUESTS_TOTAL: &str = "events_admin_requests_total";
    /// Counter `events_admin_dlq_actions_total{action,outcome}`: action `replay` or
    /// `delete`; outcome `ok`, `dry_run`, `not_found` or `error`.
    pub const ADMIN_DLQ_ACTIONS_TOTAL: &str = "events_admin_dlq_actions_total";
}

/// What the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminState {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    dead_letters: DeadLetters,
    tokens: Vec<AdminToken>,
    prometheus: Option<PrometheusHandle>,
    required_streams: Vec<String>,
}

impl AdminState {
    /// State over a connected client, with no admin token (the DLQ API refuses every
    /// request until one is added), no metrics, and `/readyz` requiring `DLQ_EVENTS`.
    pub fn new(client: async_nats::Client) -> Self {
        let js = jetstream::new(client.clone());
        Self::with_jetstream(client, js)
    }

    /// As [`AdminState::new`] with a given JetStream context (domain or API prefix).
    pub fn with_jetstream(client: async_nats::Client, js: jetstream::Context) -> Self {
        Self {
            inner: Arc::new(Inner {
                dead_letters: DeadLetters::new(js.clone()),
                client,
                js,
                tokens: Vec::new(),
                prometheus: None,
                required_streams: vec![DLQ_STREAM.to_owned()],
            }),
        }
    }

    /// Copy-on-write: builders run before the state is shared, so this rarely clones.
    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// Adds an admin token.
    pub fn with_token(mut self, token: AdminToken) -> Self {
        self.inner_mut().tokens.push(token);
        self
    }

    /// Adds admin tokens.
    pub fn with_tokens(mut self, tokens: impl IntoIterator<Item = AdminToken>) -> Self {
        self.inner_mut().tokens.extend(tokens);
        self
    }

    /// Renders `/metrics` from this handle (see [`install_prometheus`]). Also describes the
    /// `events` metrics to the global recorder, which should be this handle's recorder.
    pub fn with_prometheus(mut self, handle: PrometheusHandle) -> Self {
        events::metrics::describe();
        describe_admin_metrics();
        self.inner_mut().prometheus = Some(handle);
        self
    }

    /// The streams `/readyz` requires (replaces the default `DLQ_EVENTS`).
    pub fn with_required_streams(mut self, streams: impl IntoIterator<Item = StreamName>) -> Self {
        self.inner_mut().required_streams = streams.into_iter().map(|s| s.into_string()).collect();
        self
    }

    /// Uses this dead-letter access (another stream, other timeouts).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.inner_mut().dead_letters = dead_letters;
        self
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    pub(crate) fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }

    pub(crate) fn tokens(&self) -> &[AdminToken] {
        &self.inner.tokens
    }

    pub(crate) fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.inner.prometheus.as_ref()
    }

    pub(crate) fn required_streams(&self) -> &[String] {
        &self.inner.required_streams
    }
}

/// The admin router: DLQ API (admin only) and the open operational routes.
pub fn router(state: AdminState) -> Router {
    let dlq = dlq::routes().layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1/events/dlq", dlq)
        .fallback(ops::not_found)
        .route_layer(middleware::from_fn(tag_route))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// The matched route template, carried on the response to the request counter (which
/// runs outside routing, so that unmatched requests are counted too).
#[derive(Clone)]
struct RouteTag(String);

async fn tag_route(request: Request, next: Next) -> Response {
    let tag = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| RouteTag(p.as_str().to_owned()));
    let mut response = next.run(request).await;
    if let Some(tag) = tag {
        response.extensions_mut().insert(tag);
    }
    response
}

/// Counts every request by route template and status.
async fn count_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTag>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!(
        metric_names::ADMIN_REQUESTS_TOTAL,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("failed to bind the admin server to {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("admin server failed")]
    Serve(#[source] std::io::Error),
}

/// Serves [`router`] on `addr` until `shutdown` is cancelled, then finishes in-flight
/// requests (graceful shutdown) and returns.
///
/// # Errors
/// [`ServeError::Bind`], [`ServeError::Serve`].
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, state, shutdown).await
}

/// As [`serve`] on an already bound listener (e.g. port 0 in tests).
///
/// # Errors
/// [`ServeError::Serve`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin server listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(ServeError::Serve)
}

/// Installs a Prometheus recorder as the process's global `metrics` recorder (once; later
/// calls return the same handle), describes the `events` metrics, and returns the handle
/// to give to [`AdminState::with_prometheus`].
///
/// # Errors
/// If another global recorder was installed first.
pub fn install_prometheus() -> Result<PrometheusHandle, metrics::SetRecorderError<()>> {
    static HANDLE: OnceLock<Result<PrometheusHandle, ()>> = OnceLock::new();
    let result = HANDLE.get_or_init(|| {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => {
                events::metrics::describe();
                describe_admin_metrics();
                Ok(handle)
            }
            Err(_) => Err(()),
        }
    });
    result.clone().map_err(|()| metrics::SetRecorderError(()))
}

/// A Prometheus builder with [`events::metrics::SECONDS_BUCKETS`] set for the library's
/// histograms, so they render as histograms (`_bucket` series) rather than summaries.
pub fn prometheus_builder() -> PrometheusBuilder {
    events::metrics::HISTOGRAMS
        .iter()
        .fold(PrometheusBuilder::new(), |b, name| {
            // Invariant: SECONDS_BUCKETS is a non-empty constant, the only error case.
            b.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full((*name).to_owned()),
                events::metrics::SECONDS_BUCKETS,
            )
            .expect("bucket list is not empty")
        })
}

fn describe_admin_metrics() {
    metrics::describe_counter!(
        metric_names::ADMIN_REQUESTS_TOTAL,
        "Admin API requests, by route and status"
    );
    metrics::describe_counter!(
        metric_names::ADMIN_DLQ_ACTIONS_TOTAL,
        "Dead-letter replays and deletes through the admin API, by outcome"
    );
}
