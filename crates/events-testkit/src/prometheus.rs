//! A real Prometheus for metrics tests: Debian's `prometheus` on a free loopback port with
//! its own temporary store, scraping the given targets every second and evaluating the
//! given rule files; killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::http;
use crate::ports::free_port;

/// Environment variable naming the `prometheus` binary (else `PATH`).
pub const PROMETHEUS_BIN_ENV: &str = "PROMETHEUS_BIN";

const INSTALL: &str =
    "run scripts/setup-prometheus.sh (apt-get install -y prometheus), or set PROMETHEUS_BIN";
/// Bound on Prometheus answering `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os(PROMETHEUS_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{PROMETHEUS_BIN_ENV}={} is not a file; {INSTALL}",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("prometheus"))
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| panic!("prometheus not found: {INSTALL}"))
}

/// A running Prometheus.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (`/metrics`, job `events`) every second and
    /// evaluating `rule_files` every second; returns once it is ready.
    ///
    /// # Panics
    /// If the binary is missing (with install instructions: never a skip), or Prometheus is
    /// not ready within a minute (with the tail of its log).
    pub async fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> Self {
        let bin = binary();
        let dir = tempfile::Builder::new()
            .prefix("events-prometheus-")
            .tempdir()
            .expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - \"{}\"", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\nscrape_configs:\n  - job_name: events\n    static_configs:\n      - targets: [{}]\n",
            rules.join("\n"),
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", bin.display()));
        let me = Self {
            child,
            port,
            _dir: dir,
        };
        me.wait_ready().await;
        me
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if http::get(self.port, "/-/ready", Duration::from_secs(2))
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "prometheus not ready within {READY_TIMEOUT:?}; log:\n{}",
            self.log_tail()
        );
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `GET /api/v1/query?query=<expr>`: the JSON answer (`status`, `data.resultType`,
    /// `data.result`), or what went wrong.
    ///
    /// # Errors
    /// The request failed or the answer is not JSON.
    pub async fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        self.api(&format!("/api/v1/query?query={}", encode(expr)))
            .await
    }

    /// `GET <path>` on the HTTP API (e.g. `/api/v1/rules`), as JSON.
    ///
    /// # Errors
    /// The request failed or the answer is not JSON.
    pub async fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let r = http::get(self.port, path, REQUEST_TIMEOUT).await?;
        r.json()
            .ok_or_else(|| format!("status {}: {}", r.status, r.body))
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            super::encode("sum by (a) (x{y=~\"a|b\"})"),
            "sum%20by%20%28a%29%20%28x%7By%3D~%22a%7Cb%22%7D%29"
        );
    }
}
