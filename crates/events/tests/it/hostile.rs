//! Hostile input on the consume side (issue #10): a header block that is not UTF-8, a forged
//! type, and a body near `max_payload` each reach a terminal state (a dead letter) on the
//! first delivery, and the rest of the group flows.

use events::raw_headers;
use events_testkit::{RawMessage, publish_raw};

use crate::subscriber::support::*;

/// A structured-mode event as a raw frame, with `extra` header lines.
fn raw_event(n: usize, extra: &[&[u8]]) -> (Event, RawMessage) {
    let ev = event(n);
    let msg_id = format!("Nats-Msg-Id: {}", ev.id());
    let mut lines: Vec<&[u8]> = vec![
        b"Content-Type: application/cloudevents+json",
        msg_id.as_bytes(),
    ];
    lines.extend_from_slice(extra);
    let raw = RawMessage::with_headers(SUBJECT, &lines, ev.to_json_bytes());
    (ev, raw)
}

async fn wait_for_lag_zero(js: &jetstream::Context, durable: &str, bound: Duration) {
    wait_for("the group's lag to return to 0", bound, async || {
        events::subscriber::lag(js, STREAM, durable)
            .await
            .is_ok_and(|l| l.total() == 0)
    })
    .await;
}

/// One burst on one group: a valid event, one whose header block is not UTF-8 (its body is
/// a valid event, so only the headers make it bad), another valid one. The bad one is
/// dead-lettered as undecodable on its first delivery with its raw block and body, the
/// valid ones go through the idempotency helper to the handler, and the lag returns to 0.
#[tokio::test]
async fn a_header_block_that_is_not_utf8_is_dead_lettered_and_the_group_flows() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let store = KvIdempotencyStore::open(&js, "HOSTILE_IDEMPOTENCY", Duration::from_secs(60))
        .await
        .unwrap();
    let calls = Arc::new(Calls::default());
    let cfg = SubscriberConfig {
        ack_wait: Duration::from_secs(10),
        ..fast_config()
    };
    let ack_wait = cfg.ack_wait;
    let sub = start(
        &js,
        "hostile",
        cfg,
        Idempotent::new(store, recording(calls.clone(), 0)),
    )
    .await;

    let bad_line: &[u8] = b"X-Bad: \x80\xff";
    let (first, first_raw) = raw_event(0, &[]);
    let (bad, bad_raw) = raw_event(1, &[bad_line]);
    let (last, last_raw) = raw_event(2, &[]);
    let t0 = Instant::now();
    publish_raw(nats.port(), &[first_raw, bad_raw.clone(), last_raw]).await;

    wait_for("the dead letter", ack_wait, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    assert!(t0.elapsed() < ack_wait, "took {:?}", t0.elapsed());
    wait_for_lag_zero(&js, &sub.durable, ack_wait).await;
    wait_for("both valid events handled", BOUND, async || {
        calls.distinct() == 2
    })
    .await;
    sub.stop().await;

    let handled: Vec<usize> = calls.inner.lock().unwrap().keys().copied().collect();
    assert_eq!(handled, [n_of(&first), n_of(&last)], "never the bad one");
    let dls = dead_letters(&js).await;
    let [dl] = dls.as_slice() else {
        panic!("one dead letter: {dls:?}")
    };
    assert_eq!(header(dl, h::REASON), "undecodable");
    assert_eq!(header(dl, h::DELIVERIES), "1");
    assert!(
        header(dl, h::ERROR).contains("header block could not be parsed"),
        "{}",
        header(dl, h::ERROR)
    );
    let raw = raw_headers::decode_base64(header(dl, h::ORIGINAL_HEADERS_BASE64)).unwrap();
    let mut want = b"NATS/1.0\r\n".to_vec();
    want.extend_from_slice(bad_raw.headers.as_deref().unwrap());
    want.extend_from_slice(b"\r\n");
    assert_eq!(raw, want);
    assert_eq!(dl.payload, bad.to_json_bytes(), "the body, byte for byte");
    for copied in [
        "Content-Type",
        "X-Bad",
        raw_headers::UNPARSED_HEADERS_BASE64,
    ] {
        assert!(dl.headers.get(copied).is_none(), "{copied} copied");
    }
}

