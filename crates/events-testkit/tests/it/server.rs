//! A single server: start, publish, restart, kill, options, drop.

use std::path::Path;
use std::time::{Duration, Instant};

use events_testkit::{NatsServer, SyncMode, unique_name};

use crate::{create_stream, message_count, publish_acked, read_back};

#[tokio::test]
async fn publish_to_a_stream_and_read_it_back() {
    let nats = NatsServer::start().await;
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    assert!(nats.store_dir().is_dir());
    let js = nats.jetstream().await;
    let name = unique_name("ORDERS");
    create_stream(&js, &name, 1).await;

    for i in 1..=3 {
        let seq = publish_acked(&js, format!("{name}.created"), format!("order {i}")).await;
        assert_eq!(seq, i);
    }

    assert_eq!(
        read_back(&js, &name, 3).await,
        ["order 1", "order 2", "order 3"]
    );
    // The store is really the temp dir we were given.
    assert!(nats.store_dir().join("jetstream").is_dir());
}

#[tokio::test]
async fn fsync_always_by_default() {
    let nats = NatsServer::start().await;
    let varz = nats.monitor_json("/varz").await;
    assert_eq!(varz["jetstream"]["config"]["sync_always"], true, "{varz:#}");
    assert!(nats.log_tail(5).lines().count() <= 5);
    assert!(nats.log_tail(1000).contains("Server is ready"));
}

#[tokio::test]
async fn builder_sets_sync_default_max_payload_and_extra_config() {
    let nats = NatsServer::builder()
        .sync(SyncMode::Default)
        .max_payload(2 * 1024 * 1024)
        .extra_config("max_connections: 50")
        .start()
        .await;
    let varz = nats.monitor_json("/varz").await;
    assert_ne!(varz["jetstream"]["config"]["sync_always"], true, "{varz:#}");
    assert_eq!(varz["max_payload"], 2 * 1024 * 1024);
    assert_eq!(varz["max_connections"], 50);
    let client = nats.client().await;
    assert_eq!(client.server_info().max_payload, 2 * 1024 * 1024);
}

#[tokio::test]
async fn restart_keeps_port_store_and_stream_contents() {
    let mut nats = NatsServer::start().await;
    let (port, store) = (nats.port(), nats.store_dir().to_owned());
    let js = nats.jetstream().await;
    let name = unique_name("RESTART");
    create_stream(&js, &name, 1).await;
    for i in 1..=5 {
        publish_acked(&js, format!("{name}.x"), format!("m{i}")).await;
    }
    let old_pid = nats.pid().unwrap();

    let started = Instant::now();
    nats.restart().await;
    eprintln!("restart (SIGTERM + start) took {:?}", started.elapsed());

    assert_ne!(nats.pid().unwrap(), old_pid);
    assert_eq!((nats.port(), nats.store_dir()), (port, store.as_path()));
    let js = nats.jetstream().await;
    assert_eq!(
        read_back(&js, &name, 5).await,
        ["m1", "m2", "m3", "m4", "m5"]
    );
    assert_eq!(
        publish_acked(&js, format!("{name}.x"), "m6".into()).await,
        6
    );
}

#[tokio::test]
async fn kill_then_start_again_keeps_acknowledged_messages() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let name = unique_name("CRASH");
    create_stream(&js, &name, 1).await;
    for i in 1..=20 {
        publish_acked(&js, format!("{name}.x"), format!("m{i}")).await;
    }

    let pid = nats.pid().unwrap();
    nats.kill();
    assert_eq!(nats.pid(), None);
    assert!(!nats.is_running());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed process left a zombie"
    );
    // While it is down, nobody listens on its port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats.port())).is_err());

    // Right after SIGKILL: the same port must be bindable again (SO_REUSEADDR).
    let started = Instant::now();
    nats.start_again().await;
    eprintln!("start_again after SIGKILL took {:?}", started.elapsed());

    let js = nats.jetstream().await;
    assert_eq!(message_count(&js, &name).await, 20);
    let expected: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
    assert_eq!(read_back(&js, &name, 20).await, expected);
}

#[tokio::test]
async fn an_old_client_reconnects_after_start_again() {
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let name = unique_name("RECONNECT");
    create_stream(&js, &name, 1).await;
    nats.kill();
    nats.start_again().await;
    // The kit's clients back off for at most 250 ms, so the old one is back quickly.
    let seq = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match js.publish(format!("{name}.x"), "again".into()).await {
                Ok(ack) => match ack.await {
                    Ok(ack) => break ack.sequence,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("old client did not get back within 5s");
    assert_eq!(seq, 1);
}

#[tokio::test]
async fn drop_kills_the_server_and_removes_its_dir() {
    let nats = NatsServer::start().await;
    let pid = nats.pid().unwrap();
    let store = nats.store_dir().to_owned();
    let port = nats.port();
    drop(nats);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process or zombie left behind"
    );
    assert!(!store.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn stop_is_graceful_and_idempotent() {
    let mut nats = NatsServer::start().await;
    let started = Instant::now();
    nats.stop().await;
    eprintln!("stop (SIGTERM) took {:?}", started.elapsed());
    assert!(
        nats.log_tail(20).contains("stopped (SIGTERM)"),
        "{}",
        nats.log_tail(20)
    );
    nats.stop().await;
    nats.kill();
    nats.start_again().await;
    assert!(nats.pid().is_some());
}

#[tokio::test]
#[should_panic(expected = "exited while starting")]
async fn a_server_that_cannot_start_panics_with_its_log() {
    NatsServer::builder()
        .extra_config("this is { not valid")
        .start()
        .await;
}

#[tokio::test]
async fn create_stream_when_ready_accepts_an_identical_config_and_refuses_a_conflict_at_once() {
    use async_nats::jetstream::stream;
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let name = unique_name("TWICE");
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    };
    let bound = Duration::from_secs(30);
    events_testkit::create_stream_when_ready(&js, config.clone(), bound).await;
    let again = events_testkit::create_stream_when_ready(&js, config.clone(), bound).await;
    assert_eq!(again.cached_info().config.name, name);

    let conflict = stream::Config {
        subjects: vec![format!("{name}.other.>")],
        storage: stream::StorageType::Memory,
        ..config
    };
    let started = Instant::now();
    let refused = tokio::spawn(async move {
        events_testkit::create_stream_when_ready(&js, conflict, bound).await;
    })
    .await
    .expect_err("a conflicting config must panic");
    let why = refused.into_panic();
    let why = why
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(why.starts_with(&format!("create stream {name}: ")), "{why}");
    // Refused on the first answer, not retried until the bound.
    assert!(
        started.elapsed() < bound / 3,
        "took {:?}",
        started.elapsed()
    );
}
