//! The console's gate without a browser: sessions, redirects, CSRF, the CSP header, and the
//! admin API's roles, rate limit and audit trail on every console action.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use events_admin::{RateLimit, router};
use tokio::time::timeout;
use tower::ServiceExt as _;

use super::{SECRET, WAIT, admin_state, fixture, roles, write_dead_letter};

async fn send(app: &axum::Router, req: Request<Body>) -> Response {
    timeout(WAIT, app.clone().oneshot(req))
        .await
        .expect("response within bound")
        .expect("infallible")
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post_form(uri: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn location(r: &Response) -> &str {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<no location>")
}

/// `name=value` of the Set-Cookie header for `name`.
fn set_cookie(r: &Response, name: &str) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

async fn body_text(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 4 * 1024 * 1024)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// The value of the first hidden `_csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="_csrf" value=""#).expect("a CSRF field")
        + r#"name="_csrf" value=""#.len();
    page[at..].split('"').next().unwrap_or_default().to_owned()
}

/// Logs in through the form with the test's admin token; returns the session cookie
/// (`events_session=...`) and the session's CSRF token.
async fn login(app: &axum::Router) -> (String, String) {
    login_as(app, SECRET).await
}

/// [`login`] with the token `secret`.
async fn login_as(app: &axum::Router, secret: &str) -> (String, String) {
    let form = send(app, get("/ui/login", None)).await;
    let login_cookie = set_cookie(&form, "events_login_csrf");
    let csrf = csrf_of(&body_text(form).await);
    let r = send(
        app,
        post_form(
            "/ui/login",
            Some(&login_cookie),
            &format!("_csrf={csrf}&token={secret}&next=%2Fui%2Fdlq"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/dlq");
    let cookie_header = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("events_session="))
        .expect("session cookie")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie_header.contains(attr), "{cookie_header}");
    }
    assert!(
        !cookie_header.contains("Secure"),
        "plain HTTP: {cookie_header}"
    );
    let session = set_cookie(&r, "events_session");
    let page = body_text(send(app, get("/ui/dlq", Some(&session))).await).await;
    (session, csrf_of(&page))
}

#[tokio::test]
async fn console_pages_redirect_to_login_without_a_session() {
    let f = fixture().await;
    let app = router(admin_state(&f));
    for path in [
        "/ui",
        "/ui/dlq",
        "/ui/dlq/1",
        "/ui/jobs/1",
        "/ui/jobs/1/events",
        "/ui/tail",
        "/ui/tail/events?subject=auth.%3E",
    ] {
        for cookie in [None, Some("events_session=forged")] {
            let r = send(&app, get(path, cookie)).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
            assert!(
                location(&r).starts_with("/ui/login?next=%2Fui"),
                "{path}: {}",
                location(&r)
            );
        }
    }
    for path in [
        "/ui/dlq/replay",
        "/ui/dlq/purge",
        "/ui/jobs/1/stop",
        "/ui/logout",
    ] {
        let r = send(&app, post_form(path, None, "seq=1")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), "/ui/login", "{path}");
    }
    let r = send(&app, get("/ui/login", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .expect("CSP")
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let page = body_text(r).await;
    assert!(!page.contains("<script>"), "no inline script: {page}");
    let js = send(&app, get("/ui/static/htmx.min.js", None)).await;
    assert_eq!(js.status(), StatusCode::OK, "htmx is served by the binary");
}

#[tokio::test]
async fn console_login_refuses_a_wrong_token_and_a_form_without_csrf() {
    let f = fixture().await;
    let app = router(admin_state(&f));
    let form = send(&app, get("/ui/login", None)).await;
    let login_cookie = set_cookie(&form, "events_login_csrf");
    let csrf = csrf_of(&body_text(form).await);
    let wrong = send(
        &app,
        post_form(
            "/ui/login",
            Some(&login_cookie),
            &format!("_csrf={csrf}&token=wrong"),
        ),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let cookies = wrong.headers().get_all(header::SET_COOKIE);
    assert!(
        !cookies
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("events_session"))
    );
    let no_csrf = send(
        &app,
        post_form("/ui/login", Some(&login_cookie), &format!("token={SECRET}")),
    )
    .await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn console_forms_without_the_csrf_token_are_refused_and_change_nothing() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-csrf", 1).await;
    let app = router(admin_state(&f));
    let (session, csrf) = login(&app).await;
    for (path, body) in [
        ("/ui/dlq/replay", format!("seq={seq}&mode=run&rate=100")),
        ("/ui/dlq/purge", format!("seq={seq}&confirm=purge+1")),
        ("/ui/logout", String::new()),
    ] {
        for extra in ["", "&_csrf=", "&_csrf=0000"] {
            let r = send(
                &app,
                post_form(path, Some(&session), &format!("{body}{extra}")),
            )
            .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {extra}");
        }
    }
    // Nothing moved: the dead letter is still there, and the session still works.
    let page = body_text(send(&app, get(&format!("/ui/dlq/{seq}"), Some(&session))).await).await;
    assert!(page.contains("org-csrf"), "{page}");
    // A tail of a subject no stream stores says so on the page.
    let page =
        body_text(send(&app, get("/ui/tail?subject=nowhere.%3E", Some(&session))).await).await;
    assert!(
        page.contains("no stream captures subject nowhere.&gt;"),
        "{page}"
    );
    // With the token, a purge needs its typed confirmation.
    let r = send(
        &app,
        post_form(
            "/ui/dlq/purge",
            Some(&session),
            &format!("_csrf={csrf}&seq={seq}&confirm=yes"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(r).await.contains("purge 1"));
    let r = send(
        &app,
        post_form(
            "/ui/dlq/purge",
            Some(&session),
            &format!("_csrf={csrf}&seq={seq}&confirm=purge+1"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body_text(r).await.contains("1 dead letter(s) purged"));
    let r = send(
        &app,
        post_form("/ui/logout", Some(&session), &format!("_csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = send(&app, get("/ui", Some(&session))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "logged out");
}

/// A replay at 0.1/s moves the first dead letter at once and waits 10 s for the next: the
/// stop in between ends it with the rest kept, and the report says so.
#[tokio::test]
async fn console_replay_stops_when_asked_and_keeps_the_rest() {
    let f = fixture().await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        seqs.push(write_dead_letter(&f.js, "org-stop", n).await.0);
    }
    let app = router(admin_state(&f));
    let (session, csrf) = login(&app).await;
    let picked: String = seqs.iter().map(|s| format!("&seq={s}")).collect();
    let r = send(
        &app,
        post_form(
            "/ui/dlq/replay",
            Some(&session),
            &format!("_csrf={csrf}&mode=run&rate=0.1{picked}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let job = location(&r).to_owned();
    assert!(job.starts_with("/ui/jobs/"), "{job}");

    let page_says = async |text: &str| {
        body_text(send(&app, get(&job, Some(&session))).await)
            .await
            .contains(text)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !page_says("<span id=\"job-replayed\">1</span>").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first replay not seen within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = send(&app, post_form(&format!("{job}/stop"), Some(&session), "")).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a stop needs the CSRF token too"
    );
    let r = send(
        &app,
        post_form(
            &format!("{job}/stop"),
            Some(&session),
            &format!("_csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !page_says("<strong id=\"job-state\">stopped</strong>").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job not stopped within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = body_text(send(&app, get(&job, Some(&session))).await).await;
    assert!(
        page.contains(&format!(
            "<span id=\"job-done\">1</span> of <span id=\"job-total\">{}</span>",
            seqs.len()
        )),
        "{page}"
    );
    // The report lists the one replayed; the other two are still dead letters.
    assert!(
        page.contains("replayed") && page.contains("stored in AUTH_EVENTS"),
        "{page}"
    );
    for seq in &seqs[1..] {
        let r = send(&app, get(&format!("/ui/dlq/{seq}"), Some(&session))).await;
        assert_eq!(r.status(), StatusCode::OK, "dead letter {seq} kept");
    }
    // A job shown stopped is in the audit trail: the one replayed, and that it was stopped.
    let trail = events_admin::AuditLog::new(f.js.clone())
        .recent(10)
        .await
        .unwrap();
    let listed: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let r = &trail.last().expect("the job's record").record;
    assert_eq!(
        (r.target.as_str(), r.count, r.outcome.as_str()),
        (format!("dlq/{}", listed.join(",")).as_str(), 1, "stopped")
    );
    // The progress stream of a finished job sends its last state and ends.
    let r = send(&app, get(&format!("{job}/events"), Some(&session))).await;
    assert_eq!(
        r.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    let events = timeout(WAIT, body_text(r)).await.expect("the stream ends");
    assert!(
        events.contains("event: progress") && events.contains("\"state\":\"stopped\""),
        "{events}"
    );
}

/// Replays running at once and live tails open at once are bounded; one more is a 429
/// that names the bound.
#[tokio::test]
async fn console_bounds_running_replays_and_open_tails() {
    let f = fixture().await;
    let first = write_dead_letter(&f.js, "org-cap", 1).await.0;
    let second = write_dead_letter(&f.js, "org-cap", 2).await.0;
    let app = router(admin_state(&f));
    let (session, csrf) = login(&app).await;
    // At 0.1/s each job waits 10 s before its second dead letter: all stay running.
    let form = format!("_csrf={csrf}&mode=run&rate=0.1&seq={first}&seq={second}");
    let running = events_admin::MAX_RUNNING_REPLAYS;
    for _ in 0..running {
        let r = send(&app, post_form("/ui/dlq/replay", Some(&session), &form)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    let r = send(&app, post_form("/ui/dlq/replay", Some(&session), &form)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body_text(r)
            .await
            .contains(&format!("{running} replays are running"))
    );

    let tails = events_admin::MAX_LIVE_TAILS;
    let mut open = Vec::new();
    for _ in 0..tails {
        let r = send(
            &app,
            get("/ui/tail/events?subject=auth.%3E", Some(&session)),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let r = send(
        &app,
        get("/ui/tail/events?subject=auth.%3E", Some(&session)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Closing one frees its place.
    drop(open.pop());
    let r = send(
        &app,
        get("/ui/tail/events?subject=auth.%3E", Some(&session)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// The text of `r` after checking that it is an HTML page with `status`.
async fn page_with(r: Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    let kind = r.headers().get(header::CONTENT_TYPE).cloned();
    let page = body_text(r).await;
    assert!(
        kind.is_some_and(|k| k.to_str().unwrap().starts_with("text/html")),
        "an HTML page, not a JSON error: {page}"
    );
    page
}

/// The first value of the hidden field `name` on a page.
fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"))
        + marker.len();
    page[at..].split('"').next().unwrap_or_default().to_owned()
}

async fn still_there(f: &super::Fixture, seq: u64) -> bool {
    let dl = events::dlq::DeadLetters::new(f.js.clone());
    dl.get(seq).await.expect("read the dead letter").is_some()
}

#[tokio::test]
async fn console_viewer_sees_no_actions_and_cannot_replay_or_purge() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-viewer", 1).await;
    let app = router(roles::state(&f));
    let (session, csrf) = login_as(&app, roles::VIEWER).await;
    let list = page_with(
        send(&app, get("/ui/dlq", Some(&session))).await,
        StatusCode::OK,
    )
    .await;
    let one = page_with(
        send(&app, get(&format!("/ui/dlq/{seq}"), Some(&session))).await,
        StatusCode::OK,
    )
    .await;
    assert!(list.contains(&format!("data-seq=\"{seq}\"")), "{list}");
    assert!(one.contains("org-viewer"), "{one}");
    for page in [&list, &one] {
        assert!(page.contains("read only (role viewer)"), "{page}");
        for action in ["action=\"/ui/dlq/replay\"", "action=\"/ui/dlq/purge\""] {
            assert!(
                !page.contains(action),
                "{action} offered to a viewer: {page}"
            );
        }
    }
    for (path, body, needs) in [
        (
            "/ui/dlq/replay",
            format!("seq={seq}&mode=dry_run"),
            "operator",
        ),
        (
            "/ui/dlq/replay",
            format!("seq={seq}&mode=run&rate=100"),
            "operator",
        ),
        (
            "/ui/dlq/purge",
            format!("seq={seq}&confirm=purge+1"),
            "admin",
        ),
    ] {
        let form = format!("_csrf={csrf}&{body}");
        let r = send(&app, post_form(path, Some(&session), &form)).await;
        let page = page_with(r, StatusCode::FORBIDDEN).await;
        assert!(
            page.contains(&format!("token ci has role viewer; {}", &path[8..]))
                && page.contains(&format!("needs role {needs}")),
            "{path}: {page}"
        );
    }
    assert!(still_there(&f, seq).await, "the dead letter was touched");
    assert!(roles::audit(&app).await.is_empty(), "a refusal was audited");
}

#[tokio::test]
async fn console_operator_replays_but_cannot_purge() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-operator", 1).await;
    let app = router(roles::state(&f));
    let (session, csrf) = login_as(&app, roles::OPERATOR).await;
    let one = page_with(
        send(&app, get(&format!("/ui/dlq/{seq}"), Some(&session))).await,
        StatusCode::OK,
    )
    .await;
    assert!(one.contains("action=\"/ui/dlq/replay\""), "{one}");
    assert!(!one.contains("action=\"/ui/dlq/purge\""), "{one}");
    let purge = format!("_csrf={csrf}&seq={seq}&confirm=purge+1");
    let r = send(&app, post_form("/ui/dlq/purge", Some(&session), &purge)).await;
    let page = page_with(r, StatusCode::FORBIDDEN).await;
    assert!(
        page.contains("token oncall has role operator; purge needs role admin"),
        "{page}"
    );
    assert!(still_there(&f, seq).await, "the dead letter was purged");
    let dry_run = format!("_csrf={csrf}&seq={seq}&mode=dry_run");
    let r = send(&app, post_form("/ui/dlq/replay", Some(&session), &dry_run)).await;
    let page = page_with(r, StatusCode::OK).await;
    assert!(
        page.contains("1 of 1 dead letter(s) would be replayed"),
        "{page}"
    );
}

/// A group dry run, a dry run of one, a replay of a selection and a purge each leave the
/// API's audit record: who, what, on what, how many.
#[tokio::test]
async fn console_replays_and_purges_are_in_the_audit_trail() {
    let f = fixture().await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        seqs.push(write_dead_letter(&f.js, "org-audit", n).await.0);
    }
    let app = router(roles::state(&f));
    let (session, csrf) = login_as(&app, roles::ADMIN).await;
    let list = body_text(send(&app, get("/ui/dlq", Some(&session))).await).await;
    let group = hidden_field(&list, "group");
    let post = async |path: &str, body: String| {
        let form = format!("_csrf={csrf}&{body}");
        send(&app, post_form(path, Some(&session), &form)).await
    };
    let r = post("/ui/dlq/replay", format!("group={group}&mode=dry_run")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = post("/ui/dlq/replay", format!("seq={}&mode=dry_run", seqs[0])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let picked = format!("seq={}&seq={}", seqs[0], seqs[1]);
    let r = post("/ui/dlq/replay", format!("{picked}&mode=run&rate=1000")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let job = location(&r).to_owned();
    // A job shows `done` once its record is stored.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !body_text(send(&app, get(&job, Some(&session))).await)
        .await
        .contains("<strong id=\"job-state\">done</strong>")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job not done within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = post("/ui/dlq/purge", format!("seq={}&confirm=purge+1", seqs[2])).await;
    assert_eq!(r.status(), StatusCode::OK);

    let seen: Vec<(String, String, bool, u64, String)> = roles::audit(&app)
        .await
        .iter()
        .map(|r| {
            assert_eq!(
                (r["token_id"].as_str(), r["role"].as_str()),
                (Some("ops"), Some("admin"))
            );
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
                r["dry_run"].as_bool().unwrap(),
                r["count"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ok = || "ok".to_owned();
    assert_eq!(
        seen,
        [
            (
                "replay".into(),
                format!("group {group} of all"),
                true,
                seqs.len() as u64,
                ok()
            ),
            ("replay".into(), format!("dlq/{}", seqs[0]), true, 1, ok()),
            (
                "replay".into(),
                format!("dlq/{},{}", seqs[0], seqs[1]),
                false,
                2,
                ok()
            ),
            ("purge".into(), format!("dlq/{}", seqs[2]), false, 1, ok()),
        ]
    );
}

#[tokio::test]
async fn console_changes_over_the_rate_limit_get_429_with_retry_after() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-limit", 1).await;
    let limit = RateLimit {
        burst: 2,
        per_minute: 1,
    };
    let app = router(admin_state(&f).with_rate_limit(limit));
    let (session, csrf) = login(&app).await;
    let dry_run = format!("_csrf={csrf}&seq={seq}&mode=dry_run");
    for _ in 0..limit.burst {
        let r = send(&app, post_form("/ui/dlq/replay", Some(&session), &dry_run)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = send(&app, post_form("/ui/dlq/replay", Some(&session), &dry_run)).await;
    let retry_after: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request a minute refills within 60 s.
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let page = page_with(r, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(page.contains("token ops is over its rate limit"), "{page}");
    // Reads are not limited.
    let r = send(&app, get("/ui/dlq", Some(&session))).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn console_changes_nothing_without_the_audit_trail() {
    let f = fixture().await;
    let (seq, _) = write_dead_letter(&f.js, "org-noaudit", 1).await;
    f.js.delete_stream(events_admin::AUDIT_STREAM)
        .await
        .unwrap();
    let app = router(admin_state(&f));
    let (session, csrf) = login(&app).await;
    for (path, body) in [
        ("/ui/dlq/replay", format!("seq={seq}&mode=run&rate=100")),
        ("/ui/dlq/purge", format!("seq={seq}&confirm=purge+1")),
    ] {
        let form = format!("_csrf={csrf}&{body}");
        let r = send(&app, post_form(path, Some(&session), &form)).await;
        let page = page_with(r, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(page.contains("audit trail"), "{path}: {page}");
    }
    assert!(still_there(&f, seq).await, "the dead letter was touched");
}
