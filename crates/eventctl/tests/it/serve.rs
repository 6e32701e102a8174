//! `serve`: the admin server on a free port, then SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::time::timeout;

use crate::{NatsServer, assert_code, eventctl, server_with_topology, stderr};

/// A running `eventctl serve` and the address it printed.
struct Served {
    child: Child,
    addr: String,
    stderr: BufReader<ChildStderr>,
    startup: String,
}

async fn serve(url: &str, extra: &[&str], token_hashes_env: Option<&str>) -> Served {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventctl"));
    cmd.args(["--server", url, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("EVENTS_NATS_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match token_hashes_env {
        Some(v) => cmd.env("EVENTS_ADMIN_TOKEN_HASHES", v),
        None => cmd.env_remove("EVENTS_ADMIN_TOKEN_HASHES"),
    };
    let mut child = cmd.spawn().expect("eventctl serve starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut startup = String::new();
    let addr = timeout(Duration::from_secs(20), async {
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).await.unwrap();
            assert!(n > 0, "serve exited before listening:\n{startup}");
            startup.push_str(&line);
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("serve printed its address within 20 s");
    Served {
        child,
        addr,
        stderr,
        startup,
    }
}

/// A raw HTTP/1.0 GET; returns the status code and the body.
async fn get(addr: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    })
    .await
    .expect("HTTP answer within 10 s")
}

/// SIGTERM, then the exit code within a bound, and the rest of stderr.
async fn terminate(mut served: Served) -> (Option<i32>, String) {
    let pid = served.child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = timeout(Duration::from_secs(15), served.child.wait())
        .await
        .expect("serve stopped within 15 s of SIGTERM")
        .unwrap();
    let mut rest = String::new();
    served.stderr.read_to_string(&mut rest).await.unwrap();
    (status.code(), rest)
}

#[tokio::test]
async fn serves_health_and_dlq_with_a_token_then_stops_on_sigterm() {
    let nats = server_with_topology().await;
    let secret = "s3cret-token-for-tests";
    // One token from the flag, two from the environment (comma-separated).
    let flag = format!("ops:{}", events_admin::hash_token(secret));
    let env = format!(
        "ci:{},oncall:{}",
        events_admin::hash_token("another"),
        events_admin::hash_token("third")
    );
    let served = serve(&nats.url(), &["--admin-token-hash", &flag], Some(&env)).await;
    // The flag replaces the environment's list (clap: the command line wins).
    assert!(
        served.startup.contains("1 admin token(s) configured"),
        "{}",
        served.startup
    );
    let addr = served.addr.clone();

    assert_eq!(get(&addr, "/healthz", None).await.0, 200);
    assert_eq!(get(&addr, "/readyz", None).await.0, 200);
    let (status, metrics) = get(&addr, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("events_admin_requests_total"), "{metrics}");

    let (status, body) = get(&addr, "/api/v1/events/dlq", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&addr, "/api/v1/events/dlq", Some("wrong")).await.0, 401);
    let (status, body) = get(&addr, "/api/v1/events/dlq", Some(secret)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");

    let (code, rest) = terminate(served).await;
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[tokio::test]
async fn without_a_token_the_dlq_api_is_refused() {
    let nats = NatsServer::start().await;
    let served = serve(&nats.url(), &[], None).await;
    assert!(
        served.startup.contains("no admin token configured"),
        "{}",
        served.startup
    );
    assert_eq!(get(&served.addr, "/healthz", None).await.0, 200);
    let (status, body) = get(&served.addr, "/api/v1/events/dlq", Some("anything")).await;
    assert_eq!(status, 403, "{body}");
    let (code, rest) = terminate(served).await;
    assert_eq!(code, Some(0), "{rest}");
}

#[tokio::test]
async fn tokens_from_the_environment_and_a_file() {
    let nats = server_with_topology().await;
    let dir = crate::tempfile_dir();
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!(
            "# ops team\n\nfile-ops:{}\n",
            events_admin::hash_token("from-file")
        ),
    )
    .unwrap();
    owner_only(&file);
    let env = format!(
        "ci:{}, oncall:{}",
        events_admin::hash_token("from-env"),
        events_admin::hash_token("third")
    );
    let served = serve(
        &nats.url(),
        &["--admin-tokens-file", file.to_str().unwrap()],
        Some(&env),
    )
    .await;
    assert!(
        served.startup.contains("3 admin token(s) configured"),
        "{}",
        served.startup
    );
    for (token, status) in [("from-file", 200), ("from-env", 200), ("nope", 401)] {
        let (got, body) = get(&served.addr, "/api/v1/events/dlq", Some(token)).await;
        assert_eq!(got, status, "{token}: {body}");
    }
    let (code, rest) = terminate(served).await;
    assert_eq!(code, Some(0), "{rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_token_config_and_flags() {
    let dir = crate::tempfile_dir();
    let file = dir.join("tokens");
    std::fs::write(&file, "# ops team\n\nops:abc\n").unwrap();
    owner_only(&file);
    let err = refused_token_file(&file).await;
    assert!(
        err.contains(&format!("{}, line 3", file.display())),
        "{err}"
    );
    assert!(err.contains("expected 64 hex digits"), "{err}");
    let out = eventctl(
        "nats://127.0.0.1:1",
        &["serve", "--admin-token-hash", "nocolon"],
    )
    .await;
    assert_code(&out, 2);
    let out = eventctl("nats://127.0.0.1:1", &["serve", "--listen", "localhost"]).await;
    assert_code(&out, 2);
    crate::assert_unreachable_fails(&["serve", "--listen", "127.0.0.1:0"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` with the token file `file` must stop at start (exit 1); returns its stderr.
async fn refused_token_file(file: &std::path::Path) -> String {
    let out = eventctl(
        "nats://127.0.0.1:1",
        &["serve", "--admin-tokens-file", file.to_str().unwrap()],
    )
    .await;
    assert_code(&out, 1);
    stderr(&out)
}

fn owner_only(file: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = crate::tempfile_dir();
    let file = dir.join("tokens");
    let hash = events_admin::hash_token("x");
    std::fs::write(&file, format!("ops:admin:{hash}\n")).unwrap();
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = refused_token_file(&file).await;
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serves_the_schema_discovery_document_with_producers_and_consumers() {
    let nats = NatsServer::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let set = events::schema::SchemaSet::from_dir(std::path::Path::new(dir)).unwrap();
    let served = serve(&nats.url(), &["--schemas", dir], None).await;
    let addr = served.addr.clone();

    let (status, body) = get(&addr, "/api/v1/events/schemas", None).await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let types = doc["types"].as_array().unwrap();
    assert_eq!(types.len(), set.latest().count(), "{doc}");
    // From schemas/catalog.toml: producer and consumed_by.
    let created = types
        .iter()
        .find(|t| t["type"] == "auth.user.created")
        .unwrap();
    assert_eq!(created["producers"], serde_json::json!(["auth-service"]));
    assert_eq!(created["consumers"], serde_json::json!(["catalog-service"]));
    let org = types
        .iter()
        .find(|t| t["type"] == "auth.organization.created")
        .unwrap();
    assert_eq!(org["consumers"], serde_json::json!([]));
    // The schema by its URL.
    let url = created["versions"][0]["schemaurl"].as_str().unwrap();
    let (status, body) = get(&addr, url, None).await;
    assert_eq!(status, 200, "{body}");
    let schema: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(schema["$id"], "urn:events:schema:auth.user.created:1.0");

    let (code, _) = terminate(served).await;
    assert_eq!(code, Some(0));
}
