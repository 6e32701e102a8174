//! Faults by signal beyond SIGKILL and SIGTERM (which `server.rs` owns): pause and resume
//! the process (SIGSTOP/SIGCONT), and lame-duck mode (SIGUSR2, what `nats-server --signal
//! ldm=<pid>` sends).

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::time::{Instant, sleep};

use crate::NatsServer;

/// How long a server in lame-duck mode may take to exit.
const LAME_DUCK_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Lame-duck timings short enough for tests, for
/// [`NatsServerBuilder::extra_config`](crate::NatsServerBuilder::extra_config): the server
/// waits 1 s, then closes its clients at most 1 s apart and exits (the defaults are 10 s and
/// 2 min; 30 s is the smallest duration it accepts, and with few clients it is not reached).
pub const FAST_LAME_DUCK: &str = "lame_duck_grace_period: 1s\nlame_duck_duration: 30s";

impl NatsServer {
    fn signal(&self, signal: Signal, what: &str) {
        let pid = self
            .pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
            .unwrap_or_else(|| self.fail(&format!("{what}: the server is not running")));
        kill_process(pid, signal).unwrap_or_else(|e| self.fail(&format!("{what}: {e}")));
    }

    /// SIGSTOP: the process freezes (no reads, no writes, no heartbeats) until
    /// [`resume`](Self::resume); its sockets stay open, like a VM pause or a long GC stop.
    ///
    /// # Panics
    ///
    /// If the server is not running.
    pub fn pause(&self) {
        self.signal(Signal::STOP, "pause (SIGSTOP)");
    }

    /// SIGCONT: a paused process runs on.
    ///
    /// # Panics
    ///
    /// If the server is not running.
    pub fn resume(&self) {
        self.signal(Signal::CONT, "resume (SIGCONT)");
    }

    /// Lame-duck mode (SIGUSR2): the server stops accepting clients, closes the ones it
    /// has over `lame_duck_duration` (JetStream leaders step down first), then exits. Waits
    /// for the exit; configure the server with [`FAST_LAME_DUCK`] or this takes minutes.
    ///
    /// # Panics
    ///
    /// If the server is not running, or has not exited within 30 s.
    pub async fn lame_duck(&mut self) {
        self.signal(Signal::USR2, "lame duck (SIGUSR2)");
        let deadline = Instant::now() + LAME_DUCK_EXIT_TIMEOUT;
        while self.is_running() {
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "lame duck: still running {LAME_DUCK_EXIT_TIMEOUT:?} after SIGUSR2"
                ));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}
