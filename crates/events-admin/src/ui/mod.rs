//! `/ui`: the operator console. Server-rendered HTML (maud) over the same library calls as
//! `eventctl` and the DLQ API, behind the same admin tokens.
//!
//! | route | what |
//! | --- | --- |
//! | `GET/POST /ui/login`, `POST /ui/logout` | a token for a session cookie ([`session`]) |
//! | `GET /ui` | streams and consumers, lag in messages and seconds, verdicts ([`overview`]) |
//! | `GET /ui/dlq`, `GET /ui/dlq/{seq}` | dead letters grouped by fingerprint; one letter ([`dlq`]) |
//! | `POST /ui/dlq/replay`, `POST /ui/dlq/purge` | dry run, replay at a rate, purge ([`replay`]) |
//! | `GET /ui/jobs/{id}`, `GET /ui/jobs/{id}/events`, `POST /ui/jobs/{id}/stop` | a replay's progress ([`replay`], [`jobs`]) |
//! | `GET /ui/tail`, `GET /ui/tail/events` | live tail over server-sent events ([`tail`]) |
//! | `GET /ui/static/{file}` | htmx (vendored), the console's script and style ([`assets`]) |
//!
//! Every page but the login redirects to it without a session; every form carries the
//! session's CSRF token and every action passes [`guard::require`]. Responses carry a
//! Content-Security-Policy without inline scripts or styles.

mod assets;
mod dlq;
mod error;
mod fingerprint;
mod form;
mod guard;
mod health;
mod jobs;
mod layout;
mod overview;
mod replay;
mod session;
mod tail;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::AdminState;

pub use jobs::MAX_RUNNING_REPLAYS;
pub use tail::MAX_LIVE_TAILS;

/// What the console keeps between requests: sessions, replay jobs, lag history. Dropped
/// with the router; its drop stops every replay job still running.
#[derive(Debug)]
pub(crate) struct Ui {
    sessions: session::Sessions,
    jobs: jobs::Jobs,
    history: Mutex<health::History>,
    /// One permit per open live tail (each holds a consumer on the server).
    tails: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The console's routes (full paths under `/ui`), to merge into the admin router.
pub(crate) fn routes() -> Router<AdminState> {
    let shutdown = CancellationToken::new();
    let ui = Arc::new(Ui {
        sessions: session::Sessions::default(),
        jobs: jobs::Jobs::new(shutdown.clone()),
        history: Mutex::new(health::History::default()),
        tails: Arc::new(tokio::sync::Semaphore::new(tail::MAX_LIVE_TAILS)),
        shutdown,
    });
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(overview::page))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/dlq", get(dlq::groups_page))
        .route("/ui/dlq/replay", post(replay::replay))
        .route("/ui/dlq/purge", post(replay::purge))
        .route("/ui/dlq/{seq}", get(dlq::letter_page))
        .route("/ui/jobs/{id}", get(replay::job_page))
        .route("/ui/jobs/{id}/events", get(replay::job_events))
        .route("/ui/jobs/{id}/stop", post(replay::stop_job))
        .route("/ui/tail", get(tail::page))
        .route("/ui/tail/events", get(tail::events))
        .route("/ui/static/{file}", get(assets::file))
        .layer(axum::Extension(ui))
        .layer(middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every console response: scripts, styles and connections
/// from this origin only; no inline script or style, no frames, forms post here only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}
