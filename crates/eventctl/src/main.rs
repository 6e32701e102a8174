//! `eventctl`: the command-line tool of the events backbone.
//!
//! Run with:
//!
//! ```text
//! cargo run -p eventctl -- streams apply --file deploy/streams.toml --profile dev
//! cargo run -p eventctl -- streams list
//! cargo run -p eventctl -- streams info AUTH_EVENTS --json
//! cargo run -p eventctl -- publish --type auth.user.created --org org-1 --source ops --data '{"user_id":"u1"}'
//! cargo run -p eventctl -- tail 'auth.>' --from -1h --count 10
//! cargo run -p eventctl -- dlq list --reason permanent
//! cargo run -p eventctl -- lag --threshold 1000
//! cargo run -p eventctl -- serve --listen 127.0.0.1:9090 --admin-tokens-file tokens.txt
//! ```
//!
//! See `docs/CLI.md` for every command with sample output.
//!
//! Layout: `cli.rs` holds the command tree (clap), `args.rs` the global connection
//! options, `cmd/<command>.rs` one file per command group with its args, `output.rs` the table and JSON
//! helpers. Exit codes: 0 ok, 1 failure, 2 usage error.

mod args;
mod cli;
mod cmd;
mod output;
mod when;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Usage errors exit with 2 here (clap's default); --help and --version with 0.
    let cli = cli::Cli::parse();
    // The doctor's probes are denied on purpose; its report says so, the log need not.
    let quiet_denials = matches!(cli.command, cli::Command::Doctor(_));
    init_tracing(quiet_denials);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // A usage problem found after parsing (e.g. purge without --yes) is still 2.
            if err.downcast_ref::<cmd::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    dispatch(cli).await
}

/// Runs the parsed command line.
async fn dispatch(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Streams(cmd) => cmd::streams::run(&cli.conn, cmd).await,
        cli::Command::Publish(args) => cmd::publish::run(&cli.conn, args).await,
        cli::Command::Tail(args) => cmd::tail::run(&cli.conn, args).await,
        cli::Command::Dlq(cmd) => cmd::dlq::run(&cli.conn, cmd).await,
        cli::Command::Replay(args) => cmd::replay::run(&cli.conn, args).await,
        cli::Command::Lag(args) => cmd::lag::run(&cli.conn, args).await,
        cli::Command::Serve(args) => cmd::serve::run(&cli.conn, args).await,
        cli::Command::Bench(args) => cmd::bench::run(&cli.conn, args).await,
        cli::Command::Schema(cmd) => cmd::schema::run(&cli.conn, cmd).await,
        cli::Command::Auth(cmd) => cmd::auth::run(cmd),
        cli::Command::Doctor(args) => cmd::doctor::run(&cli.conn, args).await,
        cli::Command::Audit(args) => cmd::audit::run(&cli.conn, args).await,
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default (warnings and errors only; with
/// `quiet_denials`, not the connection's permission-denied warnings).
fn init_tracing(quiet_denials: bool) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let default = if quiet_denials {
        "warn,events::connection=error"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in logs captured to files or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
