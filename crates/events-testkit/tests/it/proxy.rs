//! The TCP proxy: it forwards, a cut closes connections and refuses new ones for its
//! duration, a stall holds bytes without closing anything.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State;
use events_testkit::{NatsServer, TcpProxy};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::{create_stream, message_count, publish_acked};

const BOUND: Duration = Duration::from_secs(20);

/// A client through `proxy` that reconnects quickly.
async fn client(proxy: &TcpProxy) -> async_nats::Client {
    timeout(
        BOUND,
        async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connect(proxy.url()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

async fn wait_state(client: &async_nats::Client, want: fn(&State) -> bool, what: &str) {
    let deadline = Instant::now() + BOUND;
    while !want(&client.connection_state()) {
        assert!(Instant::now() < deadline, "client never {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn proxy_forwards_jetstream_traffic() {
    let nats = NatsServer::start().await;
    let proxy = TcpProxy::start(nats.port()).await;
    let js = async_nats::jetstream::new(client(&proxy).await);
    create_stream(&js, "PROXIED", 1).await;
    for n in 1..=3u64 {
        assert_eq!(
            publish_acked(&js, "PROXIED.x".into(), n.to_string()).await,
            n
        );
    }
    assert_eq!(message_count(&js, "PROXIED").await, 3);
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn proxy_cut_drops_connections_and_refuses_new_ones_until_it_ends() {
    let nats = NatsServer::start().await;
    let proxy = TcpProxy::start(nats.port()).await;
    let client = client(&proxy).await;
    let cut = Duration::from_secs(2);
    let started = Instant::now();
    proxy.cut_for(cut);
    wait_state(&client, |s| *s != State::Connected, "saw the cut").await;

    // A new connection during the cut is closed before the server's INFO.
    let mut raw = TcpStream::connect(("127.0.0.1", proxy.port()))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(BOUND, raw.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "refused: closed without data, got {read:?}"
    );

    wait_state(&client, |s| *s == State::Connected, "reconnected").await;
    assert!(
        started.elapsed() >= cut,
        "reconnected only after the cut ended"
    );
    timeout(BOUND, client.flush()).await.unwrap().unwrap();
    assert_eq!(client.statistics().connects.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn proxy_stall_holds_bytes_without_closing_the_connection() {
    let nats = NatsServer::start().await;
    let proxy = TcpProxy::start(nats.port()).await;
    let js = async_nats::jetstream::new(client(&proxy).await);
    create_stream(&js, "STALLED", 1).await;
    let stall = Duration::from_secs(2);
    proxy.stall_for(stall);
    let ack = js.publish("STALLED.x", "held".into()).await.unwrap();
    // Nothing can come back while the stall lasts: the ack waits for it to end.
    let started = Instant::now();
    let ack = timeout(BOUND, ack)
        .await
        .expect("ack in time")
        .expect("ack");
    assert_eq!(ack.sequence, 1);
    assert!(started.elapsed() >= stall / 2, "the ack was held");
    assert_eq!(proxy.connections(), 1, "the connection was never dropped");
    assert_eq!(message_count(&js, "STALLED").await, 1);
}
