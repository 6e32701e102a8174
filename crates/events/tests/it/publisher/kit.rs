//! A minimal nats-server spawner for the publisher tests, shaped like the `events-testkit`
//! API (`NatsServer::start`, `.kill()`, `.start_again()`, `NatsCluster::start(3)`,
//! `.stream_leader(name)`) so the tests can switch to the shared kit once it is on main.
//! A missing binary FAILS the test with install instructions.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, jetstream};

fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("nats-server");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "nats-server not found: run scripts/setup-nats.sh (installs it into .tools/nats/bin) \
         or set NATS_SERVER_BIN"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One nats-server process with a temporary store, `sync_interval: always`.
pub(super) struct NatsServer {
    child: Option<Child>,
    port: u16,
    name: String,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a single server with JetStream and waits until JetStream answers.
    pub(super) async fn start() -> NatsServer {
        let s = Self::spawn_node("n1", free_port(), None);
        s.wait_ready(Duration::from_secs(30)).await;
        s
    }

    fn spawn_node(name: &str, port: u16, cluster: Option<(u16, &[u16])>) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
             jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n"
        );
        if let Some((cport, routes)) = cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: pubtest\n  listen: 127.0.0.1:{cport}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut s = NatsServer {
            child: None,
            port,
            name: name.to_owned(),
            conf: conf_path,
            dir,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
    }

    async fn wait_ready(&self, bound: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Ok(c)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(self.url())).await
                && let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), jetstream::new(c).query_account())
                        .await
            {
                return;
            }
            assert!(
                start.elapsed() < bound,
                "nats-server {} not ready in {bound:?}; log:\n{}",
                self.name,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub(super) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client that keeps reconnecting (and retries its first connect).
    pub(super) async fn client(&self) -> Client {
        connect(&[self.url()]).await
    }

    /// The server's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// SIGKILL, and reap.
    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same server again (same port and store) and waits for JetStream.
    pub(super) async fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn();
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Last lines of the server log.
    pub(super) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for the given servers that retries its first connect and reconnects forever.
pub(super) async fn connect(urls: &[String]) -> Client {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    tokio::time::timeout(
        Duration::from_secs(10),
        ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)))
            .connect(addrs),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// A 3-node (or n-node) JetStream cluster.
pub(super) struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` routed nodes and waits until JetStream answers through each.
    pub(super) async fn start(n: usize) -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cports: Vec<u16> = ports.iter().map(|p| p.1).collect();
        let nodes: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (p, c))| Self::node(i, *p, *c, &cports))
            .collect();
        for node in &nodes {
            node.wait_ready(Duration::from_secs(60)).await;
        }
        NatsCluster { nodes }
    }

    fn node(i: usize, port: u16, cport: u16, cports: &[u16]) -> NatsServer {
        let routes: Vec<u16> = cports.iter().copied().filter(|p| *p != cport).collect();
        NatsServer::spawn_node(&format!("n{}", i + 1), port, Some((cport, &routes)))
    }

    /// Every node's client URL.
    pub(super) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// A client knowing every node.
    pub(super) async fn client(&self) -> Client {
        connect(&self.urls()).await
    }

    /// SIGKILL node `i`.
    pub(super) fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Index of the node leading `stream`.
    pub(super) async fn stream_leader(&self, stream: &str) -> usize {
        let js = jetstream::new(self.client().await);
        let start = Instant::now();
        loop {
            if let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), js.get_stream(stream)).await
                && let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), s.info()).await
                && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
                && let Some(i) = self.nodes.iter().position(|n| n.name() == leader)
            {
                return i;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no leader for {stream}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
