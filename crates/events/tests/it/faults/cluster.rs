//! Three-node cluster, R3 streams: kill the stream leader mid-publish, kill the consumer
//! leader's node mid-consume, lose quorum for 10 s, pause the leader past the election
//! timeout. After each, all three replicas hold the same messages and last sequence.

use std::time::Duration;

use events::publisher::{PublishError, PublisherConfig};
use events_testkit::{Checker, NatsCluster, StoredMessage};
use tokio::time::{Instant, sleep};

use super::support::*;

/// Reads AUTH_EVENTS back once every node's replica reports the same messages and last
/// sequence, and checks the read matches them. Waiting first matters: a leader that was
/// paused or killed answers from its stale state for a moment after it is back.
async fn read_back_settled(
    cluster: &NatsCluster,
    js: &async_nats::jetstream::Context,
) -> Vec<StoredMessage> {
    let deadline = Instant::now() + BOUND;
    let settled = loop {
        let states = cluster.replica_states(STREAM).await;
        let first = states.first().map(|&(_, m, l)| (m, l));
        if states.len() == cluster.size() && states.iter().all(|&(_, m, l)| Some((m, l)) == first) {
            break first.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "replicas disagree: want the same (messages, last_seq) on every node, got {states:?}"
        );
        sleep(Duration::from_millis(100)).await;
    };
    let stored = read_back(js, STREAM).await;
    let read = (stored.len() as u64, stored.last().map_or(0, |m| m.sequence));
    assert_eq!(
        read, settled,
        "read back (messages, last_seq) vs what every replica reports"
    );
    stored
}

async fn cluster_with_streams() -> (NatsCluster, async_nats::Client) {
    let cluster = NatsCluster::start(3).await;
    let client = cluster.client().await;
    create_streams(&async_nats::jetstream::new(client.clone()), 3, |_| {}).await;
    (cluster, client)
}

#[tokio::test]
async fn faults_cluster_stream_leader_killed_mid_publish() {
    const EVENTS: usize = 2_000;
    let (mut cluster, client) = cluster_with_streams().await;
    let js = async_nats::jetstream::new(client.clone());
    let checker = Checker::new("cluster R3: stream leader SIGKILL mid-publish");
    let publisher = publisher(&client).await;
    let burst = publish_burst(&publisher, &checker, events(EVENTS));
    wait_stored(&js, STREAM, EVENTS as u64 / 5).await;
    let leader = cluster.stream_leader(STREAM).await;
    cluster.kill(leader);
    let errors = finish(burst).await;
    assert!(errors.is_empty(), "the election is ridden out: {errors:?}");
    assert_ne!(cluster.stream_leader(STREAM).await, leader);
    cluster.restart(leader).await;
    let stored = read_back_settled(&cluster, &js).await;
    publisher.close(Duration::from_secs(5)).await.unwrap();
    checker.check(&stored);
}

#[tokio::test]
async fn faults_cluster_consumer_leader_node_killed_mid_consume() {
    const EVENTS: usize = 1_000;
    let (mut cluster, client) = cluster_with_streams().await;
    let js = async_nats::jetstream::new(client.clone());
    let checker = Checker::new("cluster R3: consumer leader SIGKILL mid-consume");
    let publisher = publisher(&client).await;
    let errors = finish(publish_burst(&publisher, &checker, events(EVENTS))).await;
    assert!(errors.is_empty(), "{errors:?}");
    let cfg = subscriber_config();
    checker.allow_duplicates(u64::from(cfg.max_ack_pending));
    let consumer = ConsumerProcess::start(
        cluster.urls(),
        "faults",
        cfg,
        Recording::new(&checker, Duration::from_millis(10)),
    )
    .await;
    wait_for("some handled", BOUND, async || {
        checker.handled_count() >= 100
    })
    .await;
    let leader = cluster.consumer_leader(STREAM, &durable()).await;
    cluster.kill(leader);
    assert!(
        checker.handled_count() < EVENTS as u64,
        "killed mid-consume"
    );
    wait_for("every event handled", BOUND, async || {
        checker.handled_count() == EVENTS as u64
    })
    .await;
    consumer.stop().await;
    cluster.restart(leader).await;
    let stored = read_back_settled(&cluster, &js).await;
    checker.check(&stored);
}

