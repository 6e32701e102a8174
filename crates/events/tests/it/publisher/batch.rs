//! Atomic batching (issue 6): exact per-event outcomes, fallbacks, and a throughput report.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use events::Event;
use events::publisher::{PublishOutcome, Publisher};
use events_testkit::NatsServer;

use super::{BOUND, batch_config, count_ids, create_atomic_stream, create_stream, ev, stored};

#[tokio::test]
async fn publisher_batches_windowed_publishes_into_atomic_stream_in_order() {
    const N: usize = 5_000;
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_atomic_stream(&js, "AUTH_EVENTS", "auth.>").await;
    let publisher = Publisher::new(client, batch_config()).await.unwrap();
    let events: Vec<Event> = (0..N).map(ev).collect();
    let results = tokio::time::timeout(BOUND, publisher.publish_all(&events))
        .await
        .unwrap();
    let mut seq_of = HashMap::new();
    for (e, r) in events.iter().zip(&results) {
        match r {
            Ok(PublishOutcome::Stored(ack)) => {
                assert!(!ack.duplicate);
                seq_of.insert(e.id().to_owned(), ack.sequence);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut s = js.get_stream("AUTH_EVENTS").await.unwrap();
    let stored_msgs = {
        let mut v = Vec::new();
        for seq in 1..=N as u64 {
            v.push(s.get_raw_message(seq).await.unwrap());
        }
        v
    };
    assert_eq!(s.info().await.unwrap().state.messages, N as u64);
    let batched = stored_msgs
        .iter()
        .filter(|m| m.headers.get("Nats-Batch-Id").is_some())
        .count();
    eprintln!("{batched} of {N} stored messages came in atomic batches");
    assert!(batched > 0, "the batch path was used");
    for (e, m) in events.iter().zip(&stored_msgs) {
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str();
        assert_eq!(id, e.id(), "stored in submission order");
        assert_eq!(
            seq_of[e.id()],
            m.sequence,
            "each event's reported sequence is exact"
        );
        assert_eq!(m.payload, e.encode().payload);
    }
    publisher.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn publisher_batch_with_stored_id_falls_back_to_exact_per_message_outcomes() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_atomic_stream(&js, "AUTH_EVENTS", "auth.>").await;
    let publisher = Publisher::new(client, batch_config()).await.unwrap();
    let events: Vec<Event> = (0..50).map(ev).collect();
    // Event 20 is already stored: an atomic batch holding it is refused whole (10201).
    publisher.publish(&events[20]).await.unwrap();
    let results = tokio::time::timeout(BOUND, publisher.publish_all(&events))
        .await
        .unwrap();
    for (i, r) in results.iter().enumerate() {
        let ack = r.as_ref().unwrap().ack().unwrap().clone();
        assert_eq!(ack.duplicate, i == 20, "event {i}: {ack:?}");
    }
    let stored = stored(&js, "AUTH_EVENTS").await;
    assert_eq!(stored.len(), events.len());
    assert!(count_ids(&stored).values().all(|c| *c == 1));
}

#[tokio::test]
async fn publisher_batching_falls_back_on_streams_without_atomic() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // Not atomic from the start: routed per message.
    create_stream(&js, "AUTH_EVENTS", "auth.>", 1).await;
    // Atomic when first seen, then switched off: the refusal (10174) demotes the route.
    create_atomic_stream(&js, "SHOP_EVENTS", "shop.>").await;
    let publisher = Publisher::new(client, batch_config()).await.unwrap();
    let shop = |n: usize| {
        Event::builder("shop.order.placed")
            .source("shop")
            .organization("org-1")
            .data(&serde_json::json!({ "n": n }))
            .build()
            .unwrap()
    };
    // A burst, so that atomic batches form (a lone event goes as a plain publish).
    const EARLY: usize = 50;
    let early: Vec<Event> = (0..EARLY).map(shop).collect();
    let stored_early = tokio::time::timeout(BOUND, publisher.publish_all(&early))
        .await
        .unwrap();
    assert!(stored_early.iter().all(|r| r.is_ok()), "{stored_early:?}");
    let mut cfg = js
        .get_stream("SHOP_EVENTS")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    cfg.allow_atomic_publish = false;
    js.update_stream(cfg).await.unwrap();

    let auth: Vec<Event> = (0..300).map(ev).collect();
    let shops: Vec<Event> = (EARLY..EARLY + 300).map(shop).collect();
    let all: Vec<&Event> = auth.iter().chain(&shops).collect();
    let results = tokio::time::timeout(BOUND, publisher.publish_all(all))
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(PublishOutcome::Stored(a)) if !a.duplicate))
    );
    let a = stored(&js, "AUTH_EVENTS").await;
    let s = stored(&js, "SHOP_EVENTS").await;
    assert_eq!(a.len(), auth.len());
    assert_eq!(s.len(), shops.len() + EARLY);
    // The early burst went (partly) in batches; after the switch, the stream refused atomic
    // batches (10174) and the rest went message by message.
    let shop_stream = js.get_stream("SHOP_EVENTS").await.unwrap();
    let mut batched_early = 0;
    for seq in 1..=EARLY as u64 {
        let m = shop_stream.get_raw_message(seq).await.unwrap();
        batched_early += usize::from(m.headers.get("Nats-Batch-Id").is_some());
    }
    assert!(batched_early > 0, "no early event came in a batch");
    for seq in EARLY as u64 + 1..=s.len() as u64 {
        let m = shop_stream.get_raw_message(seq).await.unwrap();
        assert!(m.headers.get("Nats-Batch-Id").is_none());
    }
    assert!(
        count_ids(&a)
            .values()
            .chain(count_ids(&s).values())
            .all(|c| *c == 1)
    );
}

#[tokio::test]
async fn publisher_batching_sends_a_lone_event_as_a_plain_publish() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    create_atomic_stream(&js, "AUTH_EVENTS", "auth.>").await;
    let publisher = Publisher::new(client, batch_config()).await.unwrap();
    // Nothing in flight: each windowed event goes at once, alone, without the batch
    // protocol (`publish` never batches; `publish_async` does).
    let events: Vec<Event> = (0..3).map(ev).collect();
    for (i, e) in events.iter().enumerate() {
        let handle = publisher.publish_async(e).await.unwrap();
        let out = tokio::time::timeout(BOUND, handle).await.unwrap().unwrap();
        assert_eq!(out.ack().unwrap().sequence, i as u64 + 1);
    }
    let mut s = js.get_stream("AUTH_EVENTS").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, events.len() as u64);
    for (seq, e) in (1u64..).zip(&events) {
        let m = s.get_raw_message(seq).await.unwrap();
        assert!(
            m.headers.get("Nats-Batch-Id").is_none(),
            "event {seq} went in a batch"
        );
        assert_eq!(m.headers.get("Nats-Msg-Id").unwrap().as_str(), e.id());
    }
    publisher.close(Duration::from_secs(10)).await.unwrap();
}
