//! CLI tests: the real `eventctl` binary against a test-kit nats-server, one module per
//! command group. Helpers shared by the modules live here.

mod audit;
mod auth;
mod bench;
mod dlq;
mod doctor;
mod lag;
mod publish;
mod replay;
mod schema;
mod serve;
mod streams;
mod tail;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

pub(crate) use events_testkit::NatsServer;
use tokio::process::Command;

/// The shipped topology file.
fn streams_toml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/streams.toml")
}

/// Runs `eventctl --server <url> <args>` with a bound; the environment cannot leak in a URL.
async fn eventctl(url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventctl"));
    cmd.arg("--server")
        .arg(url)
        .args(args)
        .env_remove("EVENTS_NATS_URL")
        .env_remove("EVENTS_NATS_TOKEN")
        .env_remove("EVENTS_NATS_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("eventctl finished within 60 s")
        .expect("eventctl ran")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The stream names the shipped file declares.
fn declared_streams() -> Vec<String> {
    let text = std::fs::read_to_string(streams_toml()).unwrap();
    let spec = events::topology::TopologySpec::from_toml(&text, "streams.toml", "dev").unwrap();
    spec.streams.iter().map(|s| s.name.to_string()).collect()
}

/// stdout parsed as one JSON document.
#[track_caller]
fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// stdout parsed as one JSON object per line.
#[track_caller]
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A server with the shipped topology applied through `eventctl streams apply`.
async fn server_with_topology() -> NatsServer {
    let nats = NatsServer::start().await;
    assert_code(&apply(&nats.url()).await, 0);
    nats
}

/// A URL where nothing listens (a port just freed).
fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("nats://127.0.0.1:{port}")
}

/// Runs `args` against an unreachable server and checks exit 1 naming the URL.
async fn assert_unreachable_fails(args: &[&str]) {
    let url = unreachable_url();
    let mut all = vec!["--connect-timeout", "1s"];
    all.extend_from_slice(args);
    let out = eventctl(&url, &all).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("could not connect to NATS at"), "{err}");
    assert!(err.contains(&url), "{err}");
}

async fn apply(url: &str) -> Output {
    let file = streams_toml();
    eventctl(
        url,
        &[
            "streams",
            "apply",
            "--file",
            file.to_str().unwrap(),
            "--profile",
            "dev",
        ],
    )
    .await
}

/// A fresh directory under the target's temp dir (no extra dev-dependency for this).
fn tempfile_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "eventctl-it-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