#[tokio::test]
async fn faults_cluster_quorum_lost_for_10s_fails_typed_within_deadline() {
    const BEFORE: usize = 300;
    const AFTER: usize = 300;
    let (mut cluster, client) = cluster_with_streams().await;
    let js = async_nats::jetstream::new(client.clone());
    let checker = Checker::new("cluster R3: quorum lost (2 of 3) for 10 s");
    // A deadline well inside the outage, so publishes made during it must fail.
    let deadline = Duration::from_secs(3);
    let publisher = events::publisher::Publisher::new(
        client.clone(),
        PublisherConfig {
            deadline,
            ack_timeout: Duration::from_secs(1),
            ..publisher_config()
        },
    )
    .await
    .unwrap();
    let all = events(BEFORE + 1_000 + AFTER);
    let errors = finish(publish_burst(&publisher, &checker, all[..BEFORE].to_vec())).await;
    assert!(errors.is_empty(), "{errors:?}");

    let leader = cluster.stream_leader(STREAM).await;
    let down = [leader, (leader + 1) % 3];
    for &i in &down {
        cluster.kill(i);
    }
    let outage = Instant::now();
    let mut during = BEFORE;
    while outage.elapsed() < Duration::from_secs(10) {
        let e = &all[during];
        checker.attempted(e.id());
        let started = Instant::now();
        let out = publisher.publish(e).await;
        let took = started.elapsed();
        record(&checker, e.id(), &out);
        match out {
            Err(PublishError::Unavailable { .. } | PublishError::Unconfirmed { .. }) => {}
            other => panic!("without quorum a publish fails typed, got {other:?}"),
        }
        assert!(
            took <= deadline + Duration::from_secs(1),
            "failed within its deadline ({deadline:?}), took {took:?}"
        );
        during += 1;
    }
    for &i in &down {
        cluster.restart(i).await;
    }
    // Healed once the stream has a leader again (the restarts return on node health).
    cluster.stream_leader(STREAM).await;
    let after = all[during..during + AFTER].to_vec();
    let errors = finish(publish_burst(&publisher, &checker, after)).await;
    assert!(
        errors.is_empty(),
        "publishing resumes after healing: {} errors, first {:?}",
        errors.len(),
        errors.first()
    );
    let stored = read_back_settled(&cluster, &js).await;
    publisher.close(Duration::from_secs(5)).await.unwrap();
    let report = checker.check(&stored);
    assert_eq!(report.acked, (BEFORE + AFTER) as u64);
    assert_eq!(report.errored, (during - BEFORE) as u64);
}

#[tokio::test]
async fn faults_cluster_leader_paused_past_election_timeout() {
    const EVENTS: usize = 2_000;
    let (cluster, _) = cluster_with_streams().await;
    let leader = cluster.stream_leader(STREAM).await;
    // The clients talk to the other two nodes: a client connected to a frozen node sees
    // nothing wrong until its ping interval runs out (a known limit, docs/RELIABILITY.md).
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.node(i).url())
        .collect();
    let client = connect(others.clone()).await;
    let js = async_nats::jetstream::new(client.clone());
    let checker = Checker::new("cluster R3: stream leader SIGSTOP past election, SIGCONT");
    let publisher = publisher(&client).await;
    let burst = publish_burst(&publisher, &checker, events(EVENTS));
    wait_stored(&js, STREAM, EVENTS as u64 / 5).await;
    cluster.node(leader).pause().await;
    // Past the election timeout: the other two elect a leader and go on without it.
    wait_for(
        "a new leader while the old one is frozen",
        BOUND,
        async || {
            new_leader(others.clone())
                .await
                .is_some_and(|l| l != cluster.node(leader).name())
        },
    )
    .await;
    // The fault's length, not a synchronisation: frozen 2 s more under the new leader.
    sleep(Duration::from_secs(2)).await;
    cluster.node(leader).resume().await;
    let errors = finish(burst).await;
    assert!(
        errors.is_empty(),
        "the pause is ridden out: {} errors, first {:?}",
        errors.len(),
        errors.first()
    );
    let stored = read_back_settled(&cluster, &js).await;
    publisher.close(Duration::from_secs(5)).await.unwrap();
    checker.check(&stored);
}

/// The stream leader as the nodes at `urls` see it, if they name one.
async fn new_leader(urls: Vec<String>) -> Option<String> {
    let client = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(urls))
        .await
        .ok()?
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = tokio::time::timeout(Duration::from_secs(2), js.get_stream(STREAM))
        .await
        .ok()?
        .ok()?;
    let info = tokio::time::timeout(Duration::from_secs(2), stream.info())
        .await
        .ok()?
        .ok()?;
    info.cluster.as_ref()?.leader.clone()
}
