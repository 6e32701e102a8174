//! What happens to a delivery: retries, dead letters, poison, panics, metrics.

use super::support::*;

#[tokio::test]
async fn subscriber_transient_failures_are_retried_with_growing_delays() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            if ctx.delivered < 3 {
                return Err(HandlerError::transient("database busy"));
            }
            Ok(())
        }
    });
    let retry = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(400),
        max_backoff: Duration::from_secs(10),
        jitter: 0.2,
    };
    let cfg = SubscriberConfig {
        retry: retry.clone(),
        ..fast_config()
    };
    let sub = start(&js, "retrying", cfg, handler).await;
    publish_range(&js, 0..1).await;
    wait_for("third delivery", BOUND, async || calls.total() >= 3).await;
    // Settled: nothing pending or unacked (the ack of the third delivery was confirmed).
    wait_for("ack", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.pending == 0 && l.ack_pending == 0
    })
    .await;
    sleep(Duration::from_millis(500)).await; // would a 4th delivery come? (it must not)
    sub.stop().await;

    let deliveries = calls.of(0);
    let counts: Vec<u64> = deliveries.iter().map(|d| d.0).collect();
    assert_eq!(
        counts,
        [1, 2, 3],
        "handled once in the end after 3 deliveries"
    );
    // Gap k follows the backoff: initial × 2^(k-1), shortened by at most `jitter`, plus
    // the time to redeliver (tolerance for a loaded machine).
    let slack = Duration::from_millis(900);
    for k in 1..=2u64 {
        let gap = deliveries[k as usize].2 - deliveries[k as usize - 1].2;
        let base = events::subscriber::backoff(k, &retry);
        let min = base.mul_f64(1.0 - retry.jitter) - Duration::from_millis(20);
        assert!(
            gap >= min && gap <= base + slack,
            "gap {k} was {gap:?}, expected {min:?}..={:?}",
            base + slack
        );
    }
}

#[tokio::test]
async fn subscriber_always_failing_event_is_dead_lettered_after_max_attempts() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            Err::<(), _>(std::io::Error::other("downstream unavailable"))?;
            Ok(())
        }
    });
    let cfg = fast_config();
    let max = cfg.retry.max_attempts as usize;
    let ack_wait = cfg.ack_wait;
    let sub = start(&js, "failing", cfg, handler).await;
    let before = OffsetDateTime::now_utc();
    let ev = event(7);
    let enc = ev.encode();
    let (payload, ct) = (
        enc.payload.clone(),
        enc.headers.get("Content-Type").cloned(),
    );
    let seq = js
        .publish_with_headers(enc.subject, enc.headers, enc.payload)
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    // Not delivered again: wait past another ack wait.
    sleep(ack_wait + Duration::from_millis(500)).await;
    let lag = events::subscriber::lag(&js, STREAM, &sub.durable)
        .await
        .unwrap();
    let durable = sub.durable.clone();
    sub.stop().await;
    assert_eq!(
        calls.total(),
        max,
        "one call per allowed delivery, none after"
    );
    assert_eq!(
        calls.of(7).iter().map(|d| d.0).collect::<Vec<_>>(),
        (1..=max as u64).collect::<Vec<_>>()
    );
    assert_eq!((lag.pending, lag.ack_pending), (0, 0), "terminated");

    let dl = dead_letters(&js).await;
    assert_eq!(dl.len(), 1);
    let m = &dl[0];
    assert_eq!(m.subject.as_str(), format!("dlq.{SUBJECT}"));
    assert_eq!(m.payload, payload, "body byte-identical");
    assert_eq!(
        m.headers.get("Content-Type"),
        ct.as_ref(),
        "original headers kept"
    );
    assert_eq!(header(m, h::ORIGINAL_SUBJECT), SUBJECT);
    assert_eq!(header(m, h::ORIGINAL_STREAM), STREAM);
    assert_eq!(header(m, h::ORIGINAL_SEQUENCE), seq.to_string());
    assert_eq!(header(m, h::CONSUMER), durable);
    assert_eq!(header(m, h::DELIVERIES), max.to_string());
    assert_eq!(header(m, h::REASON), "max_deliveries");
    assert!(header(m, h::ERROR).contains("downstream unavailable"));
    let failed_at = OffsetDateTime::parse(header(m, h::FAILED_AT), &Rfc3339).unwrap();
    assert!(failed_at >= before - Duration::from_secs(1) && failed_at <= OffsetDateTime::now_utc());
    assert_eq!(
        header(m, "Nats-Msg-Id"),
        dlq::dead_letter_msg_id(STREAM, seq, &durable)
    );
}

