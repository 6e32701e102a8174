//! Integration tests: connection (bounded connect, auth, config checks, state).

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use events::connection::{AuthConfig, ConnectConfig, ConnectError, TlsConfig, connect};
use events_testkit::{NatsServer, nats_server_bin};
use tokio::time::{sleep, timeout};

/// Slack on top of a configured timeout: the machine is shared and loaded.
const MARGIN: Duration = Duration::from_secs(2);

fn config(url: &str, connect_timeout: Duration) -> ConnectConfig {
    ConnectConfig {
        connect_timeout,
        ..ConnectConfig::for_url(url)
    }
}

/// A loopback port that nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn refused_url_fails_fast_naming_the_url() {
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let limit = Duration::from_secs(3);
    let start = Instant::now();
    let err = connect(&config(&url, limit)).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(elapsed < limit + MARGIN, "took {elapsed:?}");
    assert!(matches!(err, ConnectError::Nats { .. }), "{err:?}");
    let shown = events::error_chain(&err);
    assert!(shown.contains(&url), "{shown}");
    assert!(shown.contains("could not connect to NATS"), "{shown}");
}

/// A server that accepts TCP connections and never says a word: the client would wait
/// for INFO. The connect must still end within the configured timeout.
#[tokio::test]
async fn silent_server_times_out_within_the_configured_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                Ok((sock, _)) = listener.accept() => held.push(sock),
            }
        }
    });

    let urls = vec![
        format!("nats://127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{}", closed_port()),
    ];
    let limit = Duration::from_millis(800);
    let cfg = ConnectConfig {
        urls: urls.clone(),
        connect_timeout: limit,
        ..ConnectConfig::default()
    };
    let start = Instant::now();
    let err = connect(&cfg).await.unwrap_err();
    let elapsed = start.elapsed();
    let _ = stop_tx.send(());
    timeout(Duration::from_secs(5), holder)
        .await
        .unwrap()
        .unwrap();

    assert!(elapsed < limit + MARGIN, "took {elapsed:?}");
    assert!(
        elapsed >= limit.min(Duration::from_millis(700)),
        "gave up too early: {elapsed:?}"
    );
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err:?}");
    let shown = err.to_string();
    for url in &urls {
        assert!(shown.contains(url.as_str()), "{shown}");
    }
}

