//! One `nats-server` process with JetStream: start, stop, kill, start again, inspect.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};
use tempfile::TempDir;
use tokio::time::{Instant, sleep, timeout};

use crate::config::{Options, Spec, SyncMode};
use crate::{http, nats_server_bin, ports};

/// How long a server may take from spawn until JetStream answers.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `client()` may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of the server log quoted in a panic message.
const PANIC_LOG_LINES: usize = 40;
/// Fresh starts tried before giving up when a chosen port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Options for a [`NatsServer`], from [`NatsServer::builder`].
///
/// ```no_run
/// # use events_testkit::{NatsServer, SyncMode};
/// # async fn example() {
/// let nats = NatsServer::builder()
///     .sync(SyncMode::Default)
///     .max_payload(8 * 1024 * 1024)
///     .start()
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct NatsServerBuilder {
    options: Options,
}

impl NatsServerBuilder {
    /// When JetStream fsyncs; [`SyncMode::Always`] unless set.
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.options.sync = mode;
        self
    }

    /// The largest message payload the server accepts, in bytes (server default: 1 MiB).
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.options.max_payload = Some(bytes);
        self
    }

    /// JetStream's file storage limit in bytes (`max_file_store`; 1 TB unless set), for
    /// tests of a full store. Streams must then set `max_bytes` below it (or none).
    pub fn max_file_store(mut self, bytes: u64) -> Self {
        self.options.max_file_store = Some(bytes);
        self
    }

    /// Config text appended verbatim to the generated config file, e.g. `accounts { ... }`
    /// or `max_connections: 10`. A second call appends to the first.
    ///
    /// Do not set `listen`, `http`, `server_name`, `jetstream` or `cluster` here: the kit
    /// owns those, and nats-server refuses some duplicates.
    pub fn extra_config(mut self, config: impl Into<String>) -> Self {
        self.options.append_extra_config(config.into());
        self
    }

    /// Ready on `/healthz` alone (for servers a plain client cannot query).
    pub(crate) fn healthz_only(mut self) -> Self {
        self.options.healthz_only = true;
        self
    }

    /// Starts the server; see [`NatsServer::start`].
    ///
    /// # Panics
    ///
    /// If the server does not start, or JetStream does not answer within 20 s.
    pub async fn start(self) -> NatsServer {
        NatsServer::start_standalone(self.options).await
    }
}

/// Why a server did not become ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// It exited because one of its ports was taken between our check and its bind.
    PortInUse,
    /// Anything else; the message says what.
    Failed(String),
}

/// A running (or deliberately stopped) `nats-server` with JetStream, on free loopback
/// ports, with its store, config and log in a temporary directory.
///
/// Dropping it kills the process (SIGKILL, then waits for it, so no zombie is left) and
/// deletes the directory.
#[derive(Debug)]
pub struct NatsServer {
    spec: Spec,
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    starts: u32,
    // Last, so the directory outlives the process in `Drop`.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server with the defaults: JetStream with `sync_interval: always`, a free
    /// loopback client port and monitoring port, a fresh temporary store.
    ///
    /// Returns once JetStream answers a `$JS.API.INFO` request and `/healthz` is ok.
    ///
    /// # Panics
    ///
    /// If the binary is missing (see [`nats_server_bin`]), the server exits, or it is not
    /// ready within 20 s; the message holds the log tail.
    pub async fn start() -> NatsServer {
        Self::builder().start().await
    }

