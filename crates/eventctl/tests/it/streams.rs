//! `streams apply | list | info`.

use std::time::{Duration, Instant};

use events_testkit::NatsServer;

use crate::{
    apply, assert_code, declared_streams, eventctl, stderr, stdout, streams_toml, tempfile_dir,
};

#[tokio::test]
async fn apply_twice_then_the_second_says_nothing_changed() {
    let nats = NatsServer::start().await;
    let names = declared_streams();

    let first = apply(&nats.url()).await;
    assert_code(&first, 0);
    let out = stdout(&first);
    for name in &names {
        assert!(out.contains(&format!("stream {name}: created")), "{out}");
    }

    let second = apply(&nats.url()).await;
    assert_code(&second, 0);
    let out = stdout(&second);
    assert!(!out.contains("created"), "{out}");
    assert!(
        out.contains(&format!("no changes: {} stream(s)", names.len())),
        "{out}"
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_creates_nothing() {
    let nats = NatsServer::start().await;
    let file = streams_toml();
    let out = eventctl(
        &nats.url(),
        &[
            "streams",
            "apply",
            "--file",
            file.to_str().unwrap(),
            "--dry-run",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("would create"), "{}", stdout(&out));
    let list = eventctl(&nats.url(), &["streams", "list", "--json"]).await;
    assert_code(&list, 0);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn list_and_info_in_text_and_json() {
    let nats = NatsServer::start().await;
    assert_code(&apply(&nats.url()).await, 0);
    let names = declared_streams();

    let list = eventctl(&nats.url(), &["streams", "list"]).await;
    assert_code(&list, 0);
    let out = stdout(&list);
    assert!(out.starts_with("NAME"), "{out}");
    for name in &names {
        assert!(out.contains(name.as_str()), "{out}");
    }

    let list = eventctl(&nats.url(), &["streams", "list", "--json"]).await;
    assert_code(&list, 0);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut listed: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // Two messages in AUTH_EVENTS, so counts and times are set.
    let js = nats.jetstream().await;
    let bodies = ["{\"a\":1}", "{\"b\":2}"];
    for body in bodies {
        js.publish("auth.user.created", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let info = eventctl(&nats.url(), &["streams", "info", "AUTH_EVENTS"]).await;
    assert_code(&info, 0);
    let out = stdout(&info);
    for key in [
        "Messages:",
        "Bytes:",
        "First:",
        "Last:",
        "Consumers:",
        "Max age:",
        "Max bytes:",
    ] {
        assert!(out.contains(key), "{key} missing:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("Messages:") && l.ends_with(&bodies.len().to_string())),
        "{out}"
    );

    let info = eventctl(&nats.url(), &["streams", "info", "AUTH_EVENTS", "--json"]).await;
    assert_code(&info, 0);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["name"], "AUTH_EVENTS");
    assert_eq!(v["messages"], bodies.len());
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert!(
        v["first_time"].is_string() && v["last_time"].is_string(),
        "{v}"
    );
    assert_eq!(v["limits"]["max_bytes"], 1u64 << 30);
    assert_eq!(v["limits"]["max_age_seconds"], 7 * 86_400);
    assert_eq!(v["limits"]["discard"], "old");

    let dlq = eventctl(&nats.url(), &["streams", "info", "DLQ_EVENTS", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&dlq.stdout).unwrap();
    assert_eq!(v["limits"]["discard"], "new");
    assert!(v["first_time"].is_null(), "{v}");
}

#[tokio::test]
async fn a_bad_flag_is_a_usage_error() {
    let out = eventctl(
        "nats://127.0.0.1:4222",
        &["streams", "list", "--no-such-flag"],
    )
    .await;
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
    let out = eventctl(
        "nats://127.0.0.1:4222",
        &["streams", "apply", "--profile", "qa"],
    )
    .await;
    assert_code(&out, 2);
}

#[tokio::test]
async fn an_unknown_stream_is_a_failure() {
    let nats = NatsServer::start().await;
    let out = eventctl(&nats.url(), &["streams", "info", "NOPE_EVENTS"]).await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.starts_with("error: stream NOPE_EVENTS not found"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "printed once: {err}");
}

#[tokio::test]
async fn an_unreachable_server_fails_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let start = Instant::now();
    let out = eventctl(&url, &["--connect-timeout", "1s", "streams", "list"]).await;
    let elapsed = start.elapsed();
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("could not connect to NATS at"), "{err}");
    assert!(err.contains(&url), "{err}");
    // Process start-up included; the connect itself is bounded by 1 s.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn a_spec_error_names_the_file_and_line() {
    let dir = tempfile_dir();
    let file = dir.join("streams.toml");
    std::fs::write(
        &file,
        "[profiles.dev]\n\n[[streams]]\nname = \"A\"\nsubjects = [\"a.>\"]\nmax_age = \"soon\"\n",
    )
    .unwrap();
    // No server needed: the file is checked first.
    let out = eventctl(
        "nats://127.0.0.1:1",
        &["streams", "apply", "--file", file.to_str().unwrap()],
    )
    .await;
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: {}, line 6, column ", file.display())),
        "{err}"
    );
    assert!(err.contains("invalid duration \"soon\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
