//! Shutdown and drain, and an instance dying during the last attempt.

use super::support::*;

#[tokio::test]
async fn subscriber_shutdown_drains_fifty_in_flight_handlers() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let release = CancellationToken::new();
    let (s, f, rel) = (started.clone(), finished.clone(), release.clone());
    let handler = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let (s, f, rel) = (s.clone(), f.clone(), rel.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            rel.cancelled().await;
            sleep(Duration::from_millis(100)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 50,
        fetch_batch: 50,
        drain_timeout: Duration::from_secs(10),
        ..fast_config()
    };
    let drain_timeout = cfg.drain_timeout;
    let sub = start(&js, "draining", cfg, handler).await;
    publish_range(&js, 0..80).await;
    wait_for("50 handlers in flight", BOUND, async || {
        started.load(Ordering::SeqCst) == 50
    })
    .await;

    let t0 = Instant::now();
    sub.token.cancel();
    sleep(Duration::from_millis(200)).await; // the loop has seen the cancellation
    release.cancel();
    let report = timeout(drain_timeout + Duration::from_secs(5), sub.handle)
        .await
        .expect("run() returned within its bound")
        .unwrap();
    assert!(t0.elapsed() < drain_timeout, "took {:?}", t0.elapsed());
    assert_eq!(report.in_flight, 50);
    assert_eq!(report.finished, 50);
    assert_eq!(report.abandoned, 0);
    assert_eq!(finished.load(Ordering::SeqCst), 50);
    assert_eq!(
        started.load(Ordering::SeqCst),
        50,
        "no new message was handled"
    );
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&sub.durable)
        .await
        .unwrap();
    assert_eq!(info.num_ack_pending, 0, "all 50 acked");
    assert_eq!(info.ack_floor.stream_sequence, 50);
    assert_eq!(info.delivered.consumer_sequence, 50, "no new fetch started");
    assert_eq!(info.num_pending, 30);
}

#[tokio::test]
async fn subscriber_drain_timeout_leaves_unfinished_work_unacked() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let handler = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        max_in_flight: 5,
        drain_timeout: Duration::from_millis(500),
        ..fast_config()
    };
    let sub = start(&js, "stuck", cfg, handler).await;
    publish_range(&js, 0..5).await;
    wait_for("5 stuck handlers", BOUND, async || {
        started.load(Ordering::SeqCst) == 5
    })
    .await;
    let t0 = Instant::now();
    let durable = sub.durable.clone();
    let report = sub.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (report.in_flight, report.finished, report.abandoned),
        (5, 0, 5)
    );
    let lag = events::subscriber::lag(&js, STREAM, &durable)
        .await
        .unwrap();
    assert_eq!(lag.ack_pending, 5, "left for redelivery, never acked");
    assert_eq!(lag.ack_floor_stream_sequence, 0);
}

#[tokio::test]
async fn subscriber_stopped_while_idle_leaves_later_events_pending() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let cfg = SubscriberConfig {
        fetch_expires: Duration::from_secs(30), // an outstanding pull request at shutdown
        ..fast_config()
    };
    let sub = start(&js, "idle", cfg, recording(calls.clone(), 0)).await;
    publish_range(&js, 0..1).await;
    let durable = sub.durable.clone();
    wait_for("first event acked", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 1
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.in_flight, 0);
    // The stopped instance's pull request must not swallow events published afterwards
    // (they would sit unacked until ack_wait ran out).
    publish_range(&js, 1..6).await;
    sleep(Duration::from_millis(300)).await;
    let lag = events::subscriber::lag(&js, STREAM, &durable)
        .await
        .unwrap();
    assert_eq!((lag.pending, lag.ack_pending), (5, 0), "{lag:?}");
    assert_eq!(calls.total(), 1);
}

