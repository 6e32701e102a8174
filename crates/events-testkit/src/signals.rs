//! Faults by signal beyond SIGKILL and SIGTERM (which `server.rs` owns): pause and resume
//! the process (SIGSTOP/SIGCONT), and lame-duck mode (SIGUSR2, what `nats-server --signal
//! ldm=<pid>` sends).

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::time::{Instant, sleep};

use crate::NatsServer;

/// How long a server in lame-duck mode may take to exit.
const LAME_DUCK_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop or continue may take to show in the process state.
const SIGNAL_STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// True if `/proc/<pid>/stat` says the process is stopped by a signal (state `T`).
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|state| state == 'T')
}

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
    /// Returns once the kernel reports it stopped (a signal is delivered asynchronously).
    ///
    /// # Panics
    ///
    /// If the server is not running, or not stopped within 5 s.
    pub async fn pause(&self) {
        self.signal(Signal::STOP, "pause (SIGSTOP)");
        self.wait_state(true, "pause (SIGSTOP)").await;
    }

    /// SIGCONT: a paused process runs on. Returns once the kernel reports it running.
    ///
    /// # Panics
    ///
    /// If the server is not running, or still stopped after 5 s.
    pub async fn resume(&self) {
        self.signal(Signal::CONT, "resume (SIGCONT)");
        self.wait_state(false, "resume (SIGCONT)").await;
    }

    /// Polls `/proc/<pid>/stat` until the process is (or is no longer) stopped.
    async fn wait_state(&self, stopped: bool, what: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| self.fail(&format!("{what}: not running")));
        let deadline = Instant::now() + SIGNAL_STATE_TIMEOUT;
        while is_stopped(pid) != stopped {
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{what}: process state not reached within {SIGNAL_STATE_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(5)).await;
        }
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
