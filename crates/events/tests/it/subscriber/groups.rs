//! Groups, filters and what a handler receives.

use super::support::*;

#[tokio::test]
async fn subscriber_two_instances_in_one_group_split_the_work() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    // Two instances, each on its own connection, as two processes would be.
    let slow = |calls: Arc<Calls>, i: usize| {
        handler_fn(move |event: Event, ctx: DeliveryContext| {
            let calls = calls.clone();
            async move {
                calls.record(n_of(&event), ctx.delivered, i);
                sleep(Duration::from_millis(2)).await;
                Ok::<_, HandlerError>(())
            }
        })
    };
    let cfg = SubscriberConfig {
        max_in_flight: 8,
        fetch_batch: 8,
        ..fast_config()
    };
    let a = start(
        &nats.jetstream().await,
        "billing",
        cfg.clone(),
        slow(calls.clone(), 0),
    )
    .await;
    let b = start(
        &nats.jetstream().await,
        "billing",
        cfg,
        slow(calls.clone(), 1),
    )
    .await;
    assert_eq!(a.durable, b.durable, "same group, same durable consumer");

    const N: usize = 1000;
    publish_range(&js, 0..N).await;
    wait_for("every event handled", BOUND, async || calls.total() >= N).await;
    let lag = events::subscriber::lag(&js, STREAM, &a.durable)
        .await
        .unwrap();
    let durable = a.durable.clone();
    let (ra, rb) = (a.stop().await, b.stop().await);
    assert_eq!(ra.abandoned + rb.abandoned, 0);

    // Exactly once each, never redelivered in a clean run.
    assert_eq!(calls.distinct(), N);
    assert_eq!(calls.total(), N, "some event was handled twice");
    let per_instance = calls
        .inner
        .lock()
        .unwrap()
        .values()
        .fold([0usize; 2], |mut acc, v| {
            assert_eq!(v[0].0, 1, "redelivered");
            acc[v[0].1] += 1;
            acc
        });
    // Fair share: both instances keep pull requests waiting on the server, which hands
    // messages to waiting requests in turn; each can hold at most 8 in flight and each
    // handler takes >= 2 ms, so neither can drain the stream alone while the other idles.
    // Half each is expected; 20 % leaves room for a loaded machine.
    for (i, got) in per_instance.iter().enumerate() {
        assert!(
            *got >= N / 5,
            "instance {i} handled only {got} of {N}: {per_instance:?}"
        );
    }
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info(&durable)
        .await
        .unwrap();
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, N as u64);
    assert_eq!(lag.pending, 0);
}

#[tokio::test]
async fn subscriber_two_groups_on_one_subject_each_receive_every_event() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let (c1, c2) = (Arc::new(Calls::default()), Arc::new(Calls::default()));
    let g1 = start(&js, "search", fast_config(), recording(c1.clone(), 0)).await;
    let g2 = start(&js, "mailer", fast_config(), recording(c2.clone(), 0)).await;
    assert_ne!(g1.durable, g2.durable);
    const N: usize = 300;
    publish_range(&js, 0..N).await;
    wait_for("both groups got everything", BOUND, async || {
        c1.distinct() == N && c2.distinct() == N
    })
    .await;
    g1.stop().await;
    g2.stop().await;
    assert_eq!(c1.total(), N);
    assert_eq!(c2.total(), N);
}

#[tokio::test]
async fn subscriber_one_group_may_subscribe_to_several_filters() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let users = Subscriber::builder(js.clone(), filter("auth.user.*"))
        .service("catalog-service")
        .config(fast_config())
        .build()
        .await
        .unwrap();
    let all = Subscriber::builder(js.clone(), filter("auth.>"))
        .service("catalog-service")
        .config(fast_config())
        .build()
        .await
        .unwrap();
    assert_eq!(users.durable_name(), "catalog-service__auth_user_any");
    assert_eq!(all.durable_name(), "catalog-service__auth_all");
    assert_eq!(users.stream_name(), STREAM, "found by subject");
    let names: HashSet<String> = {
        use futures::TryStreamExt;
        js.get_stream(STREAM)
            .await
            .unwrap()
            .consumer_names()
            .try_collect()
            .await
            .unwrap()
    };
    assert!(names.contains(users.durable_name()) && names.contains(all.durable_name()));
    // Lag per group sums its subscriptions.
    publish_range(&js, 0..3).await;
    wait_for(
        "3 events pending on each of the two filters",
        BOUND,
        async || {
            let lag = events::subscriber::group_lag(&js, STREAM, "catalog-service")
                .await
                .unwrap()
                .expect("the group has consumers");
            lag.pending == 6
        },
    )
    .await;
    assert!(
        events::subscriber::group_lag(&js, STREAM, "nobody")
            .await
            .unwrap()
            .is_none()
    );
    // Bad input gives a typed error naming the problem.
    let err = Subscriber::builder(js.clone(), filter("auth.>"))
        .group("bad group")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, events::subscriber::SubscribeError::Name(_)),
        "{err}"
    );
    let err = Subscriber::builder(js.clone(), filter("nowhere.>"))
        .group("g")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            events::subscriber::SubscribeError::StreamNotFound { .. }
        ),
        "{err}"
    );
    let err = Subscriber::builder(js.clone(), filter("auth.>"))
        .group("g")
        .max_in_flight(0)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("configuration"), "{err}");
}