#[tokio::test]
async fn two_auth_methods_are_refused_before_connecting() {
    let cfg = ConnectConfig {
        auth: AuthConfig {
            token: Some("t".into()),
            credentials_file: Some("/nonexistent/x.creds".into()),
            ..Default::default()
        },
        ..config(
            &format!("nats://127.0.0.1:{}", closed_port()),
            Duration::from_secs(1),
        )
    };
    let err = connect(&cfg).await.unwrap_err();
    let ConnectError::InvalidConfig { problems } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(problems[0].field, "auth");
    assert!(
        err.to_string().contains("found credentials_file and token"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_credentials_file_names_the_path() {
    let cfg = ConnectConfig {
        auth: AuthConfig {
            credentials_file: Some("/nonexistent/ops.creds".into()),
            ..Default::default()
        },
        ..config(
            &format!("nats://127.0.0.1:{}", closed_port()),
            Duration::from_secs(1),
        )
    };
    let err = connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ConnectError::File { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot read credentials file /nonexistent/ops.creds"
    );
}

#[tokio::test]
async fn missing_tls_files_name_the_path() {
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let cfg = ConnectConfig {
        tls: TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..config(&url, Duration::from_secs(1))
    };
    let err = connect(&cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read TLS CA file /nonexistent/ca.pem"
    );

    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, "not really a cert").unwrap();
    let cfg = ConnectConfig {
        tls: TlsConfig {
            cert_file: Some(cert),
            key_file: Some("/nonexistent/client.key".into()),
            ..Default::default()
        },
        ..config(&url, Duration::from_secs(1))
    };
    let err = connect(&cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read TLS client key /nonexistent/client.key"
    );
}

/// A core-NATS server (no JetStream) started with `--auth <token>`, killed on drop.
///
/// Not the test kit's `NatsServer`: its readiness probe connects without credentials, so
/// a server that requires a token never looks ready to it.
struct TokenServer {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    async fn start(token: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let child = tokio::process::Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(dir.path())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "token server on {url} not up");
            sleep(Duration::from_millis(50)).await;
        }
        TokenServer {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn token_auth_works_and_a_wrong_token_is_refused() {
    let server = TokenServer::start("s3cr3t-token").await;
    let with_token = |token: Option<&str>| ConnectConfig {
        auth: AuthConfig {
            token: token.map(str::to_owned),
            ..Default::default()
        },
        ..config(&server.url, Duration::from_secs(5))
    };

    let conn = connect(&with_token(Some("s3cr3t-token"))).await.unwrap();
    assert!(conn.is_connected());
    let mut sub = conn.client().subscribe("t.x").await.unwrap();
    conn.client().publish("t.x", "hi".into()).await.unwrap();
    let msg = timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"hi");

    for bad in [Some("wrong"), None] {
        let err = connect(&with_token(bad)).await.unwrap_err();
        assert!(matches!(err, ConnectError::Auth { .. }), "{bad:?}: {err:?}");
        let shown = err.to_string();
        assert!(shown.contains("refused the credentials"), "{shown}");
        assert!(shown.contains(&server.url), "{shown}");
    }
}

#[tokio::test]
async fn user_password_auth_through_the_test_kit() {
    // `no_auth_user` lets the kit's readiness probe in without credentials; a client that
    // does present credentials must present good ones.
    let nats = NatsServer::builder()
        .extra_config(
            "accounts { APP { jetstream: enabled, users: [ { user: app, password: \"pw-1\" } ] } }\n\
             no_auth_user: app",
        )
        .start()
        .await;
    let with = |password: &str| ConnectConfig {
        auth: AuthConfig {
            user: Some("app".into()),
            password: Some(password.into()),
            ..Default::default()
        },
        ..config(&nats.url(), Duration::from_secs(5))
    };
    let conn = connect(&with("pw-1")).await.unwrap();
    conn.jetstream().query_account().await.unwrap();

    let err = connect(&with("pw-2")).await.unwrap_err();
    assert!(matches!(err, ConnectError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn is_connected_follows_the_server() {
    let mut nats = NatsServer::start().await;
    let conn = connect(&ConnectConfig {
        reconnect: events::connection::ReconnectPolicy {
            max_reconnects: None,
            max_delay: Duration::from_millis(200),
        },
        ..config(&nats.url(), Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(conn.is_connected());

    nats.kill();
    wait_until(
        Duration::from_secs(15),
        || !conn.is_connected(),
        "disconnect",
    )
    .await;
    nats.start_again().await;
    wait_until(Duration::from_secs(20), || conn.is_connected(), "reconnect").await;
    conn.jetstream().query_account().await.unwrap();
}

async fn wait_until(limit: Duration, cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Issue #10, item 9: a service can start while NATS is down; the client connects once a
/// server answers on the URL.
#[tokio::test]
async fn connect_in_background_returns_at_once_and_connects_when_the_server_starts() {
    let mut nats = NatsServer::start().await;
    nats.kill();
    let cfg = ConnectConfig {
        reconnect: events::connection::ReconnectPolicy {
            max_reconnects: None,
            max_delay: Duration::from_millis(200),
        },
        ..config(&nats.url(), Duration::from_secs(5))
    };
    // The bounded connect fails while nothing listens...
    assert!(connect(&cfg).await.is_err());
    // ...the background one does not wait for a server.
    let start = Instant::now();
    let conn = events::connection::connect_in_background(&cfg)
        .await
        .expect("no server needed to start");
    assert!(start.elapsed() < MARGIN, "took {:?}", start.elapsed());
    assert!(!conn.is_connected());

    nats.start_again().await;
    wait_until(Duration::from_secs(20), || conn.is_connected(), "connect").await;
    timeout(Duration::from_secs(10), conn.jetstream().query_account())
        .await
        .expect("answer in time")
        .unwrap();
}

#[tokio::test]
async fn connect_in_background_still_checks_the_config() {
    let mut cfg = config("nats://127.0.0.1:4222", Duration::from_secs(1));
    cfg.auth.credentials_file = Some("/nonexistent/service.creds".into());
    let err = events::connection::connect_in_background(&cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::File { .. }), "{err:?}");
}
