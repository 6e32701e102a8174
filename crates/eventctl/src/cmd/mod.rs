//! One module per command group (`main.rs` dispatches), and what they share.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod bench;
pub(crate) mod dlq;
pub(crate) mod doctor;
pub(crate) mod lag;
pub(crate) mod publish;
pub(crate) mod replay;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod streams;
pub(crate) mod tail;

use events::connection::Connection;

use crate::args::ConnArgs;

/// Connects with the global options; the error names the URL(s) already.
pub(crate) async fn connect(args: &ConnArgs) -> anyhow::Result<Connection> {
    Ok(events::connection::connect(&args.connect_config()).await?)
}

/// A usage problem found after parsing (a missing confirmation, flags that do not go
/// together): `main` exits with 2 for it, as for clap's own usage errors.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a [`UsageError`] from the current function.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::cmd::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// Waits for ctrl-c or (on Unix) SIGTERM. If a handler cannot be installed, that signal
/// is simply not waited for (the process still dies by it, just without a clean stop).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
