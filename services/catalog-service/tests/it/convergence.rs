//! Convergence under crashes (issue #11, item 7): 300 sign-ups through auth-service's HTTP
//! API from 4 concurrent clients while nats-server, auth-service and catalog-service are each
//! killed (SIGKILL) once and restarted. Within 60 s after the last answer, the users in
//! auth-service's database, the distinct events in AUTH_EVENTS and the users in the catalog
//! are the same set; every 2xx answer is in all three; nothing is duplicated. On SQLite,
//! and once on PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::Event;
use events_testkit::{NatsServer, PgServer, free_loopback_addr};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout};

use super::apply_topology;

const USERS: usize = 300;
const CLIENTS: usize = 4;
const ORG: &str = "org-chaos";
/// How long the three sets may take to agree after the last answer.
const CONVERGE: Duration = Duration::from_secs(60);
/// Bound on the whole sign-up phase (every request retried until it is answered).
const SIGN_UPS: Duration = Duration::from_secs(180);

/// The auth-service binary: next to catalog-service's (cargo builds every binary of the
/// workspace for `--workspace` test runs), built here if this run did not.
fn auth_service_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_catalog-service")).with_file_name("auth-service");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--locked",
                "-p",
                "auth-service",
                "--bin",
                "auth-service",
            ])
            .status()
            .expect("cargo build -p auth-service runs");
        assert!(status.success(), "cargo build -p auth-service failed");
    }
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

/// One service process: its command line, kept to start it again after a kill.
struct Proc {
    name: &'static str,
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
    child: Child,
    ready: SocketAddr,
}

