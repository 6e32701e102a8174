//! Integration tests: topology apply against real servers (create, idempotence, drift,
//! refusals, force, dry run, consumers, the prod profile on a 3-node cluster).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use events::topology::{
    Action, ApplyOptions, ApplyReport, ChangeRisk, Discard, Retention, Storage, StreamSpec,
    TopologySpec, apply,
};
use events_testkit::{NatsCluster, NatsServer};
use futures::TryStreamExt as _;

const SHIPPED: &str = include_str!("../../../../deploy/streams.toml");

fn shipped(profile: &str) -> TopologySpec {
    TopologySpec::from_toml(SHIPPED, "deploy/streams.toml", profile).unwrap()
}

fn spec(text: &str) -> TopologySpec {
    TopologySpec::from_toml(text, "test.toml", "dev").unwrap()
}

const APPLY: ApplyOptions = ApplyOptions::new(false, false);

async fn run(js: &jetstream::Context, spec: &TopologySpec, opts: ApplyOptions) -> ApplyReport {
    tokio::time::timeout(Duration::from_secs(60), apply(js, spec, &opts))
        .await
        .expect("apply within 60 s")
        .unwrap_or_else(|e| panic!("apply failed: {}", events::error_chain(&e)))
}

async fn config_of(js: &jetstream::Context, name: &str) -> stream::Config {
    js.get_stream(name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone()
}

async fn stream_names(js: &jetstream::Context) -> Vec<String> {
    let mut names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    names.sort();
    names
}

/// The server's config holds every declared value of `s`.
fn assert_matches(config: &stream::Config, s: &StreamSpec) {
    let name = s.name.as_str();
    let subjects: Vec<String> = s.subjects.iter().map(|f| f.to_string()).collect();
    assert_eq!(config.subjects, subjects, "{name}");
    assert_eq!(config.max_age, s.max_age, "{name}");
    assert_eq!(config.max_bytes, s.max_bytes as i64, "{name}");
    assert_eq!(config.duplicate_window, s.duplicate_window, "{name}");
    assert_eq!(config.num_replicas, s.replicas, "{name}");
    assert_eq!(config.allow_atomic_publish, s.allow_atomic, "{name}");
    let storage = match s.storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    };
    assert_eq!(config.storage, storage, "{name}");
    let retention = match s.retention {
        Retention::Limits => stream::RetentionPolicy::Limits,
        Retention::Interest => stream::RetentionPolicy::Interest,
        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
    };
    assert_eq!(config.retention, retention, "{name}");
    let discard = match s.discard {
        Discard::Old => stream::DiscardPolicy::Old,
        Discard::New => stream::DiscardPolicy::New,
    };
    assert_eq!(config.discard, discard, "{name}");
}

#[tokio::test]
async fn apply_creates_the_seven_streams_then_changes_nothing() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let spec = shipped("dev");

    let first = run(&js, &spec, APPLY).await;
    assert_eq!(first.items.len(), spec.streams.len());
    assert!(
        first.items.iter().all(|i| i.action == Action::Created),
        "{first}"
    );
    let mut declared: Vec<String> = spec.streams.iter().map(|s| s.name.to_string()).collect();
    declared.sort();
    assert_eq!(stream_names(&js).await, declared);
    for s in &spec.streams {
        assert_matches(&config_of(&js, s.name.as_str()).await, s);
    }
    // Contract values, checked independently of the spec loader.
    let dlq = config_of(&js, "DLQ_EVENTS").await;
    assert_eq!(dlq.discard, stream::DiscardPolicy::New);
    assert_eq!(dlq.max_age, Duration::from_secs(30 * 86_400));
    let auth = config_of(&js, "AUTH_EVENTS").await;
    assert_eq!(auth.subjects, ["auth.>"]);
    assert_eq!(auth.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(auth.max_bytes, 1 << 30);
    assert!(auth.allow_atomic_publish);

    let second = run(&js, &spec, APPLY).await;
    assert!(second.is_unchanged(), "{second}");
    assert!(
        second.items.iter().all(|i| i.action == Action::Unchanged),
        "{second}"
    );
    assert!(second.to_string().contains("no changes"), "{second}");
}

