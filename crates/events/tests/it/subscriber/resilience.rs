//! Server restarts, leader elections, lost consumers, and the idempotency helper.

use super::support::*;

#[tokio::test]
async fn subscriber_resumes_after_server_kill_and_idempotency_runs_effects_once() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    // Side effects happen in the inner handler; the wrapper skips ids already processed.
    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (e, d) = (effects.clone(), deliveries.clone());
    let inner = handler_fn(move |event: Event, _ctx: DeliveryContext| {
        let effects = e.clone();
        async move {
            sleep(Duration::from_millis(5)).await;
            *effects
                .lock()
                .unwrap()
                .entry(event.id().to_owned())
                .or_default() += 1;
            Ok::<_, HandlerError>(())
        }
    });
    let store = KvIdempotencyStore::for_stream(&js, STREAM)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let handler = Counting {
        deliveries: d,
        inner: Idempotent::new(store, inner),
    };
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(3),
        max_in_flight: 4,
        fetch_batch: 4,
        ..fast_config()
    };
    let sub = start(&js, "resilient", cfg, handler).await;
    const N: usize = 400;
    let ids: Vec<String> = publish_range(&js, 0..N)
        .await
        .into_iter()
        .map(|x| x.0)
        .collect();
    wait_for("some handled", BOUND, async || {
        effects.lock().unwrap().len() >= 50
    })
    .await;

    nats.kill();
    sleep(Duration::from_millis(500)).await;
    nats.start_again().await;

    wait_for("every event handled after the restart", BOUND, async || {
        effects.lock().unwrap().len() == N
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.abandoned, 0);
    let effects = effects.lock().unwrap();
    for id in &ids {
        assert_eq!(
            effects.get(id),
            Some(&1),
            "side effect of {id} not exactly once"
        );
    }
    assert!(deliveries.load(Ordering::SeqCst) >= N);
}

#[tokio::test]
async fn subscriber_idempotent_wrapper_skips_a_repeated_event_id() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let inner = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let store = KvIdempotencyStore::open(&js, "IDEM_TEST", Duration::from_secs(60))
        .await
        .unwrap();
    // One at a time: two copies handled concurrently are inside the documented
    // at-least-once window (both check before either marks).
    let cfg = SubscriberConfig {
        max_in_flight: 1,
        fetch_batch: 1,
        ..fast_config()
    };
    let sub = start(&js, "once", cfg, Idempotent::new(store, inner)).await;
    // The same event published three times under different message ids (e.g. a producer
    // that retried after the duplicate window): three deliveries, one effect.
    let ev = event(1);
    for i in 0..3 {
        let mut enc = ev.encode();
        enc.headers.insert("Nats-Msg-Id", format!("copy-{i}"));
        js.publish_with_headers(enc.subject, enc.headers, enc.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for("all three settled", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 3
    })
    .await;
    sub.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn subscriber_recreates_a_deleted_consumer() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let sub = start(&js, "phoenix", fast_config(), recording(calls.clone(), 0)).await;
    publish_range(&js, 0..10).await;
    wait_for("first batch", BOUND, async || calls.distinct() == 10).await;
    // What a server that lost its consumer state looks like to the subscriber.
    js.get_stream(STREAM)
        .await
        .unwrap()
        .delete_consumer(&sub.durable)
        .await
        .unwrap();
    sleep(Duration::from_millis(200)).await;
    publish_range(&js, 10..20).await;
    wait_for(
        "consumer recreated and new events handled",
        BOUND,
        async || (10..20).all(|n| !calls.of(n).is_empty()),
    )
    .await;
    sub.stop().await;
}

#[tokio::test]
async fn subscriber_survives_the_consumer_leader_being_killed_in_a_cluster() {
    init_tracing();
    let mut cluster = events_testkit::NatsCluster::start(3).await;
    let js = cluster.jetstream().await;
    for (name, subjects, discard) in [
        (STREAM, "auth.>", stream::DiscardPolicy::Old),
        (DLQ_STREAM, "dlq.>", stream::DiscardPolicy::New),
    ] {
        let config = stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            discard,
            num_replicas: 3,
            ..Default::default()
        };
        events_testkit::create_stream_when_ready(&js, config, BOUND).await;
    }
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            sleep(Duration::from_millis(10)).await;
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 2,
        fetch_batch: 2,
        ..fast_config()
    };
    let sub = start(&js, "elected", cfg, handler).await;
    const N: usize = 300;
    publish_range(&js, 0..N).await;
    wait_for("some handled", BOUND, async || calls.distinct() >= 50).await;

    // Kill the node that leads the consumer: a new leader is elected among the other two.
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&sub.durable)
        .await
        .unwrap();
    let leader_name = info
        .cluster
        .and_then(|c| c.leader)
        .expect("consumer leader");
    let leader = (0..cluster.size())
        .find(|i| cluster.node(*i).name() == leader_name)
        .expect("leader is a node");
    cluster.kill(leader);
    let at_kill = calls.distinct();
    assert!(
        at_kill < N,
        "the kill came after the work was done; slow the handler down"
    );

    wait_for(
        "every event handled after the election",
        BOUND,
        async || calls.distinct() == N,
    )
    .await;
    sub.stop().await;
    cluster.restart(leader).await;
}