impl Proc {
    async fn start(
        name: &'static str,
        bin: PathBuf,
        env: Vec<(&'static str, String)>,
        ready: SocketAddr,
    ) -> Proc {
        let child = spawn(&bin, &env);
        let mut p = Proc {
            name,
            bin,
            env,
            child,
            ready,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some((status, _))) = timeout(
                Duration::from_secs(2),
                request(self.ready, "GET", "/readyz", ""),
            )
            .await
                && status == 200
            {
                return;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("{} exited before it was ready: {exit}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 60 s",
                self.name
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL and start again on the same database and ports; returns once it is ready.
    async fn kill_and_restart(&mut self) {
        self.child.kill().await.expect("SIGKILL");
        self.child = spawn(&self.bin, &self.env);
        self.wait_ready().await;
    }
}

fn spawn(bin: &PathBuf, env: &[(&'static str, String)]) -> Child {
    let mut cmd = Command::new(bin);
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a service")
}

/// One HTTP/1.1 request over a fresh connection: `None` on a connection error (the service
/// is down), else the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// What the clients saw.
#[derive(Default)]
struct Answers {
    /// User ids of 2xx answers.
    created: BTreeSet<String>,
    /// Sign-ups answered 409 on a retry (committed by an earlier try whose answer was lost).
    conflicts: usize,
    /// Tries that found auth-service down (or got a 5xx) and were repeated.
    retries: usize,
}

/// Signs up users `first..first + n`, each retried until it is answered 201 or 409.
async fn client(
    api: SocketAddr,
    users: std::ops::Range<usize>,
    done: Arc<AtomicUsize>,
    answers: Arc<Mutex<Answers>>,
) {
    for i in users {
        let body = json!({"email": format!("u{i}@chaos.example"), "name": format!("User {i}"), "organization_id": ORG}).to_string();
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = timeout(
                Duration::from_secs(10),
                request(api, "POST", "/users", &body),
            )
            .await
            .ok()
            .flatten();
            match answer {
                Some((201, b)) => {
                    let v: Value = serde_json::from_str(&b).expect("a JSON answer");
                    let id = v["user"]["id"].as_str().expect("the user id").to_owned();
                    answers.lock().unwrap().created.insert(id);
                    break;
                }
                Some((409, _)) if tries > 1 => {
                    answers.lock().unwrap().conflicts += 1;
                    break;
                }
                Some((status, b)) if status < 500 => panic!("sign-up {i}: {status} {b}"),
                // Down, or 5xx (e.g. the database busy): retry the same request.
                _ => {
                    answers.lock().unwrap().retries += 1;
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
        // Paced, so that the kills land in the middle of the traffic.
        sleep(Duration::from_millis(15)).await;
    }
}

/// Waits (bounded) until `done` reaches `n`.
async fn until(done: &AtomicUsize, n: usize) {
    timeout(SIGN_UPS, async {
        while done.load(Ordering::SeqCst) < n {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} sign-ups not answered within {SIGN_UPS:?}"));
}

/// The user ids auth-service lists for ORG (all pages), and the number of rows.
async fn auth_users(api: SocketAddr) -> Option<(BTreeSet<String>, usize)> {
    let mut ids = BTreeSet::new();
    let mut rows = 0;
    let mut after = String::new();
    loop {
        let path = format!("/users?organization_id={ORG}&limit=1000&after={after}");
        let (status, body) = request(api, "GET", &path, "").await?;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        for u in v["users"].as_array()? {
            ids.insert(u["id"].as_str()?.to_owned());
            rows += 1;
        }
        match v["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return Some((ids, rows)),
        }
    }
}

/// The user ids in the catalog of ORG, and the number of rows.
async fn catalog_users(admin: SocketAddr) -> Option<(BTreeSet<String>, usize)> {
    let (status, body) = request(admin, "GET", &format!("/catalogs/{ORG}"), "").await?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let users = v["users"].as_array()?;
    let ids = users
        .iter()
        .filter_map(|u| Some(u["user_id"].as_str()?.to_owned()))
        .collect();
    Some((ids, users.len()))
}

/// The subjects (user ids) of AUTH_EVENTS's events by event id, and the message count.
async fn stream_users(nats: &NatsServer) -> Option<(BTreeMap<String, String>, usize)> {
    let js = nats.jetstream().await;
    let mut stream = js.get_stream("AUTH_EVENTS").await.ok()?;
    let state = stream.info().await.ok()?.state.clone();
    let mut by_event = BTreeMap::new();
    let mut messages = 0;
    if state.messages > 0 {
        for seq in state.first_sequence..=state.last_sequence {
            let m = stream.get_raw_message(seq).await.ok()?;
            let ev = Event::decode(Some(&m.headers), &m.payload).expect("a valid event");
            assert_eq!(ev.event_type().as_str(), "auth.user.created");
            by_event.insert(ev.id().to_owned(), ev.subject()?.to_owned());
            messages += 1;
        }
    }
    Some((by_event, messages))
}

/// The scenario; `db_urls` gives each service its database.
async fn converge_under_crashes(auth_db: String, catalog_db: String) {
    let mut nats = NatsServer::start().await;
    apply_topology(&nats.jetstream().await).await;
    let (api, auth_admin, catalog_admin) = (
        free_loopback_addr(),
        free_loopback_addr(),
        free_loopback_addr(),
    );
    let mut auth = Proc::start(
        "auth-service",
        auth_service_bin(),
        vec![
            ("EVENTS_NATS_URL", nats.url()),
            ("AUTH_SERVICE_LISTEN", api.to_string()),
            ("AUTH_SERVICE_ADMIN_LISTEN", auth_admin.to_string()),
            ("AUTH_SERVICE_DATABASE", auth_db),
        ],
        auth_admin,
    )
    .await;
    let mut catalog = Proc::start(
        "catalog-service",
        PathBuf::from(env!("CARGO_BIN_EXE_catalog-service")),
        vec![
            ("EVENTS_NATS_URL", nats.url()),
            ("CATALOG_SERVICE_ADMIN_LISTEN", catalog_admin.to_string()),
            ("CATALOG_SERVICE_DATABASE", catalog_db),
        ],
        catalog_admin,
    )
    .await;

    let done = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Answers::default()));
    let per = USERS / CLIENTS;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                api,
                c * per..(c + 1) * per,
                done.clone(),
                answers.clone(),
            ))
        })
        .collect();

    // The kills, each in the middle of the traffic (by answered sign-ups, not by time).
    until(&done, USERS / 6).await;
    nats.kill(); // sign-ups go on; the outbox holds their events
    until(&done, USERS / 3).await;
    nats.start_again().await;
    until(&done, USERS / 2).await;
    auth.kill_and_restart().await; // clients see connection errors and retry
    until(&done, 2 * USERS / 3).await;
    catalog.kill_and_restart().await;
    for c in clients {
        timeout(SIGN_UPS, c)
            .await
            .expect("clients finish")
            .expect("client ok");
    }

    // Converge: the three sets agree, within a bound.
    let (created, retries) = {
        let mut a = answers.lock().unwrap();
        (std::mem::take(&mut a.created), a.retries)
    };
    assert!(
        retries > 0,
        "the auth-service kill landed in the middle of the traffic"
    );
    let deadline = Instant::now() + CONVERGE;
    let (mut a, mut s, mut c);
    loop {
        a = auth_users(api).await;
        s = stream_users(&nats).await;
        c = catalog_users(catalog_admin).await;
        let agreed = matches!((&a, &s, &c), (Some((a, _)), Some((s, _)), Some((c, _)))
            if a.len() == USERS && s.len() == USERS && *a == s.values().cloned().collect::<BTreeSet<_>>() && a == c);
        if agreed || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(250)).await;
    }
    let (a, a_rows) = a.expect("auth-service answers");
    let (s, s_msgs) = s.expect("AUTH_EVENTS readable");
    let (c, c_rows) = c.expect("catalog-service answers");
    let s_users: BTreeSet<String> = s.values().cloned().collect();
    assert_eq!(a.len(), USERS, "users in auth-service's database");
    assert_eq!(
        (a_rows, s_msgs, c_rows),
        (USERS, USERS, USERS),
        "nothing duplicated"
    );
    assert_eq!(s.len(), USERS, "distinct events in AUTH_EVENTS");
    assert_eq!(s_users, a, "the stream's users are auth-service's");
    assert_eq!(c, a, "the catalog's users are auth-service's");
    assert!(created.is_subset(&a), "every 2xx answer is in all three");
    drop((auth, catalog));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_services_converge_after_killing_nats_auth_and_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let auth_db = format!("sqlite://{}/auth.db", dir.path().display());
    let catalog_db = format!("sqlite://{}/catalog.db", dir.path().display());
    converge_under_crashes(auth_db, catalog_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_services_converge_after_killing_nats_auth_and_catalog() {
    let pg = PgServer::start().await;
    let auth_db = pg.create_database("auth").await;
    let catalog_db = pg.create_database("catalog").await;
    converge_under_crashes(auth_db, catalog_db).await;
}
