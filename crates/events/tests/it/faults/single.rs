//! Single node: SIGKILL mid-publish and mid-consume then restart, graceful restart
//! (SIGTERM), lame-duck mode; all while a burst is published and consumed.

use std::time::Duration;

use events_testkit::{Checker, FAST_LAME_DUCK, NatsServer};
use tokio::time::sleep;

use super::support::*;

const EVENTS: usize = 2_000;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Term,
    LameDuck,
}

async fn scenario(name: &str, fault: Fault) {
    let mut nats = NatsServer::builder()
        .extra_config(FAST_LAME_DUCK)
        .start()
        .await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    create_streams(&js, 1, |_| {}).await;
    let checker = Checker::new(name);
    let cfg = subscriber_config();
    checker.allow_duplicates(u64::from(cfg.max_ack_pending));
    let consumer = ConsumerProcess::start(
        vec![nats.url()],
        "faults",
        cfg,
        Recording::new(&checker, Duration::from_millis(2)),
    )
    .await;
    let publisher = publisher(&client).await;
    let burst = publish_burst(&publisher, &checker, events(EVENTS));

    wait_stored(&js, STREAM, EVENTS as u64 / 5).await;
    wait_for("some handled", BOUND, async || checker.handled_count() > 0).await;
    let at_fault = stored_count(&js, STREAM).await;
    assert!(at_fault < EVENTS as u64, "the fault lands mid-burst");
    match fault {
        Fault::Kill => nats.kill(),
        Fault::Term => nats.stop().await,
        Fault::LameDuck => nats.lame_duck().await,
    }
    // The outage's length (not a synchronisation): down 1 s before the restart.
    sleep(Duration::from_secs(1)).await;
    nats.start_again().await;

    let errors = finish(burst).await;
    assert!(
        errors.iter().all(|e| e.is_transient()),
        "only typed transient errors: {errors:?}"
    );
    settle_and_check(&js, &checker, consumer, publisher).await;
}

#[tokio::test]
async fn faults_single_sigkill_mid_publish_and_consume_then_restart() {
    scenario("single: SIGKILL mid-publish+consume, restart", Fault::Kill).await;
}

#[tokio::test]
async fn faults_single_graceful_restart_mid_publish_and_consume() {
    scenario("single: SIGTERM (graceful) restart", Fault::Term).await;
}

#[tokio::test]
async fn faults_single_lame_duck_mid_publish_and_consume() {
    scenario("single: lame duck, restart", Fault::LameDuck).await;
}
