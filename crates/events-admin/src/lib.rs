//! Admin HTTP server for the `events` library (axum): the dead-letter API and the audit
//! trail, by token role, and the operational endpoints. Mounted by `eventctl serve`;
//! embeddable in any service.
//!
//! | route | least role |
//! | --- | --- |
//! | `GET /api/v1/events/dlq` (filters and `after`/`limit` as query parameters) | viewer |
//! | `GET /api/v1/events/dlq/{seq}` | viewer |
//! | `GET /api/v1/audit` (`?limit=N`) | viewer |
//! | `POST /api/v1/events/dlq/{seq}/replay` (`?dry_run=true`) | operator |
//! | `POST /api/v1/events/dlq/replay` (JSON `{ filter, max_count, dry_run }`) | operator |
//! | `DELETE /api/v1/events/dlq/{seq}` | admin |
//! | `POST /api/v1/events/dlq/purge` (JSON `{ filter }` or `{ "all": true }`) | admin |
//! | `GET /api/v1/events/schemas` (discovery document), `GET /api/v1/events/schemas/{type}/{version}` | open |
//! | `GET /metrics`, `GET /healthz`, `GET /readyz` | open |
//! | `/ui` and below: the operator console (docs/CONSOLE.md) | a session from an admin token |
//!
//! Token requests carry `Authorization: Bearer <token>`. Tokens are configured as
//! SHA-256 hashes with an id and a [`Role`] ([`AdminToken`], [`hash_token`]) and compared
//! in constant time. With no token configured every DLQ request is refused (403, fail
//! closed); a missing or wrong token is 401; a request beyond the token's role is 403
//! ([`roles`](Role)). Replays, deletes and purges are rate limited per token ([`RateLimit`],
//! 429 with `Retry-After`) and each is recorded in the durable audit trail ([`AuditLog`],
//! stream `ADMIN_AUDIT`). Errors are JSON: `{ "error": { "code", "message" } }`.
//!
//! # Configuring admin tokens
//!
//! Only the SHA-256 of a token is configured, as `<id>:<role>:<hex>`
//! ([`AdminToken::parse`]; `<id>:<hex>` is an `admin`), one per line in a token file
//! readable by its owner only ([`load_token_file`]); the id names who acted in the audit
//! trail. To make one:
//!
//! ```text
//! $ TOKEN=$(openssl rand -hex 32)     # give this to the operator, store it nowhere else
//! $ printf %s "$TOKEN" | sha256sum | cut -d' ' -f1
//! # or: printf %s "$TOKEN" | cargo run -q -p events-admin --example hash_token -- ops admin
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

mod audit;
mod audit_api;
mod auth;
mod dlq;
mod error;
mod ops;
mod rate_limit;
mod roles;
mod schemas;
mod token_file;
mod ui;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use events::dlq::{DLQ_STREAM, DeadLetters};
use events::names::StreamName;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

pub use audit::{
    AUDIT_STREAM, AUDIT_SUBJECT, AuditEntry, AuditError, AuditLog, AuditRecord, MAX_AUDIT_READ,
};
pub use auth::{Admin, AdminToken, TokenError, hash_token};
pub use dlq::{DEFAULT_PAGE_SIZE, DEFAULT_REPLAY_BATCH, MAX_PAGE_SIZE, MAX_REPLAY_BATCH};
pub use error::ApiError;
pub use rate_limit::RateLimit;
pub use roles::{Action, Role, UnknownRole};
pub use schemas::{
    DiscoveredType, DiscoveredVersion, Discovery, SCHEMAS_PATH, SchemaDirectory, TypeParties,
};
pub use token_file::{TokenFileError, load_token_file, parse_tokens};
pub use ui::{MAX_LIVE_TAILS, MAX_RUNNING_REPLAYS};

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
    /// Counter `events_admin_audit_failures_total`: audit records that could not be
    /// stored (each also logged at `error` with its fields).
    pub const ADMIN_AUDIT_FAILURES_TOTAL: &str = "events_admin_audit_failures_total";
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
    audit: AuditLog,
    limiter: rate_limit::RateLimiter,
    schemas: Option<SchemaDirectory>,
    /// False for a service that keeps serving while NATS is down (an outbox producer).
    nats_required: bool,
    ready_checks: Vec<ReadyCheck>,
}

/// An extra `/readyz` condition: `Err(problem)` makes the service not ready, naming it.
#[derive(Clone)]
pub struct ReadyCheck(
    pub Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>,
);

