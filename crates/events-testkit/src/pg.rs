//! A real PostgreSQL server for tests: `initdb` into a temporary directory, `postgres` on a
//! free loopback port, stopped when dropped.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI does), the server runs
//! as the `postgres` user that Debian's package creates, and the temporary directory is
//! handed to it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// Environment variable naming the directory of `initdb`, `postgres` and `pg_isready`; it
/// wins over `/usr/lib/postgresql/<version>/bin`.
pub const PG_BIN_DIR_ENV: &str = "PG_BIN_DIR";

const NOT_FOUND: &str = "PostgreSQL not found: run scripts/setup-postgres.sh (apt-get install -y \
                         postgresql) or set PG_BIN_DIR to the directory holding initdb and postgres";

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server with a `postgres` superuser (trust authentication on
/// loopback) and its data in a temporary directory. Dropping it stops the server.
#[derive(Debug)]
pub struct PgServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgServer {
    /// Runs `initdb` and starts the server; returns once it accepts connections.
    ///
    /// # Panics
    /// If PostgreSQL is not installed (with install instructions: a missing server fails
    /// the test, never skips it), or if it does not start within a minute (with its log).
    pub async fn start() -> PgServer {
        tokio::task::spawn_blocking(start_blocking)
            .await
            .unwrap_or_else(|e| panic!("PgServer::start panicked: {e}"))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `db` (create it first with [`PgServer::create_database`]).
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    ///
    /// # Panics
    /// If `createdb` fails (with its output).
    pub async fn create_database(&self, name: &str) -> String {
        let bin = pg_bin_dir().join("createdb");
        let port = self.port.to_string();
        let out = tokio::process::Command::new(bin)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])
            .output()
            .await
            .unwrap_or_else(|e| panic!("createdb could not run: {e}"));
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url_of(name)
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir.path().join("postgres.log"), lines)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown of the postmaster and its children.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory of the PostgreSQL binaries: `$PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` that holds `initdb`.
///
/// # Panics
/// If neither exists, with install instructions.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PG_BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "{PG_BIN_DIR_ENV}={} holds no initdb; {NOT_FOUND}",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}

/// The uid and gid to run PostgreSQL as: ours, or the `postgres` user's when we are root.
fn run_as() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("`id {flag} postgres` could not run: {e}"));
        assert!(
            out.status.success(),
            "running as root and there is no `postgres` user to run PostgreSQL as; {NOT_FOUND}"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("`id {flag} postgres` printed no number: {e}"))
    };
    Some((id("-u"), id("-g")))
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("LC_ALL", "C").env_remove("PGDATA");
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn start_blocking() -> PgServer {
    let bin = pg_bin_dir();
    let user = run_as();
    let dir = tempfile::Builder::new()
        .prefix("pgserver-")
        .tempdir()
        .unwrap_or_else(|e| panic!("no temp dir for PostgreSQL: {e}"));
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown of {} failed: {e}", dir.path().display()));
    }
    let data = dir.path().join("data");
    let out = command(&bin.join("initdb"), user)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        .output()
        .unwrap_or_else(|e| panic!("initdb could not run: {e}; {NOT_FOUND}"));
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log_path = dir.path().join("postgres.log");
    let port = free_port();
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    if let Some((uid, gid)) = user {
        let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
    }
    let err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot clone the log handle: {e}"));
    let child = command(&bin.join("postgres"), user)
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("postgres could not start: {e}"));
    let mut server = PgServer {
        child: Some(child),
        port,
        dir,
    };
    wait_ready(&mut server, &bin);
    server
}

fn wait_ready(server: &mut PgServer, bin: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let port = server.port.to_string();
    loop {
        let ok = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "1", "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        if let Some(child) = server.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "postgres exited ({status}) before accepting connections:\n{}",
                server.log_tail(30)
            );
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not accept connections within {READY_TIMEOUT:?}:\n{}",
            server.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
