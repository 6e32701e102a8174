//! The console's gate without a browser: sessions, redirects, CSRF, the CSP header.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use events_admin::router;
use tokio::time::timeout;
use tower::ServiceExt as _;

use super::{SECRET, WAIT, admin_state, fixture, write_dead_letter};

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

/// Logs in through the form; returns the session cookie (`events_session=...`) and the
/// session's CSRF token.
async fn login(app: &axum::Router) -> (String, String) {
    let form = send(app, get("/ui/login", None)).await;
    let login_cookie = set_cookie(&form, "events_login_csrf");
    let csrf = csrf_of(&body_text(form).await);
    let r = send(
        app,
        post_form(
            "/ui/login",
            Some(&login_cookie),
            &format!("_csrf={csrf}&token={SECRET}&next=%2Fui%2Fdlq"),
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
