//! Console sessions: the login form exchanges an admin token for a session cookie
//! (HttpOnly, SameSite=Strict, Secure behind HTTPS); the [`Session`] extractor sends every
//! request without one to the login page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Ui;
use super::error::UiError;
use super::guard::{self, Action};
use super::layout;
use crate::AdminState;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "events_session";
/// Name of the cookie that carries the login form's CSRF token (before any session).
const LOGIN_CSRF_COOKIE: &str = "events_login_csrf";
/// How long a session lasts after login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept; past it the one closest to expiry is dropped.
const MAX_SESSIONS: usize = 10_000;

/// A logged-in operator (the token they logged in with) and the CSRF token every form of
/// theirs must carry.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) token_id: String,
    pub(crate) csrf: String,
}

#[derive(Debug)]
struct Entry {
    session: Session,
    expires: Instant,
}

/// The sessions, keyed by the SHA-256 of their cookie value (a leaked store does not leak
/// cookies).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Sessions {
    /// A new session for `token_id`; returns the cookie value.
    fn create(&self, token_id: &str) -> String {
        let cookie = random_hex();
        let now = Instant::now();
        let entry = Entry {
            session: Session {
                token_id: token_id.to_owned(),
                csrf: random_hex(),
            },
            expires: now + SESSION_TTL,
        };
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| e.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(k) = map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k)
        {
            map.remove(&k);
        }
        map.insert(key(&cookie), entry);
        cookie
    }

    fn get(&self, cookie: &str) -> Option<Session> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key(cookie))
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.session.clone())
    }

    fn remove(&self, cookie: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key(cookie));
    }
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// 32 random bytes from the thread's CSPRNG, hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True if both strings are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The console's state, put on its routes as an extension.
pub(crate) fn ui_of(parts: &Parts) -> Result<Arc<Ui>, UiError> {
    parts
        .extensions
        .get::<Arc<Ui>>()
        .cloned()
        .ok_or_else(|| UiError::internal("console state missing"))
}

impl FromRequestParts<AdminState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let ui = ui_of(parts).map_err(IntoResponse::into_response)?;
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|c| ui.sessions.get(c))
            // A token removed from the configuration ends its sessions.
            .filter(|s| state.tokens().iter().any(|t| t.id() == s.token_id));
        session.ok_or_else(|| to_login(parts))
    }
}

/// 303 to the login page, remembering the page asked for (GET only).
fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path();
    if parts.method == axum::http::Method::GET && path.starts_with("/ui") {
        let next = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
        Redirect::to(&format!("/ui/login?next={next}")).into_response()
    } else {
        Redirect::to("/ui/login").into_response()
    }
}

/// `next` of the login form: a console page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui",
    }
}

fn cookie_header(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    // Invariant: names are constants and values hex, so the header is visible ASCII.
    HeaderValue::from_str(&v).expect("cookie header is ASCII")
}

/// Served over TLS: directly (`https` URI) or behind a proxy that says so.
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextParam {
    next: Option<String>,
}

/// The login form, with a fresh CSRF token in a cookie of its own.
pub(crate) async fn login_page(headers: HeaderMap, Query(q): Query<NextParam>) -> Response {
    login_form(&headers, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn login_form(
    headers: &HeaderMap,
    next: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = random_hex();
    let body = html! {
        h1 { "Log in" }
        @if let Some(p) = problem { p.error role="alert" { (p) } }
        form method="post" action="/ui/login" {
            input type="hidden" name="_csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button #login type="submit" { "Log in" }
        }
        p.hint { "The token of an admin token entry (" code { "<id>:<sha256>" } ") configured on this server." }
    };
    let mut r = (status, layout::page("Log in", None, body)).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(
            LOGIN_CSRF_COOKIE,
            &csrf,
            "/ui/login",
            3600,
            is_https(headers),
        ),
    );
    r
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
    next: Option<String>,
}

/// Checks the token as the API does ([`crate::auth::authenticate`]); on success a session
/// cookie and 303 to the page asked for.
pub(crate) async fn login(
    State(state): State<AdminState>,
    axum::Extension(ui): axum::Extension<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(expected, &form.csrf) {
        return UiError::csrf().into_response();
    }
    if state.tokens().is_empty() {
        let msg = "the console is disabled: no admin token is configured on this server";
        return login_form(&headers, &next, Some(msg), StatusCode::FORBIDDEN);
    }
    let Some(token) = crate::auth::authenticate(state.tokens(), form.token.trim()) else {
        tracing::warn!("console login with an unknown token refused");
        return login_form(
            &headers,
            &next,
            Some("invalid token"),
            StatusCode::UNAUTHORIZED,
        );
    };
    let cookie = ui.sessions.create(token.id());
    tracing::info!(token_id = %token.id(), "console login");
    let mut r = Redirect::to(&next).into_response();
    let secure = is_https(&headers);
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie_header(
            SESSION_COOKIE,
            &cookie,
            "/ui",
            SESSION_TTL.as_secs(),
            secure,
        ),
    );
    h.append(
        header::SET_COOKIE,
        cookie_header(LOGIN_CSRF_COOKIE, "", "/ui/login", 0, secure),
    );
    r
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// Ends the session (CSRF-checked like every form).
pub(crate) async fn logout(
    session: Session,
    axum::Extension(ui): axum::Extension<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    guard::require(&session, Action::Logout, Some(&form.csrf))?;
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        ui.sessions.remove(c);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, "", "/ui", 0, is_https(&headers)),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; events_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "events"), None);
    }

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/ui/dlq")), "/ui/dlq");
        for bad in ["https://evil", "//evil/ui", "/api", "/ui//evil", "/ui\\x"] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad}");
        }
    }

    #[test]
    fn sessions_expire_on_removal_and_are_keyed_by_hash() {
        let s = Sessions::default();
        let c = s.create("ops");
        assert_eq!(s.get(&c).map(|x| x.token_id), Some("ops".into()));
        assert!(s.get("nope").is_none());
        s.remove(&c);
        assert!(s.get(&c).is_none());
    }
}