impl std::fmt::Debug for ReadyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyCheck")
    }
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
                audit: AuditLog::new(js.clone()),
                client,
                js,
                tokens: Vec::new(),
                prometheus: None,
                required_streams: vec![DLQ_STREAM.to_owned()],
                nats_required: true,
                ready_checks: Vec::new(),
                limiter: rate_limit::RateLimiter::new(RateLimit::default()),
                schemas: None,
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

    /// Limits each token's mutating requests (default [`RateLimit::default`]).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.inner_mut().limiter = rate_limit::RateLimiter::new(limit);
        self
    }

    /// The audit trail actions are recorded in.
    pub fn audit_log(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Lets `admin` do `action`: its role must allow it (403 otherwise); a mutating action
    /// takes one request from the token's rate limit (429 with `Retry-After`) and needs
    /// the audit trail to be reachable (503 `audit_unavailable` otherwise: nothing is done
    /// that could not be recorded). Every admin surface calls this before acting.
    ///
    /// # Errors
    /// The [`ApiError`] to answer with.
    pub async fn admit(&self, admin: &Admin, action: Action) -> Result<(), ApiError> {
        admin.require(action)?;
        if !action.is_mutating() {
            return Ok(());
        }
        self.inner.limiter.check(&admin.token_id)?;
        self.inner.audit.check().await.map_err(|e| {
            tracing::error!(error = %events::error_chain(&e), action = action.as_str(), "audit trail unreachable: admin action refused");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                format!(
                    "the audit trail ({AUDIT_STREAM}) cannot be reached, so nothing was changed: {}",
                    events::error_chain(&e)
                ),
            )
        })
    }

    /// Stores `record` in the audit trail; false (logged at `error` with every field,
    /// counted) if it could not be stored.
    pub async fn audit(&self, record: &AuditRecord) -> bool {
        match self.inner.audit.record(record).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %events::error_chain(&e), ?record, "admin action NOT recorded in the audit trail");
                metrics::counter!(metric_names::ADMIN_AUDIT_FAILURES_TOTAL).increment(1);
                false
            }
        }
    }

    /// `/readyz` no longer requires NATS or the streams, only the extra checks: for a
    /// service that keeps working while NATS is down (a producer with a transactional
    /// outbox, whose relay catches up when NATS is back).
    pub fn with_nats_optional(mut self) -> Self {
        self.inner_mut().nats_required = false;
        self
    }

    /// Adds a condition to `/readyz` (e.g. the service's database answers).
    pub fn with_ready_check(mut self, check: ReadyCheck) -> Self {
        self.inner_mut().ready_checks.push(check);
        self
    }

    /// Uses this dead-letter access (another stream, other timeouts).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.inner_mut().dead_letters = dead_letters;
        self
    }

    /// Serves `schemas` at `/api/v1/events/schemas` (discovery document and schema
    /// documents); without it those routes answer 404.
    pub fn with_schemas(mut self, schemas: SchemaDirectory) -> Self {
        self.inner_mut().schemas = Some(schemas);
        self
    }

    pub(crate) fn schemas(&self) -> Option<&SchemaDirectory> {
        self.inner.schemas.as_ref()
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

    pub(crate) fn nats_required(&self) -> bool {
        self.inner.nats_required
    }

    pub(crate) fn ready_checks(&self) -> &[ReadyCheck] {
        &self.inner.ready_checks
    }
}

/// The admin router: DLQ API (admin only), the schema discovery routes and the open
/// operational routes.
pub fn router(state: AdminState) -> Router {
    let dlq = dlq::routes().layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    let audit = audit_api::routes().layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1/events/dlq", dlq)
        .nest("/api/v1/audit", audit)
        .nest(SCHEMAS_PATH, schemas::routes())
        // The operator console (issue #15): its own session check on every page.
        .merge(ui::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn(tag_route))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// 405 with a JSON body (axum's own answer has none), for any router of this project:
/// `router.method_not_allowed_fallback(events_admin::method_not_allowed)`.
pub async fn method_not_allowed(request: Request) -> Response {
    let message = format!("method {} is not allowed here", request.method());
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
    .into_response()
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

/// As [`serve`] on an already bound listener (e.g. port 0 in tests), with the default
/// [`HttpLimits`].
///
/// # Errors
/// None today; the `Result` leaves room for [`ServeError::Serve`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin server listening");
    }
    serve_router(listener, router(state), HttpLimits::default(), shutdown).await
}

