//! Faults by signal: pause/resume, lame duck; a full store; replica states of a cluster.

use std::time::Duration;

use events_testkit::{FAST_LAME_DUCK, NatsCluster, NatsServer};
use tokio::time::timeout;

use crate::{create_stream, message_count, publish_acked};

#[tokio::test]
async fn signals_pause_freezes_the_server_until_resumed() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    nats.pause().await;
    let ask = || client.request("$JS.API.INFO", "".into());
    let held = timeout(Duration::from_millis(500), ask()).await;
    assert!(held.is_err(), "a paused server answers nothing: {held:?}");
    nats.resume().await;
    timeout(Duration::from_secs(10), ask())
        .await
        .expect("answers after resume")
        .expect("request");
}

#[tokio::test]
async fn signals_lame_duck_exits_and_the_server_starts_again_with_its_data() {
    let mut nats = NatsServer::builder()
        .extra_config(FAST_LAME_DUCK)
        .start()
        .await;
    let js = nats.jetstream().await;
    create_stream(&js, "DUCK", 1).await;
    publish_acked(&js, "DUCK.x".into(), "before".into()).await;
    nats.lame_duck().await;
    assert!(!nats.is_running());
    nats.start_again().await;
    let js = nats.jetstream().await;
    assert_eq!(message_count(&js, "DUCK").await, 1);
}

#[tokio::test]
async fn signals_small_max_file_store_refuses_writes_when_full() {
    let nats = NatsServer::builder()
        .max_file_store(64 * 1024)
        .start()
        .await;
    let js = nats.jetstream().await;
    create_stream(&js, "FULL", 1).await;
    let body = "x".repeat(4096);
    let mut refused = None;
    for n in 0..64 {
        let ack = js.publish("FULL.x", body.clone().into()).await.unwrap();
        if let Err(e) = timeout(Duration::from_secs(5), ack).await.unwrap() {
            refused = Some((n, e));
            break;
        }
    }
    let (n, err) = refused.expect("a 64 KiB store refuses 256 KiB");
    assert!(n > 0, "some messages fit: {err}");
}

#[tokio::test]
async fn signals_replica_states_agree_in_a_healthy_cluster() {
    let cluster = NatsCluster::start(3).await;
    let js = cluster.jetstream().await;
    create_stream(&js, "AGREE", 3).await;
    for n in 1..=5u64 {
        publish_acked(&js, "AGREE.x".into(), n.to_string()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let states = cluster.replica_states("AGREE").await;
        if states.iter().all(|&(_, m, l)| (m, l) == (5, 5)) {
            assert_eq!(states.len(), 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
