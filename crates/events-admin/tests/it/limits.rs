//! Issue #10, item 8: the admin server cannot be exhausted by idle, half-sent or slow
//! connections (header-read, idle and request timeouts, connection cap), and answers 405
//! with a JSON body. On a real socket, against a real nats-server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use events_admin::{
    AdminState, AdminToken, HttpLimits, hash_token, raise_open_files_limit, router, serve_router,
};
use events_testkit::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "limits-test-admin-secret";

/// A running admin server with `limits`; stopped (and awaited) by [`Server::stop`].
struct Server {
    _nats: NatsServer,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), events_admin::ServeError>>,
}

impl Server {
    async fn start(limits: HttpLimits) -> Self {
        let nats = NatsServer::start().await;
        let token = AdminToken::parse(&format!("ops:{}", hash_token(SECRET))).unwrap();
        let state = AdminState::new(nats.client().await).with_token(token);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_router(
            listener,
            router(state),
            limits,
            shutdown.child_token(),
        ));
        Self {
            _nats: nats,
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("server stops within bound")
            .unwrap()
            .expect("clean stop");
    }
}

/// Sends `raw` on a fresh connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer within bound")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Time until the server closes `s` (EOF or reset), bounded by `bound`.
async fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| t.elapsed())
}

/// Idle connections plus connections that sent half a request head.
async fn open_idle_and_half_sent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect within bound")
            .unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        conns.push(s);
    }
    conns
}

#[tokio::test]
async fn admin_healthz_answers_within_a_second_under_thousands_of_idle_connections() {
    // Both ends of every connection live in this process: two descriptors each.
    let soft = raise_open_files_limit().unwrap().unwrap_or(u64::MAX);
    let n = usize::try_from(soft.saturating_sub(1024) / 2)
        .unwrap_or(usize::MAX)
        .min(4_000);
    assert!(n >= 500, "open-files limit {soft} too low for this test");
    let header_read = Duration::from_secs(3);
    let server = Server::start(HttpLimits::default().with_header_read_timeout(header_read)).await;
    let mut conns = open_idle_and_half_sent(server.addr, n).await;

    let t = Instant::now();
    let res = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "/healthz took {:?} with {n} idle connections",
        t.elapsed()
    );

    // And every one of them is shed after the header-read timeout, freeing its descriptor.
    let bound = header_read + Duration::from_secs(10);
    for (i, s) in conns.iter_mut().enumerate() {
        assert!(
            closed_within(s, bound).await.is_some(),
            "connection {i} of {n} still open after {bound:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn admin_closes_idle_and_half_sent_connections_after_the_header_read_timeout() {
    let header_read = Duration::from_secs(1);
    let server = Server::start(HttpLimits::default().with_header_read_timeout(header_read)).await;
    let opened = Instant::now();
    let mut conns = open_idle_and_half_sent(server.addr, 2).await;
    let slack = Duration::from_secs(5);
    for s in &mut conns {
        closed_within(s, header_read + slack)
            .await
            .expect("closed by the server");
    }
    let took = opened.elapsed();
    assert!(took >= header_read / 2, "closed too early: {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn admin_closes_a_keep_alive_connection_idle_past_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let limits = HttpLimits::default()
        .with_header_read_timeout(Duration::from_secs(60))
        .with_idle_timeout(idle);
    let server = Server::start(limits).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closed_within(&mut s, idle + Duration::from_secs(5))
        .await
        .expect("idle keep-alive connection closed");
    assert!(took >= idle / 2, "closed too early: {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn admin_answers_408_to_a_request_whose_body_never_ends() {
    let limit = Duration::from_secs(1);
    let server = Server::start(HttpLimits::default().with_request_timeout(limit)).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events/dlq/replay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {SECRET}\r\nContent-Length: 100\r\n\r\n{{\"max"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answered and closed within bound")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("request_timeout"), "{out}");
    assert!(
        t.elapsed() < limit + Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_answers_405_with_a_json_error() {
    let server = Server::start(HttpLimits::default()).await;
    let res = exchange(
        server.addr,
        "PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 405"), "{res}");
    let body = res.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["error"]["code"], "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn admin_holds_at_most_max_connections_at_once() {
    let cap = 4;
    let header_read = Duration::from_secs(2);
    let limits = HttpLimits::default()
        .with_header_read_timeout(header_read)
        .with_max_connections(cap);
    let server = Server::start(limits).await;
    let _held = open_idle_and_half_sent(server.addr, cap).await;
    // One more connection is accepted only once a held one is shed.
    let t = Instant::now();
    let res = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        t.elapsed() >= header_read / 2,
        "answered at once ({:?}): the cap of {cap} was not applied",
        t.elapsed()
    );
    server.stop().await;
}
