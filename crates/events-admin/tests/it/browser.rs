//! The console in a real browser (headless chromium over chromedriver): log in, find the
//! dead letters a failing consumer made, replay their group at a rate, watch the progress
//! reach 100 % and the consumer's lag return to 0. Screenshots go to
//! `target/console-screenshots/` (docs/CONSOLE.md shows them).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use events_admin::{AdminState, AdminToken, HttpLimits, router, serve_router};
use events_testkit::{Chromedriver, NatsServer};
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::{SECRET, group};

/// Bound on the whole browser session.
const TEST_BOUND: Duration = Duration::from_secs(150);
/// Bound on each awaited condition.
const BOUND: Duration = Duration::from_secs(60);

/// Polls `cond` every 200 ms until it holds; panics naming `what` after [`BOUND`].
async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = Instant::now() + BOUND;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {BOUND:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    _driver: Chromedriver,
}

impl Browser {
    async fn start(base: String) -> Self {
        let driver = Chromedriver::start().await;
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(driver.capabilities(1280, 860))
            .connect(&driver.url())
            .await
            .expect("a chromium session");
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            client,
            base,
            shots,
            _driver: driver,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

async fn dlq_depth(js: &jetstream::Context) -> u64 {
    match js.get_stream(events::dlq::DLQ_STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(u64::MAX),
        Err(_) => u64::MAX,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_replays_a_dead_letter_group_in_a_real_browser() {
    timeout(TEST_BOUND, scenario())
        .await
        .expect("browser scenario within its bound");
}

async fn scenario() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    group::streams(&js).await;

    // A consumer group that refuses every event while `broken`: each becomes a dead letter
    // (permanent failure) with the same fingerprint.
    let broken = Arc::new(AtomicBool::new(true));
    let stop = CancellationToken::new();
    let refusing = broken.clone();
    let g = group::start(&js, move |_| refusing.load(Ordering::SeqCst), &stop).await;
    let orgs = ["acme", "globex", "initech"];
    for org in orgs {
        group::publish_created(&js, org).await;
    }
    let dead = orgs.len() as u64;
    wait_until("every event dead-lettered", async || {
        dlq_depth(&js).await == dead
    })
    .await;
    broken.store(false, Ordering::SeqCst);

    // The admin server with the console, on a socket the browser can reach.
    let token = AdminToken::parse(&format!("ops:{}", events_admin::hash_token(SECRET))).unwrap();
    let state = AdminState::new(client.clone()).with_token(token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve_router(
        listener,
        router(state),
        HttpLimits::default(),
        stop.child_token(),
    ));

    let b = Browser::start(base).await;
    // No session: the console sends us to the login page.
    b.goto("/ui/dlq").await;
    assert_eq!(b.path().await, "/ui/login");
    b.shot("login").await;
    b.fill("#token", SECRET).await;
    b.click("#login").await;
    wait_until("the dead-letter page after login", async || {
        b.path().await == "/ui/dlq"
    })
    .await;

    // One group holds every dead letter the consumer made.
    let count = b.text("#groups tbody tr td.count").await;
    assert_eq!(count, dead.to_string(), "one group of {dead}");
    assert!(
        b.text("#groups tbody tr")
            .await
            .contains("catalog for org \"…\" not found")
    );
    b.shot("dead-letters").await;

    // Dry run first, at 5 events/s; then the real replay.
    b.fill("#groups tbody tr input[name=rate]", "5").await;
    b.click("#groups tbody tr button.dry-run").await;
    wait_until("the dry-run report", async || {
        b.text("#dry-run-summary")
            .await
            .starts_with(&format!("{dead} of {dead}"))
    })
    .await;
    assert_eq!(dlq_depth(&js).await, dead, "a dry run changes nothing");
    b.shot("dry-run").await;
    b.click("#replay-run").await;
    wait_until("the replay to reach 100 %", async || {
        b.text("#job-percent").await == "100 %" && b.text("#job-state").await == "done"
    })
    .await;
    assert_eq!(b.text("#job-replayed").await, dead.to_string());
    assert_eq!(b.text("#job-failed").await, "0");
    b.shot("replay-done").await;

    // The consumer handled every replayed event, and the overview shows its lag at 0.
    wait_until("the consumer to handle the replayed events", async || {
        g.handled.load(Ordering::SeqCst) == orgs.len()
    })
    .await;
    assert_eq!(dlq_depth(&js).await, 0);
    let row = format!("#consumers tr[data-consumer='{}']", g.durable);
    wait_until("the consumer's lag at 0 on the overview", async || {
        b.goto("/ui").await;
        b.text(&format!("{row} td.lag")).await == "0"
            && b.text(&format!("{row} td.lag-seconds")).await == "0"
    })
    .await;
    b.shot("overview").await;

    // The live tail shows a new event as it is stored.
    b.goto("/ui/tail?subject=auth.%3E&rate=10").await;
    let htmx = b
        .client
        .execute("return typeof htmx", vec![])
        .await
        .expect("script");
    assert_eq!(htmx, "object", "the vendored htmx runs under the CSP");
    wait_until("the tail to connect", async || {
        b.text("#tail-status").await == "live"
    })
    .await;
    group::publish_created(&js, "hooli").await;
    wait_until("the event on the tail", async || {
        b.text("#tail-out li").await.contains("hooli")
    })
    .await;
    b.shot("tail").await;

    b.client
        .clone()
        .close()
        .await
        .expect("close the browser session");
    group::shut_down(&stop, server, g).await;
}
