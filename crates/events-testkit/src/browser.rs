//! A real browser for console tests: Debian's `chromedriver` (package `chromium-driver`)
//! driving `chromium` headless, on a free loopback port, killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::timeout;

use crate::ports::free_port;

/// Environment variable naming the `chromedriver` binary (else `PATH`).
pub const CHROMEDRIVER_BIN_ENV: &str = "CHROMEDRIVER_BIN";
/// Environment variable naming the browser binary (else `chromium` on `PATH`).
pub const CHROMIUM_BIN_ENV: &str = "CHROMIUM_BIN";

const INSTALL: &str = "run scripts/setup-browser.sh (apt-get install -y chromium chromium-driver), \
                       or set CHROMEDRIVER_BIN and CHROMIUM_BIN";
/// Bound on chromedriver answering `/status` as ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env}={} is not a file; {INSTALL}",
            p.display()
        );
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|c| c.is_file())
}

/// A running chromedriver. Dropping it kills the driver and the browsers it started (its
/// process group).
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    port: u16,
    chromium: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    ///
    /// # Panics
    /// If chromedriver or chromium is missing (with install instructions: a missing
    /// browser fails the test, never skips it), or the driver is not ready in time.
    pub async fn start() -> Self {
        let driver = find(CHROMEDRIVER_BIN_ENV, &["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver not found: {INSTALL}"));
        let chromium = find(
            CHROMIUM_BIN_ENV,
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .unwrap_or_else(|| panic!("chromium not found: {INSTALL}"));
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so that the browsers it starts die with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", driver.display()));
        let me = Self {
            child,
            port,
            chromium,
        };
        me.wait_ready().await;
        me
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match timeout(Duration::from_secs(2), status(self.port)).await {
                Ok(Ok(body)) if body.contains("\"ready\":true") => return,
                Ok(Ok(body)) => last = body,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no answer within 2s".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "chromedriver on port {} not ready within {READY_TIMEOUT:?}: {last}",
            self.port
        );
    }

    /// The WebDriver URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// W3C capabilities for a headless chromium of this machine (no sandbox: tests run as
    /// root in CI), `width` x `height` pixels.
    pub fn capabilities(
        &self,
        width: u32,
        height: u32,
    ) -> serde_json::Map<String, serde_json::Value> {
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-extensions", "--no-first-run", format!("--window-size={width},{height}"),
                ],
            },
        });
        match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }
}

/// `GET /status` in HTTP/1.1 (chromedriver refuses HTTP/1.0); the raw response, read up
/// to the `ready` field.
async fn status(port: u16) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    // chromedriver keeps the connection open: read until the answer is in.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if n == 0 || text.contains("\"ready\":") {
            return Ok(text.into_owned());
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every chromium it started.
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}