#[tokio::test]
async fn drift_on_the_server_is_reported_and_fixed() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let spec = shipped("dev");
    run(&js, &spec, APPLY).await;
    let declared = spec.stream("CATALOG_EVENTS").unwrap().max_age;

    // Someone lowers max_age by hand: going back up to the spec is safe.
    let mut config = config_of(&js, "CATALOG_EVENTS").await;
    config.max_age = Duration::from_secs(3600);
    config.discard = stream::DiscardPolicy::New;
    js.update_stream(config).await.unwrap();

    let report = run(&js, &spec, APPLY).await;
    let Action::Updated(changes) = &report.item("CATALOG_EVENTS").unwrap().action else {
        panic!("expected an update: {report}");
    };
    let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["discard", "max_age"], "{report}");
    assert_eq!(changes[1].from, "1h");
    assert_eq!(
        changes[1].to,
        humantime::format_duration(declared).to_string()
    );
    assert!(
        report.to_string().contains("CATALOG_EVENTS: updated"),
        "{report}"
    );
    // Only the drifted stream changed.
    let others = report.items.iter().filter(|i| i.name != "CATALOG_EVENTS");
    assert!(others.into_iter().all(|i| i.action == Action::Unchanged));

    let fixed = config_of(&js, "CATALOG_EVENTS").await;
    assert_eq!(fixed.max_age, declared);
    assert_eq!(fixed.discard, stream::DiscardPolicy::Old);
    assert!(run(&js, &spec, APPLY).await.is_unchanged());
}

#[tokio::test]
async fn raised_limit_on_the_server_is_not_shrunk_without_force() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let spec = shipped("dev");
    run(&js, &spec, APPLY).await;
    let declared = spec.stream("AUTH_EVENTS").unwrap().max_age;

    // Someone raises max_age by hand: applying the spec would shrink it.
    let raised = declared * 2;
    let mut config = config_of(&js, "AUTH_EVENTS").await;
    config.max_age = raised;
    js.update_stream(config).await.unwrap();

    let report = run(&js, &spec, APPLY).await;
    let Action::Refused { reason, changes } = &report.item("AUTH_EVENTS").unwrap().action else {
        panic!("expected a refusal: {report}");
    };
    assert!(reason.contains("max_age"), "{reason}");
    assert!(matches!(changes[0].risk, ChangeRisk::DropsData(_)));
    assert_eq!(report.refused().count(), 1);
    assert_eq!(config_of(&js, "AUTH_EVENTS").await.max_age, raised);

    let forced = run(&js, &spec, ApplyOptions::new(false, true)).await;
    assert!(
        matches!(
            forced.item("AUTH_EVENTS").unwrap().action,
            Action::Updated(_)
        ),
        "{forced}"
    );
    assert_eq!(config_of(&js, "AUTH_EVENTS").await.max_age, declared);
}

const ONE: &str = r#"
[profiles.dev]
[[streams]]
name = "ORDERS_EVENTS"
subjects = ["orders.>", "refunds.>"]
max_bytes = "64MiB"
"#;

#[tokio::test]
async fn spec_shrinks_are_refused_without_force_and_applied_with_force() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    run(&js, &spec(ONE), APPLY).await;

    // Smaller max_bytes and a removed subject: both may drop data.
    let smaller = spec(&ONE.replace("64MiB", "32MiB").replace(", \"refunds.>\"", ""));
    let plan = run(&js, &smaller, APPLY).await;
    let Action::Refused { changes, .. } = &plan.item("ORDERS_EVENTS").unwrap().action else {
        panic!("expected a refusal: {plan}");
    };
    let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["subjects", "max_bytes"]);
    assert!(plan.to_string().contains("drops data"), "{plan}");
    let config = config_of(&js, "ORDERS_EVENTS").await;
    assert_eq!(config.max_bytes, 64 << 20);
    assert_eq!(config.subjects.len(), 2);

    let forced = run(&js, &smaller, ApplyOptions::new(false, true)).await;
    assert!(matches!(
        forced.item("ORDERS_EVENTS").unwrap().action,
        Action::Updated(_)
    ));
    let config = config_of(&js, "ORDERS_EVENTS").await;
    assert_eq!(config.max_bytes, 32 << 20);
    assert_eq!(config.subjects, ["orders.>"]);

    // Growing back needs no force.
    let report = run(&js, &spec(ONE), APPLY).await;
    assert!(matches!(
        report.item("ORDERS_EVENTS").unwrap().action,
        Action::Updated(_)
    ));
    assert_eq!(config_of(&js, "ORDERS_EVENTS").await.max_bytes, 64 << 20);
}