#[tokio::test]
async fn subscriber_kill_during_last_attempt_dead_letters_without_running_again() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            jitter: 0.0,
        },
        ack_wait: Duration::from_secs(1),
        ..fast_config()
    };
    let max = u64::from(cfg.retry.max_attempts);
    let in_last_attempt = CancellationToken::new();
    let flag = in_last_attempt.clone();
    let first_handler = handler_fn(move |_event: Event, ctx: DeliveryContext| {
        let flag = flag.clone();
        async move {
            if ctx.delivered < max {
                return Err(HandlerError::transient("flaky"));
            }
            flag.cancel();
            std::future::pending::<()>().await; // blocked in the last attempt
            Ok(())
        }
    });
    let first = start(&js, "mortal", cfg.clone(), first_handler).await;
    let seq = publish_range(&js, 0..1).await[0].1;
    timeout(BOUND, in_last_attempt.cancelled())
        .await
        .expect("last attempt reached");
    // The instance dies: its task (and every task it owns) is aborted, nothing settles.
    first.handle.abort();
    let _ = first.handle.await;

    let calls = Arc::new(Calls::default());
    let second = start(&js, "mortal", cfg, recording(calls.clone(), 1)).await;
    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    // The dead letter is stored before the original is terminated: wait for that too.
    wait_for("original terminated", BOUND, async || {
        let lag = events::subscriber::lag(&js, STREAM, &second.durable)
            .await
            .unwrap();
        (lag.pending, lag.ack_pending) == (0, 0)
    })
    .await;
    second.stop().await;
    assert_eq!(
        calls.total(),
        0,
        "the handler did not run on the extra delivery"
    );
    let dl = dead_letters(&js).await;
    assert_eq!(header(&dl[0], h::REASON), "max_deliveries");
    assert_eq!(header(&dl[0], h::DELIVERIES), (max + 1).to_string());
    assert_eq!(header(&dl[0], h::ORIGINAL_SEQUENCE), seq.to_string());
}

/// Stopping an instance in the middle of a pull: the messages it received and no handler
/// took yet are NAKed at once and counted, so a second instance handles every one of them
/// within seconds, far below the 30 s ack wait that would otherwise hold them.
// Two workers: the test's own waits run beside the instance that the handler keeps busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_pull_releases_the_untaken_messages_at_once() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    // One pull brings the whole burst (fetch_batch = BURST), and the handler is slow enough
    // that the instance is still mid-burst when the test, on a loaded machine, gets to stop
    // it: 40 × 150 ms = 6 s.
    const BURST: usize = 40;
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(30),
        max_in_flight: BURST as u32,
        fetch_batch: BURST as u32,
        ..fast_config()
    };
    let ack_wait = cfg.ack_wait;
    publish_range(&js, 0..BURST).await;
    // A handler that blocks the subscriber's task (as a CPU-bound projection does): one pull
    // brings the whole burst, and the instance takes its messages one every 150 ms. The
    // third call stops the instance itself: a test task waiting on timers beside a blocked
    // worker may be woken only after the whole burst.
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let stop_at_third: Arc<std::sync::OnceLock<CancellationToken>> = Arc::default();
    let stop = stop_at_third.clone();
    let slow = handler_fn(move |event: Event, ctx: DeliveryContext| {
        c.record(n_of(&event), ctx.delivered, 0);
        if c.distinct() >= 3
            && let Some(token) = stop.get()
        {
            token.cancel();
        }
        std::thread::sleep(Duration::from_millis(150));
        async { Ok::<_, HandlerError>(()) }
    });
    let first = start(&js, "rolling", cfg.clone(), slow).await;
    stop_at_third
        .set(first.token.clone())
        .expect("set once, before any delivery needs it");
    wait_for("the first instance mid-burst", BOUND, async || {
        calls.distinct() >= 3
    })
    .await;
    let report = first.stop().await;
    let taken = calls.distinct();
    assert!(taken < BURST, "the burst was not over: {taken} taken");
    assert_eq!(report.released, BURST - taken, "{report:?}");

    let t0 = Instant::now();
    let second = start(&js, "rolling", cfg, recording(calls.clone(), 1)).await;
    wait_for(
        "every stranded message at the second instance",
        ack_wait / 3,
        async || calls.distinct() == BURST,
    )
    .await;
    assert!(t0.elapsed() < ack_wait / 3, "took {:?}", t0.elapsed());
    second.stop().await;
    let by_second = (0..BURST)
        .filter(|&n| calls.of(n).iter().any(|&(_, instance, _)| instance == 1))
        .count();
    assert_eq!(by_second, report.released);
}