#[tokio::test]
async fn subscriber_permanent_error_is_dead_lettered_at_once() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            struct Wrong {
                email: String,
            }
            let _: Wrong = event.data_as().permanent()?;
            Ok(())
        }
    });
    let sub = start(&js, "strict", fast_config(), handler).await;
    publish_range(&js, 0..1).await;
    wait_for("dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1);
    let dl = dead_letters(&js).await;
    assert_eq!(header(&dl[0], h::REASON), "permanent");
    assert_eq!(header(&dl[0], h::DELIVERIES), "1");
    assert!(
        header(&dl[0], h::ERROR).contains("email"),
        "{:?}",
        dl[0].headers
    );
}

#[tokio::test]
async fn subscriber_poison_messages_are_dead_lettered_on_first_delivery() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let sub = start(&js, "poisoned", fast_config(), recording(calls.clone(), 0)).await;

    publish_range(&js, 0..500).await;
    let not_json = publish_raw(&js, None, b"{not json").await;
    let no_specversion = publish_raw(
        &js,
        None,
        br#"{"id":"p-2","source":"s","type":"auth.user.created","time":"2024-01-01T00:00:00Z","organizationid":"org-1","schemaversion":"1.0","datacontenttype":"application/json","data":{}}"#,
    )
    .await;
    let mut ct = HeaderMap::new();
    ct.insert("Content-Type", "application/cloudevents+json");
    let bad_org = publish_raw(
        &js,
        Some(ct),
        br#"{"specversion":"1.0","id":"p-3","source":"s","type":"auth.user.created","time":"2024-01-01T00:00:00Z","organizationid":"bad org!","schemaversion":"1.0","datacontenttype":"application/json","data":{}}"#,
    )
    .await;
    publish_range(&js, 500..1000).await;

    wait_for("all good ones and 3 dead letters", BOUND, async || {
        calls.distinct() == 1000 && stream_len(&js, DLQ_STREAM).await == 3
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1000);
    let by_seq: HashMap<u64, (String, String)> = dead_letters(&js)
        .await
        .iter()
        .map(|m| {
            assert_eq!(
                header(m, h::DELIVERIES),
                "1",
                "dead-lettered on first delivery"
            );
            (
                header(m, h::ORIGINAL_SEQUENCE).parse().unwrap(),
                (
                    header(m, h::REASON).to_owned(),
                    header(m, h::ERROR).to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(by_seq[&not_json].0, "undecodable");
    assert_eq!(by_seq[&no_specversion].0, "invalid");
    assert!(
        by_seq[&no_specversion].1.contains("specversion"),
        "{by_seq:?}"
    );
    assert_eq!(by_seq[&bad_org].0, "invalid");
    assert!(by_seq[&bad_org].1.contains("organizationid"), "{by_seq:?}");
}

#[tokio::test]
async fn subscriber_panicking_handler_does_not_stop_the_consumer() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            let n = n_of(&event);
            calls.record(n, ctx.delivered, 0);
            if n.is_multiple_of(97) {
                panic!("bug on event {n}");
            }
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            jitter: 0.2,
        },
        ..fast_config()
    };
    let sub = start(&js, "panicky", cfg, handler).await;
    const N: usize = 1000;
    publish_range(&js, 0..N).await;
    let panicking: Vec<usize> = (0..N).filter(|n| n.is_multiple_of(97)).collect();
    wait_for("all handled or dead-lettered", BOUND, async || {
        calls.distinct() == N && stream_len(&js, DLQ_STREAM).await == panicking.len() as u64
    })
    .await;
    let report = sub.stop().await;
    assert_eq!(report.abandoned, 0);
    for n in 0..N {
        let expected = if n.is_multiple_of(97) { 3 } else { 1 };
        assert_eq!(calls.of(n).len(), expected, "event {n}");
    }
    for m in dead_letters(&js).await {
        assert_eq!(header(&m, h::REASON), "max_deliveries");
        assert!(header(&m, h::ERROR).contains("panicked"), "{:?}", m.headers);
    }
}

#[tokio::test]
async fn subscriber_failed_dead_letter_publish_naks_instead() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    // No DLQ stream yet: dead-letter publishes fail (no responders).
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["auth.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            Err::<(), _>(HandlerError::permanent("never works"))
        }
    });
    let sub = start(&js, "nodlq", fast_config(), handler).await;
    publish_range(&js, 0..1).await;
    wait_for("two deliveries", BOUND, async || calls.total() >= 2).await;
    // Still in the stream and not terminated: it keeps coming back.
    let lag = events::subscriber::lag(&js, STREAM, &sub.durable)
        .await
        .unwrap();
    assert_eq!(lag.ack_floor_stream_sequence, 0);
    create_dlq_stream(&js).await;
    wait_for("dead letter once the DLQ exists", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    wait_for("terminated", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_pending == 0 && l.pending == 0
    })
    .await;
    sub.stop().await;
}

