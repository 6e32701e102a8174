//! The command line: the command tree (clap derive); the global connection options are in
//! `args.rs`.
//!
//! To add a command group: a variant in [`Command`], a file `cmd/<name>.rs` with its args
//! type and `run`, and one match arm in `main.rs`'s `dispatch`.

use clap::{Parser, Subcommand};

use crate::args::ConnArgs;
use crate::cmd::streams::StreamsCommand;
use crate::cmd::{dlq::DlqCommand, lag::LagArgs, publish::PublishArgs, replay::ReplayArgs};
use crate::cmd::{schema::SchemaCommand, serve::ServeArgs, tail::TailArgs};

/// Operate the events backbone on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "eventctl", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    eventctl streams apply --file deploy/streams.toml --profile dev\n  \
    eventctl --server nats://nats-1:4222 --creds ops.creds streams list\n  \
    eventctl publish --type auth.user.created --org org-1 --source ops --data '{\"user_id\":\"u1\"}'\n  \
    eventctl tail 'auth.>' --from -1h --count 10\n  \
    eventctl dlq list --reason permanent --json\n  \
    eventctl lag --threshold 1000\n\n\
Exit codes: 0 ok, 1 failure, 2 usage error.")]
pub(crate) struct Cli {
    /// How to reach NATS.
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Streams: apply the declared topology, list, inspect.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        eventctl streams apply --dry-run\n  \
        eventctl streams list\n  \
        eventctl streams info AUTH_EVENTS")]
    Streams(StreamsCommand),
    /// Publish one event (confirmed by the stream); prints its stream and sequence.
    Publish(PublishArgs),
    /// Print events as they arrive (or from a time in the past), or drain a group.
    Tail(TailArgs),
    /// Dead letters: list, show, replay, purge.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        eventctl dlq list --since -2h\n  \
        eventctl dlq show 42\n  \
        eventctl dlq replay 42 43\n  \
        eventctl dlq purge --type auth.user.created --yes")]
    Dlq(DlqCommand),
    /// Republish the messages a stream stored in a time window to another subject.
    Replay(ReplayArgs),
    /// Pending and ack-pending messages per consumer, flagged over a threshold.
    Lag(LagArgs),
    /// Run the admin HTTP server (DLQ API, /metrics, /healthz, /readyz).
    Serve(ServeArgs),
    /// Benchmark the library against raw async-nats, side by side (starts its own server).
    #[command(after_help = "Examples:\n  \
        eventctl bench                                  # every scenario, sync_interval always\n  \
        eventctl bench publish --mode windowed --window 4000 --sync default\n  \
        eventctl bench e2e --rate 1000,5000 --duration 10s --json\n  \
        eventctl bench load --events 100000\n\
        Build with --release for meaningful figures: cargo run --release -p eventctl -- bench")]
    Bench(events_bench::BenchArgs),
    /// Event schemas: check compatibility, push to / list / show the registry, generate
    /// the catalog.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        eventctl schema check\n  \
        eventctl schema push\n  \
        eventctl schema show auth.user.created 1.0\n  \
        eventctl schema catalog --check")]
    Schema(SchemaCommand),
    /// Identities: an nkey per service and tool, their NATS permissions, a dev CA.
    #[command(subcommand)]
    Auth(crate::cmd::auth::AuthCommand),
    /// Check a deployment: server, durability, streams, peers, consumers, an identity.
    Doctor(crate::cmd::doctor::DoctorArgs),
    /// The admin audit trail: every replay, delete and purge made through the admin API.
    Audit(crate::cmd::audit::AuditArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_map_onto_the_connection_config() {
        let cli = Cli::try_parse_from([
            "eventctl",
            "streams",
            "list",
            "--server",
            "nats://a:1,nats://b:2",
            "--token",
            "t",
            "--connect-timeout",
            "250ms",
        ])
        .unwrap();
        let config = cli.conn.connect_config();
        assert_eq!(config.urls, ["nats://a:1", "nats://b:2"]);
        assert_eq!(config.auth.token.as_deref(), Some("t"));
        assert_eq!(
            config.connect_timeout,
            std::time::Duration::from_millis(250)
        );
        config.validate().unwrap();
    }
}
