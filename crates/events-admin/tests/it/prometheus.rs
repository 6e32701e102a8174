//! The alert rules and the dashboard against a real Prometheus: a consumer group and a
//! publisher make every metric move, Prometheus scrapes this admin server's `/metrics`,
//! and every dashboard query and alert expression is evaluated through its HTTP API and
//! must return data of the expected shape.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use events::publisher::RetryPolicy as PublishRetry;
use events::{Event, Publisher, PublisherConfig};
use events_admin::{AdminState, HttpLimits, install_prometheus, router, serve_router};
use events_testkit::{NatsServer, PrometheusServer};
use serde_json::Value;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::group;

const BOUND: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The CONTRACT.md §5 series this workspace exports, with the labels each must carry.
const EXPORTED: &[(&str, &[&str])] = &[
    ("events_published_total", &["event_type", "status"]),
    ("event_publish_duration_seconds_count", &["event_type"]),
    ("events_consumed_total", &["event_type", "status"]),
    ("event_handler_duration_seconds_count", &["consumer"]),
    ("event_handler_errors_total", &["consumer", "kind"]),
    ("events_dead_lettered_total", &["consumer", "reason"]),
    ("subscription_lag", &["stream", "consumer"]),
    ("subscription_lag_seconds", &["stream", "consumer"]),
    ("event_end_to_end_seconds_count", &["consumer"]),
];

/// Each alert's `expr`, inline or as a `|` block, read from the rules file.
fn alert_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(n) = t.strip_prefix("- alert:") {
            name = n.trim().to_owned();
        } else if let Some(e) = t.strip_prefix("expr:") {
            let indent = lines[i].len() - t.len();
            let mut expr = e.trim().to_owned();
            if expr == "|" {
                expr.clear();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() > indent)
                {
                    i += 1;
                    expr.push_str(lines[i].trim());
                    expr.push(' ');
                }
            }
            out.push((name.clone(), expr.trim().to_owned()));
        }
        i += 1;
    }
    out
}

/// Every panel query of the dashboard, with its variables at "All" (`.*`).
fn dashboard_queries(json: &str) -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(json).expect("dashboard JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let e = e.replace("$event_type", ".*").replace("$consumer", ".*");
                out.push((p["title"].as_str().unwrap_or("?").to_owned(), e));
            }
        }
    }
    out
}