#[tokio::test]
async fn subscriber_long_handler_is_kept_alive_by_in_progress_acks() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(1),
        ..fast_config()
    };
    let work = cfg.ack_wait * 3;
    let handler = handler_fn(move |event: Event, ctx: DeliveryContext| {
        let calls = c.clone();
        async move {
            calls.record(n_of(&event), ctx.delivered, 0);
            sleep(work).await;
            Ok::<_, HandlerError>(())
        }
    });
    let sub = start(&js, "slowpoke", cfg, handler).await;
    publish_range(&js, 0..1).await;
    wait_for("acked", BOUND, async || {
        let l = events::subscriber::lag(&js, STREAM, &sub.durable)
            .await
            .unwrap();
        l.ack_floor_stream_sequence == 1
    })
    .await;
    sub.stop().await;
    assert_eq!(calls.total(), 1, "not redelivered while still working");
}

#[tokio::test]
async fn subscriber_records_the_contract_metrics() {
    // nextest runs each test in its own process, so the global recorder is this test's;
    // under `cargo test` the labels below are unique to this test anyway.
    let recorder = TestRecorder::install();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let handler = handler_fn(|event: Event, _ctx: DeliveryContext| async move {
        match n_of(&event) {
            0 => Err(HandlerError::permanent("rejected")),
            1 => Err(HandlerError::transient("try later")),
            _ => Ok(()),
        }
    });
    let cfg = SubscriberConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(20),
            jitter: 0.0,
        },
        lag_interval: Duration::from_millis(100),
        ..fast_config()
    };
    let sub = Subscriber::builder(js.clone(), filter("auth.metered.*"))
        .group("metered")
        .config(cfg)
        .build()
        .await
        .unwrap();
    let consumer = sub.durable_name().to_owned();
    let token = CancellationToken::new();
    let handle = tokio::spawn(sub.run(handler, token.clone()));
    let ty = "auth.metered.created";
    for n in 0..5usize {
        let ev = Event::builder(ty)
            .source("auth-service")
            .organization("org-1")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap();
        let enc = ev.encode();
        js.publish_with_headers(enc.subject, enc.headers, enc.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("auth.metered.created", Bytes::from_static(b"garbage"))
        .await
        .unwrap()
        .await
        .unwrap();
    let lag_key = format!("subscription_lag{{consumer={consumer},stream={STREAM}}}");
    wait_for("all settled and the lag gauge at zero", BOUND, async || {
        recorder.counter(&format!(
            "events_dead_lettered_total{{consumer={consumer},reason=max_deliveries}}"
        )) == 1
            && recorder.counter(&format!(
                "events_consumed_total{{event_type={ty},status=ack}}"
            )) == 3
            && recorder.gauge(&lag_key) == Some(0.0)
    })
    .await;
    token.cancel();
    timeout(BOUND, handle).await.unwrap().unwrap();

    let c = |k: String| recorder.counter(&k);
    // Series of failures that never happened exist at zero, so rate() sees a first failure.
    let zero = format!("events_dead_lettered_total{{consumer={consumer},reason=invalid}}");
    assert!(
        recorder.has_counter(&zero) && c(zero.clone()) == 0,
        "{zero}"
    );
    let zero = format!("event_handler_errors_total{{consumer={consumer},kind=panic}}");
    assert!(
        recorder.has_counter(&zero) && c(zero.clone()) == 0,
        "{zero}"
    );
    assert_eq!(
        c(format!(
            "events_consumed_total{{event_type={ty},status=dead_letter}}"
        )),
        2
    );
    assert_eq!(
        c(format!(
            "events_consumed_total{{event_type={ty},status=nak}}"
        )),
        1
    );
    assert_eq!(
        c("events_consumed_total{event_type=unknown,status=dead_letter}".into()),
        1
    );
    assert_eq!(
        c(format!(
            "events_dead_lettered_total{{consumer={consumer},reason=permanent}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "events_dead_lettered_total{{consumer={consumer},reason=undecodable}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=permanent}}"
        )),
        1
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=transient}}"
        )),
        2
    );
    assert_eq!(
        c(format!(
            "event_handler_errors_total{{consumer={consumer},kind=undecodable}}"
        )),
        1
    );
    // The handler ran 3 (ok) + 1 (permanent) + 2 (transient twice) times.
    let durations = recorder.samples(&format!(
        "event_handler_duration_seconds{{consumer={consumer}}}"
    ));
    assert_eq!(durations.len(), 6);
    let e2e = recorder.samples(&format!("event_end_to_end_seconds{{consumer={consumer}}}"));
    assert_eq!(e2e.len(), 3);
    assert!(e2e.iter().all(|s| (0.0..60.0).contains(s)), "{e2e:?}");
}

#[tokio::test]
async fn subscriber_exports_lag_in_seconds_while_a_message_is_unfinished() {
    let recorder = TestRecorder::install();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let handler = handler_fn(move |_event: Event, _ctx: DeliveryContext| {
        let release = r.clone();
        async move {
            release.notified().await;
            Ok::<_, HandlerError>(())
        }
    });
    let cfg = SubscriberConfig {
        lag_interval: Duration::from_millis(100),
        ..fast_config()
    };
    let sub = start(&js, "lagsecs", cfg, handler).await;
    let key = format!(
        "subscription_lag_seconds{{consumer={},stream={STREAM}}}",
        sub.durable
    );
    publish_range(&js, 0..1).await;
    // The held message grows older: the gauge reads its stored time, so it passes any
    // bound once the message has waited that long.
    let held = Duration::from_millis(500);
    wait_for(
        "the gauge shows the held message's age",
        BOUND,
        async || {
            recorder
                .gauge(&key)
                .is_some_and(|s| s >= held.as_secs_f64())
        },
    )
    .await;
    release.notify_one();
    wait_for(
        "the gauge back at zero once it is acked",
        BOUND,
        async || recorder.gauge(&key) == Some(0.0),
    )
    .await;
    sub.stop().await;
}