    /// A builder for a server with non-default options.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    async fn start_standalone(options: Options) -> NatsServer {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = new_temp_dir();
            let port = ports::free_port();
            let spec = Spec {
                server_name: format!("testkit-{port}"),
                port,
                monitor_port: ports::free_port(),
                store_dir: dir.path().join("store"),
                options: options.clone(),
                cluster: None,
            };
            let mut server = NatsServer::prepare(dir, spec);
            server.spawn();
            match server.wait_ready(START_TIMEOUT, 0).await {
                Ok(()) => return server,
                Err(NotReady::PortInUse) if attempt < PORT_ATTEMPTS => continue,
                Err(NotReady::PortInUse) => server.fail("a chosen port was taken, every time"),
                Err(NotReady::Failed(why)) => server.fail(&why),
            }
        }
    }

    /// Writes the config file for `spec` into `dir`; does not spawn anything yet.
    pub(crate) fn prepare(dir: TempDir, spec: Spec) -> NatsServer {
        let config_path = dir.path().join("nats.conf");
        let log_path = dir.path().join("nats.log");
        fs::create_dir_all(&spec.store_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.store_dir.display()));
        fs::write(&config_path, spec.render())
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        NatsServer {
            spec,
            child: None,
            config_path,
            log_path,
            starts: 0,
            dir,
        }
    }

    /// Spawns the process with stdout and stderr appended to the log file.
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let bin = nats_server_bin();
        self.starts += 1;
        self.note(&format!(
            "start #{} of {} -c {}",
            self.starts,
            bin.display(),
            self.config_path.display()
        ));
        let log = self.open_log();
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("clone log file handle: {e}"));
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Polls until the server is ready, it exits, or `limit` passes.
    ///
    /// Ready means: `/healthz` is ok (for a cluster node that includes a known meta
    /// leader and current streams), and for a single server also that `$JS.API.INFO`
    /// answers and `/jsz` counts at least `streams` streams.
    pub(crate) async fn wait_ready(
        &mut self,
        limit: Duration,
        streams: u64,
    ) -> Result<(), NotReady> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exited) = self.check_exit() {
                return Err(exited);
            }
            let last = match self.probe(streams).await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(NotReady::Failed(format!(
                    "nats-server not ready within {limit:?}; last probe: {last}"
                )));
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// `Some` if the process has exited (while it should be starting or running).
    pub(crate) fn check_exit(&mut self) -> Option<NotReady> {
        let status = self.try_wait()?;
        Some(
            if self
                .log_tail(PANIC_LOG_LINES)
                .contains("address already in use")
            {
                NotReady::PortInUse
            } else {
                NotReady::Failed(format!("nats-server exited while starting ({status})"))
            },
        )
    }

    /// One readiness probe; see [`wait_ready`](Self::wait_ready).
    pub(crate) async fn probe(&self, streams: u64) -> Result<(), String> {
        let health = http::get(self.spec.monitor_port, "/healthz", Duration::from_secs(1)).await?;
        if health.status != 200 {
            return Err(format!(
                "/healthz {}: {}",
                health.status,
                health.body.trim()
            ));
        }
        if self.spec.cluster.is_some() {
            return Ok(());
        }
        if !self.spec.options.healthz_only {
            self.probe_js_info().await?;
        }
        if streams > 0 {
            let jsz = http::get(self.spec.monitor_port, "/jsz", Duration::from_secs(1)).await?;
            let found = jsz.json().and_then(|j| j["streams"].as_u64()).unwrap_or(0);
            if found < streams {
                return Err(format!("/jsz counts {found} streams, {streams} on disk"));
            }
        }
        Ok(())
    }

    async fn probe_js_info(&self) -> Result<(), String> {
        let request = async {
            let client = ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(self.url())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let reply = client
                .request("$JS.API.INFO", "".into())
                .await
                .map_err(|e| format!("$JS.API.INFO: {e}"))?;
            let info: serde_json::Value = serde_json::from_slice(&reply.payload)
                .map_err(|e| format!("$JS.API.INFO reply is not JSON: {e}"))?;
            match info.get("error") {
                Some(error) => Err(format!("$JS.API.INFO: {error}")),
                None => Ok(()),
            }
        };
        timeout(Duration::from_secs(3), request)
            .await
            .map_err(|_| "$JS.API.INFO: no reply within 3s".to_owned())?
    }

    /// Panics with `msg` and the tail of the server log.
    pub(crate) fn fail(&self, msg: &str) -> ! {
        panic!(
            "{} ({}): {msg}\n--- last {PANIC_LOG_LINES} lines of {} ---\n{}",
            self.spec.server_name,
            self.url(),
            self.log_path.display(),
            self.log_tail(PANIC_LOG_LINES)
        )
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.spec.port)
    }

    /// The client port on 127.0.0.1; the same across restarts.
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The monitoring base URL, `http://127.0.0.1:PORT` (`/healthz`, `/varz`, `/jsz`, ...).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.monitor_port)
    }

    /// The monitoring port on 127.0.0.1.
    pub fn monitor_port(&self) -> u16 {
        self.spec.monitor_port
    }

    /// The server's name (`server_name` in its config; `n0`, `n1`, ... in a cluster).
    pub fn name(&self) -> &str {
        &self.spec.server_name
    }

    /// The JetStream store directory; it lives as long as this value, across restarts.
    pub fn store_dir(&self) -> &Path {
        &self.spec.store_dir
    }

    /// The generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The log file (stdout and stderr of every start, with a marker line per start,
    /// stop and kill).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id, or `None` while the server is stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True if the process is running (it may still be starting or shutting down).
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none() && self.child.is_some()
    }

    /// The last `n_lines` lines of the log, for assertion messages.
    pub fn log_tail(&self, n_lines: usize) -> String {
        let text = fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n_lines)..].join("\n")
    }

    /// `GET path` on the monitoring port, parsed as JSON: e.g. `"/varz"`, `"/jsz"`,
    /// `"/healthz"`. Any status code is accepted (`/healthz` answers 503 with a JSON body
    /// while unhealthy).
    ///
    /// # Panics
    ///
    /// If there is no JSON answer within 5 s.
    pub async fn monitor_json(&self, path: &str) -> serde_json::Value {
        let response = http::get(self.spec.monitor_port, path, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| self.fail(&e));
        response.json().unwrap_or_else(|| {
            self.fail(&format!(
                "GET {path}: {} with a body that is not JSON: {:?}",
                response.status, response.body
            ))
        })
    }

    /// A new client connection to this server.
    ///
    /// It reconnects quickly (backoff at most 250 ms instead of async-nats' 4 s), so a
    /// test that restarts the server does not wait on the client.
    ///
    /// # Panics
    ///
    /// If it cannot connect within 10 s.
    pub async fn client(&self) -> Client {
        connect(vec![self.url()])
            .await
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// A JetStream context on a new [`client`](Self::client).
    ///
    /// # Panics
    ///
    /// If it cannot connect within 10 s.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// SIGKILL and wait for the exit: no chance to flush or say goodbye, like a crash.
    /// A no-op if the server is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the process already exited; `wait` reaps it either way.
            let _ = child.kill();
            let status = child.wait();
            self.note(&format!("killed (SIGKILL): {status:?}"));
        }
    }

    /// SIGTERM (graceful shutdown: JetStream flushes its state) and wait up to 10 s for
    /// the exit, then SIGKILL. A no-op if the server is not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            // Already exited (and reaped): its pid may belong to another process by now.
            self.note(&format!("stop: had already exited: {status}"));
            return;
        }
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // Fails only if the process already exited; the wait below handles that.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.note(&format!("stopped (SIGTERM): {status}"));
                    return;
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)).await,
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    self.note(&format!(
                        "no exit within {STOP_TIMEOUT:?} of SIGTERM; killed (SIGKILL): {status:?}"
                    ));
                    return;
                }
            }
        }
    }

    /// Starts a stopped or killed server again, on the same ports with the same store.
    ///
    /// Returns once it is ready: for a single server, JetStream answers and `/jsz` counts
    /// at least as many streams as the store holds on disk (so they are recovered); for
    /// a cluster node, its `/healthz` is ok (it has rejoined and its streams are current).
    ///
    /// # Panics
    ///
    /// If the server is running, or it is not ready within 20 s.
    pub async fn start_again(&mut self) {
        if self.is_running() {
            self.fail("start_again: the server is still running; stop() or kill() it first");
        }
        // It may have exited on its own (crashed); forget that process.
        self.child = None;
        let streams = if self.spec.cluster.is_some() {
            0
        } else {
            streams_on_disk(&self.spec.store_dir)
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.spawn();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_ready(left, streams).await {
                Ok(()) => return,
                // The same port must be reused. A socket of the killed process cannot
                // block it (nats-server binds with SO_REUSEADDR), but something else on
                // the machine may have taken it; wait, in case it lets go.
                Err(NotReady::PortInUse) if Instant::now() < deadline => {
                    self.child = None;
                    sleep(Duration::from_millis(200)).await;
                }
                Err(NotReady::PortInUse) => {
                    self.fail("start_again: a port of this server is taken by another process")
                }
                Err(NotReady::Failed(why)) => self.fail(&format!("start_again: {why}")),
            }
        }
    }

    /// [`stop`](Self::stop) (if running), then [`start_again`](Self::start_again): same
    /// ports, same store.
    ///
    /// # Panics
    ///
    /// If the server is not ready again within 20 s.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(status) => status,
            Err(e) => panic!("waiting for nats-server: {e}"),
        }
    }

    fn open_log(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path.display()))
    }

    /// Appends a marker line to the log, so a log tail shows what the kit did when.
    fn note(&self, what: &str) {
        // Best effort: the note only makes the log easier to read.
        let _ = writeln!(self.open_log(), "=== events-testkit: {what} ===");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client to any of `urls`, with a short reconnect backoff.
pub(crate) async fn connect(urls: Vec<String>) -> Result<Client, String> {
    let addrs = urls
        .iter()
        .map(|url| url.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad server URL in {urls:?}: {e}"))?;
    let options = ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(5) as u64));
    timeout(CONNECT_TIMEOUT, options.connect(addrs))
        .await
        .map_err(|_| format!("no connection to {urls:?} within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect to {urls:?}: {e}"))
}

pub(crate) fn new_temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("events-testkit-")
        .tempdir()
        .unwrap_or_else(|e| panic!("create a temporary directory: {e}"))
}

/// Streams in a JetStream store: `<store>/jetstream/<account>/streams/<stream>/`.
fn streams_on_disk(store_dir: &Path) -> u64 {
    let Ok(accounts) = fs::read_dir(store_dir.join("jetstream")) else {
        return 0;
    };
    accounts
        .flatten()
        .filter_map(|account| fs::read_dir(account.path().join("streams")).ok())
        .map(|streams| streams.flatten().filter(|s| s.path().is_dir()).count() as u64)
        .sum()
}