/// The labels a query's result carries: none after `histogram_quantile` or an aggregation
/// without `by`; else those of its first `by (...)`.
fn result_labels(expr: &str) -> BTreeSet<String> {
    if expr.starts_with("histogram_quantile") {
        return BTreeSet::new();
    }
    expr.split_once("by (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(labels, _)| labels.split(',').map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
}

fn vector(v: &Value, what: &str) -> Vec<Value> {
    assert_eq!(v["status"], "success", "{what}: {v}");
    assert_eq!(v["data"]["resultType"], "vector", "{what}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `expr` until it returns a non-empty vector; returns it.
async fn until_data(prom: &PrometheusServer, what: &str, expr: &str) -> Vec<Value> {
    let deadline = Instant::now() + BOUND;
    loop {
        let v = prom
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let result = vector(&v, what);
        if !result.is_empty() {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no data within {BOUND:?} for {expr}\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn labels_of(series: &Value) -> BTreeSet<String> {
    series["metric"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A consumer group refusing org `bad` (a dead letter, handler errors), three events and a
/// publish that fails (no stream stores `billing.*`): every exported series moves.
async fn make_metrics(
    js: &jetstream::Context,
    client: &async_nats::Client,
    stop: &CancellationToken,
) -> group::Group {
    group::streams(js).await;
    let g = group::start(js, |ev| ev.organization_id().as_str() == "bad", stop).await;
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig {
            source: "test".into(),
            ack_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(2),
            retry: PublishRetry {
                max_retries: 0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("publisher");
    let orgs = ["acme", "globex", "bad"];
    for org in orgs {
        let ev = Event::builder("auth.user.created")
            .source("test")
            .organization(org)
            .data(&serde_json::json!({}))
            .build()
            .unwrap();
        publisher.publish(&ev).await.expect("published");
    }
    // No stream stores billing.*: a publish failure for the error panel and alert.
    let stray = Event::builder("billing.invoice.created")
        .source("test")
        .organization("acme")
        .data(&serde_json::json!({}))
        .build()
        .unwrap();
    assert!(
        publisher.publish(&stray).await.is_err(),
        "a publish no stream takes fails"
    );
    make_outbox_metrics(publisher).await;
    let deadline = Instant::now() + BOUND;
    while g.handled.load(Ordering::SeqCst) < orgs.len() - 1 {
        assert!(
            Instant::now() < deadline,
            "events not handled within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g
}

/// An outbox on SQLite relays one event through `publisher` (the `outbox_*` series), and an
/// inbox sees one event twice (`events_inbox_skipped_total`).
async fn make_outbox_metrics(publisher: Publisher) {
    use events::db::Database;
    use events::inbox::Inbox;
    use events::outbox::{Outbox, Relay, RelayConfig};

    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&format!("sqlite://{}", dir.path().join("o.db").display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let ev = Event::builder("auth.user.created")
        .source("test")
        .organization("acme")
        .data(&serde_json::json!({}))
        .build()
        .unwrap();
    let outbox = Outbox::new();
    let mut tx = db.begin().await.unwrap();
    outbox.enqueue(&mut tx, &ev).await.unwrap();
    let inbox = Inbox::new("outbox-test");
    assert!(inbox.record(&mut tx, &ev).await.unwrap());
    assert!(!inbox.record(&mut tx, &ev).await.unwrap(), "skipped");
    outbox.commit(tx).await.unwrap();
    let stop = CancellationToken::new();
    let relay = Relay::new(db.clone(), outbox, publisher, RelayConfig::new("test"));
    let task = tokio::spawn(relay.run(stop.clone()));
    let deadline = Instant::now() + BOUND;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events_outbox")
            .fetch_one(db.pool())
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outbox not relayed within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    timeout(BOUND, task).await.expect("relay stops").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_query_and_alert_expression() {
    timeout(Duration::from_secs(150), scenario())
        .await
        .expect("within bound");
}

async fn scenario() {
    let handle = install_prometheus().expect("the process's recorder");
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let stop = CancellationToken::new();
    let consumer = make_metrics(&js, &client, &stop).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AdminState::new(client.clone()).with_prometheus(handle);
    let server = tokio::spawn(serve_router(
        listener,
        router(state),
        HttpLimits::default(),
        stop.child_token(),
    ));

    let rules = root().join("deploy/prometheus/alerts.yml");
    let prom = PrometheusServer::start(&[addr], &[rules.as_path()]).await;
    until_data(&prom, "the first scrape", "up{job=\"events\"} == 1").await;

    for (metric, labels) in EXPORTED {
        for series in until_data(&prom, metric, metric).await {
            let have = labels_of(&series);
            for l in *labels {
                assert!(have.contains(*l), "{metric} lacks label {l}: {series}");
            }
        }
    }

    let dashboard = std::fs::read_to_string(root().join("deploy/grafana/dashboards/events.json"))
        .expect("dashboard");
    let queries = dashboard_queries(&dashboard);
    assert!(!queries.is_empty());
    for (title, expr) in &queries {
        let expected = result_labels(expr);
        for series in until_data(&prom, title, expr).await {
            let have: BTreeSet<String> = labels_of(&series);
            assert_eq!(have, expected, "{title}: {expr} gave {series}");
            let value = series["value"][1].as_str().unwrap_or("?");
            assert!(
                value == "NaN" || value.parse::<f64>().is_ok(),
                "{title}: value {value}"
            );
        }
    }

    let yaml = std::fs::read_to_string(&rules).expect("alerts.yml");
    let alerts = alert_exprs(&yaml);
    assert_eq!(
        alerts.len(),
        yaml.matches("- alert:").count(),
        "every alert has its expression"
    );
    for (name, expr) in &alerts {
        let v = prom
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for series in vector(&v, name) {
            // An alert's series carry the labels its aggregation keeps.
            let expected = result_labels(expr);
            assert!(
                labels_of(&series).is_superset(&expected),
                "{name}: {series}"
            );
        }
    }
    wait_rules_healthy(&prom, alerts.len()).await;

    group::shut_down(&stop, server, consumer).await;
}

/// Every rule evaluated by Prometheus itself without error.
async fn wait_rules_healthy(prom: &PrometheusServer, n: usize) {
    let deadline = Instant::now() + BOUND;
    loop {
        let v = prom.api("/api/v1/rules").await.expect("rules");
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rules.len(), n, "rules loaded: {v}");
        let bad: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
        if bad.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rules not healthy within {BOUND:?}: {bad:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn alert_expressions_are_read_from_the_rules_file() {
    let yaml = "    rules:\n      - alert: A\n        expr: x > 1\n      - alert: B\n        expr: |\n          sum(y)\n            / 2\n        for: 5m\n";
    assert_eq!(
        alert_exprs(yaml),
        vec![
            ("A".into(), "x > 1".into()),
            ("B".into(), "sum(y) / 2".into())
        ]
    );
    assert_eq!(
        result_labels("max by (stream, consumer) (x)"),
        BTreeSet::from(["stream".to_owned(), "consumer".to_owned()])
    );
    assert!(result_labels("histogram_quantile(0.5, sum by (le) (rate(x[5m])))").is_empty());
}