#[tokio::test]
async fn storage_change_is_refused_even_with_force() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    run(&js, &spec(ONE), APPLY).await;
    let memory = spec(&format!("{ONE}storage = \"memory\"\n"));
    let report = run(&js, &memory, ApplyOptions::new(false, true)).await;
    let Action::Refused { reason, .. } = &report.item("ORDERS_EVENTS").unwrap().action else {
        panic!("expected a refusal: {report}");
    };
    assert!(reason.contains("storage"), "{reason}");
    assert_eq!(
        config_of(&js, "ORDERS_EVENTS").await.storage,
        stream::StorageType::File
    );
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let spec = shipped("dev");
    let dry = ApplyOptions::new(true, false);

    let plan = run(&js, &spec, dry).await;
    assert!(plan.dry_run);
    assert!(plan.items.iter().all(|i| i.action == Action::Created));
    assert!(plan.to_string().contains("would create"), "{plan}");
    assert!(stream_names(&js).await.is_empty());

    run(&js, &spec, APPLY).await;
    let mut config = config_of(&js, "DDMRP_EVENTS").await;
    config.max_bytes = 1 << 20;
    js.update_stream(config).await.unwrap();
    let plan = run(&js, &spec, dry).await;
    assert!(matches!(
        plan.item("DDMRP_EVENTS").unwrap().action,
        Action::Updated(_)
    ));
    assert!(plan.to_string().contains("would update"), "{plan}");
    assert_eq!(config_of(&js, "DDMRP_EVENTS").await.max_bytes, 1 << 20);
}

#[tokio::test]
async fn declared_consumers_are_created_and_kept_in_line() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let text = format!(
        "{ONE}\n[[consumers]]\nstream = \"ORDERS_EVENTS\"\ndurable = \"billing\"\n\
         filter_subjects = [\"orders.created\", \"refunds.*\"]\nack_wait = \"5s\"\nmax_deliver = 3\n"
    );
    let spec = spec(&text);

    let first = run(&js, &spec, APPLY).await;
    assert_eq!(
        first.item("ORDERS_EVENTS/billing").unwrap().action,
        Action::Created
    );
    let stream = js.get_stream("ORDERS_EVENTS").await.unwrap();
    let info = stream.consumer_info("billing").await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(5));
    assert_eq!(info.config.max_deliver, 3);
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    assert_eq!(info.config.filter_subjects.len(), 2);
    assert!(run(&js, &spec, APPLY).await.is_unchanged());

    // Drift: ack_wait changed by hand is put back.
    let mut config: jetstream::consumer::pull::Config =
        jetstream::consumer::FromConsumer::try_from_consumer_config(info.config.clone()).unwrap();
    config.ack_wait = Duration::from_secs(60);
    stream.update_consumer(config).await.unwrap();
    let report = run(&js, &spec, APPLY).await;
    let Action::Updated(changes) = &report.item("ORDERS_EVENTS/billing").unwrap().action else {
        panic!("expected an update: {report}");
    };
    assert_eq!(changes[0].field, "ack_wait");
    let info = stream.consumer_info("billing").await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(5));
}

#[tokio::test]
async fn prod_profile_on_a_cluster_creates_r3_streams() {
    let cluster = NatsCluster::start(3).await;
    let js = cluster.jetstream().await;
    let spec = shipped("prod");
    // Right after start-up the meta leader may still count a peer as offline for a moment
    // ("no suitable peers for placement", 10005). Apply is idempotent, so waiting for the
    // cluster is retrying it, bounded; any other error fails at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let attempt = tokio::time::timeout(Duration::from_secs(60), apply(&js, &spec, &APPLY));
        match attempt.await.expect("apply within 60 s") {
            Ok(report) => break report,
            Err(e)
                if events::error_chain(&e).contains("10005")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("apply failed: {}", events::error_chain(&e)),
        }
    };
    // Streams created before a retry show as unchanged in the final report.
    assert!(
        report
            .items
            .iter()
            .all(|i| matches!(i.action, Action::Created | Action::Unchanged)),
        "{report}"
    );
    for s in &spec.streams {
        let info = js.get_stream(s.name.as_str()).await.unwrap();
        let info = info.cached_info();
        assert_eq!(info.config.num_replicas, 3, "{}", s.name);
        let cluster_info = info.cluster.as_ref().expect("cluster info");
        assert!(cluster_info.leader.is_some(), "{}", s.name);
        assert_eq!(cluster_info.replicas.len(), 2, "{}", s.name);
        assert_matches(&info.config, s);
    }
    assert!(run(&js, &spec, APPLY).await.is_unchanged());
}
