//! A JetStream cluster of `nats-server` processes on loopback, in a full route mesh.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, stream};
use tokio::time::{Instant, sleep, timeout};

use crate::config::{ClusterSpec, Options, Spec};
use crate::server::{NatsServer, NotReady, START_TIMEOUT, connect, new_temp_dir};
use crate::{SyncMode, ports};

/// How long `stream_leader` waits for the stream to report a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of each node's log quoted in a panic message.
const PANIC_LOG_LINES: usize = 15;
/// Fresh starts tried before giving up when a chosen port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Options for a [`NatsCluster`], from [`NatsCluster::builder`]; every node gets the same.
#[derive(Debug, Clone)]
pub struct NatsClusterBuilder {
    nodes: usize,
    options: Options,
}

impl Default for NatsClusterBuilder {
    fn default() -> Self {
        NatsClusterBuilder {
            nodes: 3,
            options: Options::default(),
        }
    }
}

impl NatsClusterBuilder {
    /// Number of nodes; 3 unless set.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// When JetStream fsyncs; [`SyncMode::Always`] unless set.
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.options.sync = mode;
        self
    }

    /// The largest message payload the servers accept, in bytes.
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.options.max_payload = Some(bytes);
        self
    }

    /// Config text appended to every node's config; see
    /// [`NatsServerBuilder::extra_config`](crate::NatsServerBuilder::extra_config).
    pub fn extra_config(mut self, config: impl Into<String>) -> Self {
        self.options.append_extra_config(config.into());
        self
    }

    /// Starts the cluster; see [`NatsCluster::start`].
    ///
    /// # Panics
    ///
    /// If `nodes` is below 2, or the cluster is not ready within 20 s.
    pub async fn start(self) -> NatsCluster {
        NatsCluster::start_with(self.nodes, self.options).await
    }
}

