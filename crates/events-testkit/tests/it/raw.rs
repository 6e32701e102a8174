//! `publish_raw`: hostile frames reach the server, and the patched client survives them.

use std::time::Duration;

use base64::Engine as _;
use events_testkit::{NatsServer, RawMessage, publish_raw, unique_name};
use futures::StreamExt;

/// A header block that is not UTF-8, one without a colon, and a plain message: the client
/// subscribed to them receives all three on one connection, the broken blocks as the patched
/// async-nats hands them over (vendor/async-nats/PATCH.md), and the connection never drops.
#[tokio::test]
async fn unparsable_header_blocks_arrive_without_dropping_the_connection() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let subject = unique_name("raw").to_lowercase();
    let mut sub = client.subscribe(format!("{subject}.>")).await.unwrap();
    client.flush().await.unwrap();

    let bad_utf8 = RawMessage::with_headers(&format!("{subject}.a"), &[b"X-Bad: \x80\xff"], "one");
    let no_colon = RawMessage::with_headers(&format!("{subject}.b"), &[b"no colon here"], "two");
    let fine = RawMessage::with_headers(&format!("{subject}.c"), &[b"X-Good: yes"], "three");
    publish_raw(nats.port(), &[bad_utf8, no_colon, fine]).await;

    let mut got = Vec::new();
    for _ in 0..3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("a message within 5 s")
            .expect("subscription open");
        got.push(msg);
    }
    let raw = |m: &async_nats::Message| {
        let h = m.headers.as_ref().expect("headers");
        let v = h.get("Nats-Unparsed-Headers-Base64")?;
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str())
                .unwrap(),
        )
    };
    assert_eq!(
        raw(&got[0]).unwrap(),
        b"NATS/1.0\r\nX-Bad: \x80\xff\r\n\r\n"
    );
    assert_eq!(&got[0].payload[..], b"one");
    assert_eq!(raw(&got[1]).unwrap(), b"NATS/1.0\r\nno colon here\r\n\r\n");
    assert_eq!(raw(&got[2]), None);
    assert_eq!(
        got[2]
            .headers
            .as_ref()
            .unwrap()
            .get("X-Good")
            .unwrap()
            .as_str(),
        "yes"
    );
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    assert_eq!(
        client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// The sentinel header cannot be forged: a well-formed block that names it loses it.
#[tokio::test]
async fn the_unparsed_headers_sentinel_cannot_be_forged() {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let subject = unique_name("raw").to_lowercase();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let forged = RawMessage::with_headers(
        &subject,
        &[b"Nats-Unparsed-Headers-Base64: Zm9yZ2Vk", b"X-Other: 1"],
        "x",
    );
    publish_raw(nats.port(), &[forged]).await;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    let h = msg.headers.unwrap();
    assert!(h.get("Nats-Unparsed-Headers-Base64").is_none());
    assert_eq!(h.get("X-Other").unwrap().as_str(), "1");
}