#[tokio::test]
async fn subscriber_accepts_binary_mode_cloudevents() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let seen: Arc<Mutex<Vec<(String, String, serde_json::Value)>>> = Arc::default();
    let s = seen.clone();
    let handler = handler_fn(move |event: Event, _ctx: DeliveryContext| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((
                event.id().to_owned(),
                event.organization_id().as_str().to_owned(),
                serde_json::Value::Object(event.data().clone()),
            ));
            Ok::<_, HandlerError>(())
        }
    });
    let sub = start(&js, "binary", fast_config(), handler).await;
    // What the CloudEvents SDKs of other languages send: attributes in ce- headers.
    let mut hm = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-1"),
        ("ce-source", "go-service"),
        ("ce-type", SUBJECT),
        ("ce-time", "2024-05-01T10:00:00Z"),
        ("ce-organizationid", "org-7"),
        ("ce-schemaversion", "1.0"),
        ("Content-Type", "application/json"),
    ] {
        hm.insert(k, v);
    }
    publish_raw(&js, Some(hm), br#"{"user_id":"u-1"}"#).await;
    wait_for("handled", BOUND, async || !seen.lock().unwrap().is_empty()).await;
    sub.stop().await;
    assert_eq!(stream_len(&js, DLQ_STREAM).await, 0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "bin-1");
    assert_eq!(seen[0].1, "org-7");
    assert_eq!(seen[0].2, serde_json::json!({ "user_id": "u-1" }));
}

#[tokio::test]
async fn subscriber_ordered_per_subject_runs_one_at_a_time_in_order() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let order: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlap = Arc::new(AtomicBool::new(false));
    let (o, b, ov) = (order.clone(), busy.clone(), overlap.clone());
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let (o, b, ov) = (o.clone(), b.clone(), ov.clone());
        async move {
            if !b.lock().unwrap().insert(ctx.subject.clone()) {
                ov.store(true, Ordering::SeqCst);
            }
            sleep(Duration::from_millis(3)).await;
            o.lock()
                .unwrap()
                .entry(ctx.subject.clone())
                .or_default()
                .push(n_of(&event));
            b.lock().unwrap().remove(&ctx.subject);
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        ordered_per_subject: true,
        max_in_flight: 16,
        ..fast_config()
    };
    let sub = start(&js, "ordered", cfg, handler).await;
    // Interleave two subjects.
    let subjects = ["auth.user.created", "auth.user.deleted"];
    let mut acks = Vec::new();
    for n in 0..200usize {
        let ev = Event::builder(subjects[n % 2])
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap();
        let enc = ev.encode();
        acks.push(
            js.publish_with_headers(enc.subject, enc.headers, enc.payload)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    wait_for("all handled", BOUND, async || {
        order.lock().unwrap().values().map(Vec::len).sum::<usize>() == 200
    })
    .await;
    sub.stop().await;
    assert!(
        !overlap.load(Ordering::SeqCst),
        "two handlers ran at once for one subject"
    );
    for (i, s) in subjects.iter().enumerate() {
        let got = order.lock().unwrap()[*s].clone();
        let want: Vec<usize> = (0..200).filter(|n| n % 2 == i).collect();
        assert_eq!(got, want, "order of {s}");
    }
}

#[tokio::test]
async fn subscriber_runs_up_to_max_in_flight_handlers_at_once_and_never_more() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    const LIMIT: usize = 6;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // Each handler waits until LIMIT run at once (or 200 ms pass, for the last few), so the
    // peak reaches the limit whenever the subscriber allows it.
    let handler = {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        handler_fn(move |_event: Event, _ctx: DeliveryContext| {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let until = Instant::now() + Duration::from_millis(200);
                while peak.load(Ordering::SeqCst) < LIMIT && Instant::now() < until {
                    sleep(Duration::from_millis(1)).await;
                }
                sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
    };
    let cfg = SubscriberConfig {
        max_in_flight: LIMIT as u32,
        ..fast_config()
    };
    const N: usize = 200;
    publish_range(&js, 0..N).await;
    let sub = start(&js, "bounded", cfg, handler).await;
    wait_for("every event handled", BOUND, async || {
        done.load(Ordering::SeqCst) >= N
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        LIMIT,
        "handlers at once: the peak must reach max_in_flight and never pass it"
    );
}

#[tokio::test]
async fn subscriber_new_group_starts_where_configured() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    const OLD: usize = 3;
    const NEW: usize = 2;
    publish_range(&js, 0..OLD).await;
    // Stored after every old event was acked (same clock as the server's).
    let cut = OffsetDateTime::now_utc();
    let groups = [
        ("start-all", events::subscriber::StartPosition::All),
        ("start-new", events::subscriber::StartPosition::New),
        ("start-from", events::subscriber::StartPosition::From(cut)),
    ];
    let mut running = Vec::new();
    for (i, (group, start_at)) in groups.into_iter().enumerate() {
        let calls = Arc::new(Calls::default());
        let cfg = SubscriberConfig {
            start: start_at,
            ..fast_config()
        };
        running.push((
            start(&js, group, cfg, recording(calls.clone(), i)).await,
            calls,
        ));
    }
    publish_range(&js, OLD..OLD + NEW).await;
    let expected = [OLD + NEW, NEW, NEW];
    for ((_, calls), want) in running.iter().zip(expected) {
        wait_for("the group handled its events", BOUND, async || {
            calls.distinct() >= want
        })
        .await;
    }
    for ((run, calls), want) in running.into_iter().zip(expected) {
        run.stop().await;
        let first = OLD + NEW - want;
        assert_eq!(
            calls.distinct(),
            want,
            "the group starting at event {first}"
        );
        assert!(
            (0..first).all(|n| calls.of(n).is_empty()),
            "an old event reached a later start"
        );
    }
}