/// `n` JetStream servers on loopback that form one cluster: distinct client, cluster and
/// monitoring ports, distinct temporary stores, routes from every node to every other,
/// server names `n0`, `n1`, ...
///
/// Dropping it kills every node.
#[derive(Debug)]
pub struct NatsCluster {
    name: String,
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for the usual R3 tests) with `sync_interval: always`.
    ///
    /// Returns once every node's `/healthz` is ok (a JetStream meta leader is known) and
    /// a probe stream with `min(n, 5)` replicas can be created (it is deleted again).
    ///
    /// # Panics
    ///
    /// If `n` is below 2 (nats-server needs routes for a JetStream cluster), or the
    /// cluster is not ready within 20 s; the message holds the log tail of every node.
    pub async fn start(n: usize) -> NatsCluster {
        Self::builder().nodes(n).start().await
    }

    /// A builder for a cluster with non-default options.
    pub fn builder() -> NatsClusterBuilder {
        NatsClusterBuilder::default()
    }

    async fn start_with(n: usize, options: Options) -> NatsCluster {
        // nats-server refuses a JetStream cluster without routes, so one node is no
        // cluster; use `NatsServer` for that.
        assert!(
            n >= 2,
            "a cluster needs at least 2 nodes (got {n}); use NatsServer for one"
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cluster = NatsCluster::spawn(n, &options);
            match cluster.wait_ready().await {
                Ok(()) => return cluster,
                Err(NotReady::PortInUse) if attempt < PORT_ATTEMPTS => continue,
                Err(NotReady::PortInUse) => cluster.fail("a chosen port was taken, every time"),
                Err(NotReady::Failed(why)) => cluster.fail(&why),
            }
        }
    }

    fn spawn(n: usize, options: &Options) -> NatsCluster {
        let name = format!("testkit-{:06x}", ports::random_u64() & 0xFF_FFFF);
        let cluster_ports: Vec<u16> = (0..n).map(|_| ports::free_port()).collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, &cluster_port) in cluster_ports.iter().enumerate() {
            let dir = new_temp_dir();
            let spec = Spec {
                server_name: format!("n{i}"),
                port: ports::free_port(),
                monitor_port: ports::free_port(),
                store_dir: dir.path().join("store"),
                options: options.clone(),
                cluster: Some(ClusterSpec {
                    name: name.clone(),
                    port: cluster_port,
                    routes: cluster_ports
                        .iter()
                        .copied()
                        .filter(|&p| p != cluster_port)
                        .collect(),
                }),
            };
            nodes.push(NatsServer::prepare(dir, spec));
        }
        for node in &mut nodes {
            node.spawn();
        }
        NatsCluster { name, nodes }
    }

    /// Waits until every node is healthy, then until a probe stream with a replica on
    /// every node (at most 5) can be created.
    async fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no probe finished yet");
        // Phase 1: every node answers /healthz with ok (meta leader known).
        loop {
            for node in &mut self.nodes {
                if let Some(exited) = node.check_exit() {
                    return Err(match exited {
                        NotReady::Failed(why) => {
                            NotReady::Failed(format!("{}: {why}", node.name()))
                        }
                        port_in_use => port_in_use,
                    });
                }
            }
            let mut healthy = true;
            for node in &self.nodes {
                if let Err(why) = node.probe(0).await {
                    last = format!("{}: {why}", node.name());
                    healthy = false;
                    break;
                }
            }
            if healthy {
                break;
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Failed(format!(
                    "cluster not healthy within {START_TIMEOUT:?}; last probe: {last}"
                )));
            }
            sleep(Duration::from_millis(50)).await;
        }
        // Phase 2: a replicated stream can be created.
        let left = deadline.saturating_duration_since(Instant::now());
        let client = connect(self.urls()).await.map_err(NotReady::Failed)?;
        let js = jetstream::new(client);
        let probe = format!("TESTKIT_PROBE_{:06X}", ports::random_u64() & 0xFF_FFFF);
        let config = stream::Config {
            name: probe.clone(),
            subjects: vec![format!("testkit.probe.{probe}")],
            num_replicas: self.nodes.len().min(5),
            storage: stream::StorageType::Memory,
            ..Default::default()
        };
        loop {
            match timeout(Duration::from_secs(5), js.create_stream(config.clone())).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => last = format!("create probe stream: {e}"),
                Err(_) => last = "create probe stream: no answer within 5s".into(),
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Failed(format!(
                    "no replicated stream within {left:?} of the cluster turning healthy; \
                     last: {last}"
                )));
            }
            sleep(Duration::from_millis(100)).await;
        }
        match timeout(Duration::from_secs(5), js.delete_stream(&probe)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NotReady::Failed(format!("delete probe stream: {e}"))),
            Err(_) => Err(NotReady::Failed(
                "delete probe stream: no answer within 5s".into(),
            )),
        }
    }

    /// Panics with `msg` and the log tail of every node.
    fn fail(&self, msg: &str) -> ! {
        let mut out = format!("cluster {}: {msg}", self.name);
        for node in &self.nodes {
            out.push_str(&format!(
                "\n--- {} ({}): last {PANIC_LOG_LINES} lines of {} ---\n{}",
                node.name(),
                node.url(),
                node.log_path().display(),
                node.log_tail(PANIC_LOG_LINES)
            ));
        }
        panic!("{out}");
    }

    /// The cluster name (`cluster { name: ... }`), unique per cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Client URLs of all nodes, running or not, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// A new client that knows every node's URL and fails over between them (with the
    /// short reconnect backoff of [`NatsServer::client`]).
    ///
    /// # Panics
    ///
    /// If no node accepts a connection within 10 s.
    pub async fn client(&self) -> Client {
        connect(self.urls()).await.unwrap_or_else(|e| self.fail(&e))
    }

    /// A JetStream context on a new [`client`](Self::client).
    ///
    /// # Panics
    ///
    /// If no node accepts a connection within 10 s.
    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }

    /// Node `i` (server name `n{i}`).
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Node `i`, to stop or kill it directly.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// SIGKILL node `i` and wait for it to exit; see [`NatsServer::kill`].
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Gracefully stop node `i`; see [`NatsServer::stop`].
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub async fn stop(&mut self, i: usize) {
        self.nodes[i].stop().await;
    }

    /// Stops node `i` if it runs, and starts it again on the same ports with the same
    /// store. Returns once its `/healthz` is ok: it has rejoined the cluster, and the
    /// streams it holds are current.
    ///
    /// # Panics
    ///
    /// If `i` is out of range, or the node is not healthy within 20 s.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].restart().await;
    }

    /// Index of the node that leads `stream`, from the stream info's `cluster.leader`.
    ///
    /// Asks the running nodes, and waits (up to 15 s) while the stream has no leader, e.g.
    /// during an election after the old leader was killed.
    ///
    /// # Panics
    ///
    /// If no leader is reported within 15 s.
    pub async fn stream_leader(&self, stream: &str) -> usize {
        self.leader(&format!("stream {stream}"), async |js| {
            let found = js.get_stream(stream).await.map_err(|e| e.to_string())?;
            let cluster = found.cached_info().cluster.as_ref();
            Ok(cluster.and_then(|c| c.leader.clone()))
        })
        .await
    }

    /// Index of the node that leads the durable `consumer` of `stream`, from the consumer
    /// info's `cluster.leader`; waits like [`stream_leader`](Self::stream_leader).
    ///
    /// # Panics
    ///
    /// If no leader is reported within 15 s.
    pub async fn consumer_leader(&self, stream: &str, consumer: &str) -> usize {
        self.leader(&format!("consumer {stream}/{consumer}"), async |js| {
            let found = js.get_stream(stream).await.map_err(|e| e.to_string())?;
            let info = found
                .consumer_info(consumer)
                .await
                .map_err(|e| e.to_string())?;
            Ok(info.cluster.and_then(|c| c.leader))
        })
        .await
    }

    /// Polls `ask` on the running nodes until it names a leader; that node's index.
    async fn leader(
        &self,
        what: &str,
        ask: impl AsyncFn(&jetstream::Context) -> Result<Option<String>, String>,
    ) -> usize {
        let running: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.pid().is_some())
            .map(NatsServer::url)
            .collect();
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let client = connect(running).await.unwrap_or_else(|e| self.fail(&e));
        let js = jetstream::new(client);
        loop {
            let last = match timeout(Duration::from_secs(3), ask(&js)).await {
                Ok(Ok(Some(leader))) => match self.nodes.iter().position(|n| n.name() == leader) {
                    Some(i) => return i,
                    None => self.fail(&format!(
                        "{what}: leader {leader:?} is not a node of this cluster"
                    )),
                },
                Ok(Ok(None)) => "the info names no leader".to_owned(),
                Ok(Err(e)) => format!("info: {e}"),
                Err(_) => "info: no answer within 3s".to_owned(),
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{what}: no leader within {LEADER_TIMEOUT:?}; last: {last}"
                ));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// What each running node's replica of `stream` holds, `(node index, messages, last
    /// sequence)`, from its `/jsz`; a node without a replica reports `(i, 0, 0)`. After a
    /// fault heals, every replica of an R3 stream should report the same.
    ///
    /// # Panics
    ///
    /// If a running node's monitoring port does not answer with JSON within 5 s.
    pub async fn replica_states(&self, stream: &str) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.pid().is_none() {
                continue;
            }
            let jsz = node.monitor_json("/jsz?accounts=true&streams=true").await;
            let state = jsz["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .find(|s| s["name"] == stream)
                .map(|s| &s["state"]);
            let field = |name: &str| state.and_then(|s| s[name].as_u64()).unwrap_or(0);
            out.push((i, field("messages"), field("last_seq")));
        }
        out
    }

    /// The last `n_lines` lines of node `i`'s log.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn log_tail(&self, i: usize, n_lines: usize) -> String {
        self.nodes[i].log_tail(n_lines)
    }
}
