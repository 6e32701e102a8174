//! Publishes in flight when the connection breaks are sent again, with the same ids, as soon
//! as the connection is back, not after the ack timeout.

use super::*;

#[tokio::test]
async fn publishes_lost_with_a_connection_are_sent_again_once_reconnected() {
    let nats = NatsServer::start().await;
    let admin = nats.jetstream().await;
    create_stream(&admin, "AUTH_EVENTS", "auth.>", 1).await;
    let proxy = TcpProxy::start(nats.port()).await;
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)))
        .connect(proxy.url())
        .await
        .expect("connect through the proxy");
    // An ack timeout and retry waits far longer than a restart: only noticing the reconnect
    // can settle the lost publishes before they run out.
    let ack_timeout = Duration::from_secs(30);
    let cfg = PublisherConfig {
        ack_timeout,
        deadline: Duration::from_secs(100),
        retry: RetryPolicy {
            max_retries: 3,
            initial_backoff: ack_timeout,
            max_backoff: ack_timeout,
            ..RetryPolicy::default()
        },
        batch: BatchConfig {
            enabled: false,
            ..BatchConfig::default()
        },
        ..PublisherConfig::new("auth-service")
    };
    let publisher = Publisher::new(client, cfg).await.unwrap();
    const N: usize = 20;
    // The server stops reading: the publishes leave the client and wait, unanswered.
    nats.pause().await;
    let before = proxy.bytes_from_clients();
    let mut handles = Vec::new();
    for n in 0..N {
        let h = publisher.publish_async(&ev(n)).await;
        handles.push(h.expect("accepted into the window"));
    }
    let deadline = Instant::now() + BOUND;
    while proxy.bytes_from_clients() < before + N as u64 * 100 {
        assert!(
            Instant::now() < deadline,
            "the publishes never left the client"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Then the link breaks and comes back after a moment; the server, running again, may
    // store what it had received, but its answers went with the old connection.
    proxy.cut_for(Duration::from_millis(300));
    nats.resume().await;
    let started = Instant::now();
    let settled = tokio::time::timeout(ack_timeout / 2, async {
        let mut out = Vec::new();
        for h in handles.drain(..) {
            out.push(h.await);
        }
        out
    })
    .await
    .expect("every lost publish settled before its ack timeout");
    for r in &settled {
        assert!(
            matches!(r, Ok(PublishOutcome::Stored(_))),
            "stored after the reconnect: {r:?}"
        );
    }
    let ids = count_ids(&stored(&nats.jetstream().await, "AUTH_EVENTS").await);
    assert_eq!(ids.len(), N, "every event stored");
    assert!(ids.values().all(|&c| c == 1), "each once: {ids:?}");
    eprintln!(
        "settled {N} lost publishes {:?} after the cut",
        started.elapsed()
    );
    publisher.close(BOUND).await.unwrap();
}
