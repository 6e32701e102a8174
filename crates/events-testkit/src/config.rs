//! Rendering a nats-server config file from what the kit chose (ports, dirs, options).

use std::fmt::Write as _;
use std::path::PathBuf;

/// When JetStream fsyncs its file store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncMode {
    /// `sync_interval: always`: every write is fsynced before it is acknowledged, so an
    /// acknowledged message survives SIGKILL. What production uses (see `deploy/`), and
    /// the default in the test kit so tests see production's durability.
    #[default]
    Always,
    /// The server's default: fsync every 2 minutes. Much faster writes; for benchmarks
    /// that measure the library rather than the disk.
    Default,
}

/// Options a caller can set through the builders; shared by every node of a cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) sync: SyncMode,
    pub(crate) max_payload: Option<u32>,
    /// `jetstream.max_file_store` in bytes; `None` means 1 TB (see `render`).
    pub(crate) max_file_store: Option<u64>,
    pub(crate) extra_config: Option<String>,
    /// Ready on `/healthz` alone: a client without credentials or TLS cannot ask
    /// `$JS.API.INFO` on a secured server (`secure.rs`).
    pub(crate) healthz_only: bool,
}

impl Options {
    /// Appends `config` to the extra config text (one line break between two parts).
    pub(crate) fn append_extra_config(&mut self, config: String) {
        self.extra_config = Some(match self.extra_config.take() {
            Some(before) => format!("{before}\n{config}"),
            None => config,
        });
    }
}

/// The cluster part of a node's config.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    pub(crate) name: String,
    pub(crate) port: u16,
    /// Cluster ports of the other nodes (not this one).
    pub(crate) routes: Vec<u16>,
}

/// Everything that goes into one server's config file.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) server_name: String,
    pub(crate) port: u16,
    pub(crate) monitor_port: u16,
    pub(crate) store_dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) cluster: Option<ClusterSpec>,
}

impl Spec {
    /// The config file's text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // `writeln!` into a String cannot fail.
        let mut line = |s: String| {
            let _ = writeln!(out, "{s}");
        };
        line("# Written by events-testkit; one server of a test.".into());
        line(format!("server_name: {}", quote(&self.server_name)));
        line(format!("listen: \"127.0.0.1:{}\"", self.port));
        line(format!("http: \"127.0.0.1:{}\"", self.monitor_port));
        if let Some(max_payload) = self.options.max_payload {
            line(format!("max_payload: {max_payload}"));
        }
        line("jetstream {".into());
        line(format!(
            "  store_dir: {}",
            quote(&self.store_dir.to_string_lossy())
        ));
        // Explicit, so that stream limits (7 streams of 1 GiB in the shipped topology) are
        // not refused for "insufficient storage" on a machine whose disk is nearly full:
        // tests store little, but the server reserves each stream's max_bytes up front
        // against a default limit derived from free disk space.
        match self.options.max_file_store {
            Some(bytes) => line(format!("  max_file_store: {bytes}")),
            None => line("  max_file_store: 1TB".into()),
        }
        match self.options.sync {
            SyncMode::Always => line("  sync_interval: always".into()),
            SyncMode::Default => {}
        }
        line("}".into());
        if let Some(cluster) = &self.cluster {
            line("cluster {".into());
            line(format!("  name: {}", quote(&cluster.name)));
            line(format!("  listen: \"127.0.0.1:{}\"", cluster.port));
            line("  routes: [".into());
            for port in &cluster.routes {
                line(format!("    \"nats-route://127.0.0.1:{port}\""));
            }
            line("  ]".into());
            line("}".into());
        }
        if let Some(extra) = &self.options.extra_config {
            line("# extra_config".into());
            line(extra.clone());
        }
        out
    }
}

/// A double-quoted config string (the store dir may hold characters the config parser
/// would otherwise read as syntax).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            server_name: "n0".into(),
            port: 20001,
            monitor_port: 20002,
            store_dir: "/tmp/x y/store".into(),
            options: Options::default(),
            cluster: None,
        }
    }

    #[test]
    fn single_server_with_fsync_always() {
        let text = spec().render();
        assert!(text.contains("listen: \"127.0.0.1:20001\""));
        assert!(text.contains("http: \"127.0.0.1:20002\""));
        assert!(text.contains("store_dir: \"/tmp/x y/store\""));
        assert!(text.contains("sync_interval: always"));
        assert!(!text.contains("cluster"));
        assert!(!text.contains("max_payload"));
    }

    #[test]
    fn default_sync_and_options() {
        let mut spec = spec();
        spec.options = Options {
            sync: SyncMode::Default,
            max_payload: Some(8 << 20),
            max_file_store: Some(1 << 20),
            extra_config: Some("max_connections: 100".into()),
            healthz_only: false,
        };
        let text = spec.render();
        assert!(!text.contains("sync_interval"));
        assert!(text.contains("max_payload: 8388608"));
        assert!(text.contains("max_file_store: 1048576"));
        assert!(text.ends_with("max_connections: 100\n"));
    }

    #[test]
    fn cluster_routes_to_the_others() {
        let mut spec = spec();
        spec.cluster = Some(ClusterSpec {
            name: "c".into(),
            port: 20003,
            routes: vec![20013, 20023],
        });
        let text = spec.render();
        assert!(text.contains("listen: \"127.0.0.1:20003\""));
        assert!(text.contains("\"nats-route://127.0.0.1:20013\""));
        assert!(text.contains("\"nats-route://127.0.0.1:20023\""));
    }
}
