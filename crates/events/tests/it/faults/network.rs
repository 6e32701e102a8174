//! The client's network, through the test kit's TCP proxy: cut off for 5 s mid-burst, and
//! stalled (bytes held, connection open) for longer than the publisher's ack timeout and
//! the consumer's ack wait. Publisher and consumer both connect through the proxy.

use std::time::Duration;

use events_testkit::{Checker, NatsServer, TcpProxy};

use super::support::*;

const EVENTS: usize = 2_000;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut(Duration),
    Stall(Duration),
}

async fn scenario(name: &str, fault: Fault) {
    let nats = NatsServer::start().await;
    let proxy = TcpProxy::start(nats.port()).await;
    let admin = nats.jetstream().await;
    create_streams(&admin, 1, |_| {}).await;
    let checker = Checker::new(name);
    let cfg = subscriber_config();
    // A stall holds acks past ack_wait: each message in flight may come again once per
    // ack_wait of the stall, plus once for the ack lost in it.
    let rounds = match fault {
        Fault::Cut(_) => 1,
        Fault::Stall(d) => 1 + d.as_secs().div_ceil(cfg.ack_wait.as_secs()),
    };
    checker.allow_duplicates(u64::from(cfg.max_ack_pending) * rounds);
    let consumer = ConsumerProcess::start(
        vec![proxy.url()],
        "faults",
        cfg,
        Recording::new(&checker, Duration::from_millis(2)),
    )
    .await;
    let client = connect(vec![proxy.url()]).await;
    let publisher = publisher(&client).await;
    let burst = publish_burst(&publisher, &checker, events(EVENTS));
    wait_stored(&admin, STREAM, EVENTS as u64 / 5).await;
    assert!(
        stored_count(&admin, STREAM).await < EVENTS as u64,
        "mid-burst"
    );
    match fault {
        Fault::Cut(d) => proxy.cut_for(d),
        Fault::Stall(d) => proxy.stall_for(d),
    }
    let errors = finish(burst).await;
    assert!(
        errors.is_empty(),
        "the 20 s deadline rides it out: {errors:?}"
    );
    settle_and_check(&admin, &checker, consumer, publisher).await;
}

#[tokio::test]
async fn faults_network_cut_for_5s_mid_burst() {
    scenario(
        "proxy: connection cut for 5 s mid-burst",
        Fault::Cut(Duration::from_secs(5)),
    )
    .await;
}

#[tokio::test]
async fn faults_network_stalled_longer_than_the_ack_timeout() {
    // 4 s: twice the publisher's ack timeout and the consumer's ack wait (2 s each).
    scenario(
        "proxy: stalled 4 s (> ack timeout)",
        Fault::Stall(Duration::from_secs(4)),
    )
    .await;
}