/// What an HTTP server of this project grants one client, so that idle, half-sent or slow
/// connections cannot exhaust it (issue #10, item 8). The admin server and the example
/// services all serve through [`serve_router`] with these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// A request's start line and headers must arrive within this, or the connection is
    /// closed. hyper arms this timer whenever it waits for a request head, so it also
    /// closes a keep-alive connection that sends nothing.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    pub idle_timeout: Duration,
    /// A request (its body and its handler) must be answered within this; after it the
    /// answer is 408 `request_timeout`.
    pub request_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog until one closes.
    /// Lowered at start to fit the open-files soft limit (minus [`FD_RESERVE`]).
    pub max_connections: usize,
}

/// File descriptors kept free of client connections (NATS, logs, the spool, ...).
pub const FD_RESERVE: u64 = 256;

impl Default for HttpLimits {
    /// 10 s to send a request head, 60 s of keep-alive idle, 30 s per request, 50,000
    /// connections.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 50_000,
        }
    }
}

impl HttpLimits {
    /// These limits with another header-read timeout.
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// These limits with another keep-alive idle timeout.
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// These limits with another request timeout.
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// These limits with another connection cap.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The cap in force: `max_connections`, lowered to fit the open-files soft limit.
    fn connection_cap(&self) -> usize {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let fit = soft.map_or(usize::MAX, |s| {
            usize::try_from(s.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
        });
        self.max_connections.min(fit).max(1)
    }
}

/// Raises this process's open-files soft limit (`RLIMIT_NOFILE`) to its hard limit, so
/// that many clients cannot make `accept` fail with "Too many open files". Binaries call
/// it once at start. Returns the soft limit now in force (`None`: unlimited).
///
/// # Errors
/// If the limit cannot be set.
pub fn raise_open_files_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(limit.maximum)
}

/// Serves `app` on `listener` under `limits` (HTTP/1.1) until `shutdown` is cancelled,
/// then stops accepting, lets each connection finish its current request (bounded by the
/// request timeout) and returns. The one serve loop of the admin server and the services.
///
/// # Errors
/// None today; the `Result` leaves room for [`ServeError::Serve`].
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let cap = limits.connection_cap();
    tracing::debug!(max_connections = cap, ?limits, "serving HTTP");
    let slots = Arc::new(Semaphore::new(cap));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the cap makes it rare.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let conn = serve_connection(stream, app.clone(), limits, shutdown.clone());
        connections.spawn(async move {
            conn.await;
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Wait after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
}

impl Activity {
    /// When the connection will have been idle for `idle`, if nothing starts before.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        let last = self
            .last_done
            .lock()
            .map_or_else(|p| *p.into_inner(), |l| *l);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + idle
        } else {
            last + idle
        }
    }

    fn is_idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.idle_deadline(idle) <= Instant::now()
    }

    fn end(&self) {
        if let Ok(mut last) = self.last_done.lock() {
            *last = Instant::now();
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection: hyper's HTTP/1 with the header-read timer, closed when idle for
/// `idle_timeout` or on shutdown (after its current request, at most `request_timeout`).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_done: Mutex::new(Instant::now()),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            let (app, activity) = (app.clone(), activity.clone());
            async move {
                let res = answer(app, req.map(Body::new), limits.request_timeout).await;
                activity.end();
                Ok::<_, std::convert::Infallible>(res)
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut hard_stop: Option<Instant> = None;
    loop {
        let wake = hard_stop.unwrap_or_else(|| activity.idle_deadline(limits.idle_timeout));
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if hard_stop.is_none() => {
                conn.as_mut().graceful_shutdown();
                hard_stop = Some(Instant::now() + limits.request_timeout);
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if hard_stop.is_some() {
                    return; // still not done after its last request's bound: drop it
                }
                if activity.is_idle_for(limits.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    hard_stop = Some(Instant::now() + limits.request_timeout);
                }
            }
        }
    }
}

/// The router's answer, or 408 `request_timeout` when it takes longer than `limit`.
async fn answer(app: Router, req: Request, limit: Duration) -> Response {
    match tokio::time::timeout(limit, app.oneshot(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(never)) => match never {},
        Err(_) => ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("request not answered within {limit:?}"),
        )
        .into_response(),
    }
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