/// An event whose type is `auth.user.deleted`, stored on `auth.user.created`, is a forgery:
/// invalid, dead-lettered on the first delivery, never handed to the handler.
#[tokio::test]
async fn a_forged_type_is_invalid_and_never_handled() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_streams(&js).await;
    let calls = Arc::new(Calls::default());
    let deliveries = Arc::new(AtomicUsize::new(0));
    let handler = Counting {
        deliveries: deliveries.clone(),
        inner: recording(calls.clone(), 0),
    };
    let sub = start(&js, "forged", fast_config(), handler).await;
    let forged = Event::builder("auth.user.deleted")
        .source("intruder")
        .organization("org-1")
        .data(&serde_json::json!({ "n": 99 }))
        .build()
        .unwrap()
        .encode();
    assert_ne!(forged.subject, SUBJECT);
    js.publish_with_headers(SUBJECT, forged.headers, forged.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    publish_range(&js, 0..1).await;

    wait_for("the dead letter and the valid event", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1 && calls.distinct() == 1
    })
    .await;
    wait_for_lag_zero(&js, &sub.durable, BOUND).await;
    sub.stop().await;
    assert_eq!(deliveries.load(Ordering::SeqCst), 1, "only the valid event");
    let dls = dead_letters(&js).await;
    assert_eq!(header(&dls[0], h::REASON), "invalid");
    assert_eq!(header(&dls[0], h::DELIVERIES), "1");
    assert!(header(&dls[0], h::ERROR).contains("auth.user.deleted"));
    assert_eq!(dls[0].payload, forged.payload);
}

/// A body within a few hundred bytes of `max_payload` that the handler refuses: the record
/// would push the dead letter over the limit, so its body is empty and `Dlq-Body-Omitted`
/// holds the body's length; the original is terminated (lag 0) and stays in its stream.
#[tokio::test]
async fn a_body_near_max_payload_is_dead_lettered_without_its_body() {
    const MAX_PAYLOAD: u32 = 64 * 1024;
    let nats = NatsServer::builder().max_payload(MAX_PAYLOAD).start().await;
    let js = nats.jetstream().await;
    assert_eq!(js.client().server_info().max_payload, MAX_PAYLOAD as usize);
    create_streams(&js).await;
    let handler = handler_fn(|_event: Event, _ctx: DeliveryContext| async move {
        Err::<(), _>(HandlerError::permanent("refused"))
    });
    let sub = start(&js, "oversized", fast_config(), handler).await;

    // Pad `data` so that the encoded event is about 300 bytes short of the limit (the
    // `time` attribute's length varies by a few bytes).
    let probe = event(0).encode();
    let target = MAX_PAYLOAD as usize - 300;
    let pad = "x".repeat(target - probe.payload.len() - r#","pad":"""#.len());
    let big = Event::builder(SUBJECT)
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "n": 0, "pad": pad }))
        .build()
        .unwrap()
        .encode();
    let len = big.payload.len();
    assert!(
        len.abs_diff(target) < 50,
        "{len} bytes for a target of {target}"
    );
    js.publish_with_headers(SUBJECT, big.headers, big.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();

    wait_for("the dead letter", BOUND, async || {
        stream_len(&js, DLQ_STREAM).await == 1
    })
    .await;
    wait_for_lag_zero(&js, &sub.durable, BOUND).await;
    sub.stop().await;
    let dls = dead_letters(&js).await;
    assert_eq!(header(&dls[0], h::REASON), "permanent");
    assert!(dls[0].payload.is_empty());
    assert_eq!(
        header(&dls[0], h::BODY_OMITTED),
        big.payload.len().to_string()
    );
    assert_eq!(
        stream_len(&js, STREAM).await,
        1,
        "the original stays stored"
    );
}
