//! The command line: global connection options and the command tree (clap derive).
//!
//! To add a command group: a variant in [`Command`], its args type here (or in its own
//! module), a file `cmd/<name>.rs` with `run`, and one match arm in `cmd::run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use events::connection::{AuthConfig, ConnectConfig, TlsConfig};

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

/// Connection options, valid before or after the command.
#[derive(Debug, Args)]
pub(crate) struct ConnArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        global = true,
        env = "EVENTS_NATS_URL",
        default_value = events::connection::DEFAULT_URL,
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub(crate) server: Vec<String>,
    /// Credentials file (JWT + nkey seed) for decentralized auth.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) creds: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) nkey: Option<PathBuf>,
    /// Token for token auth.
    #[arg(long, global = true, env = "EVENTS_NATS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// User name for user/password auth (needs --password).
    #[arg(long, global = true)]
    pub(crate) user: Option<String>,
    /// Password for --user.
    #[arg(
        long,
        global = true,
        env = "EVENTS_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) password: Option<String>,
    /// PEM file of the CA that signed the server certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs --tls-key).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Prefix of the client's reply subjects; an identity made by `auth init` may
    /// subscribe only under `_INBOX_<identity>` [default: _INBOX].
    #[arg(
        long,
        global = true,
        env = "EVENTS_NATS_INBOX_PREFIX",
        value_name = "PREFIX"
    )]
    pub(crate) inbox_prefix: Option<String>,
    /// Give up connecting after this long (e.g. 500ms, 5s).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) connect_timeout: Duration,
}

/// A positive duration such as `500ms`, `5s`, `2m` (clap value parser).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 5s)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

impl ConnArgs {
    /// The library's connection config for these options (validated when connecting).
    pub(crate) fn connect_config(&self) -> ConnectConfig {
        ConnectConfig {
            urls: self.server.clone(),
            name: Some("eventctl".into()),
            auth: AuthConfig {
                credentials_file: self.creds.clone(),
                nkey_seed_file: self.nkey.clone(),
                token: self.token.clone(),
                user: self.user.clone(),
                password: self.password.clone(),
            },
            tls: TlsConfig {
                ca_file: self.tls_ca.clone(),
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                require_tls: false,
            },
            connect_timeout: self.connect_timeout,
            inbox_prefix: self.inbox_prefix.clone(),
            // A tool gives up quickly instead of reconnecting forever.
            reconnect: events::connection::ReconnectPolicy {
                max_reconnects: Some(3),
                ..Default::default()
            },
            ..ConnectConfig::default()
        }
    }
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

/// `eventctl streams ...`
#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Create or update streams and consumers from the topology file; prints the plan/diff.
    ///
    /// Missing streams are created, drifted ones updated; nothing is deleted, and a change
    /// that could drop stored messages is refused (exit 1) unless --force is given.
    /// Applying twice changes nothing the second time.
    #[command(after_help = "Examples:\n  \
        eventctl streams apply --file deploy/streams.toml --profile dev\n  \
        eventctl streams apply --profile prod --dry-run")]
    Apply(ApplyArgs),
    /// List the streams on the server.
    #[command(after_help = "Examples:\n  eventctl streams list\n  eventctl streams list --json")]
    List(ListArgs),
    /// Show one stream: messages, bytes, first/last time, consumers, limits.
    #[command(after_help = "Examples:\n  \
        eventctl streams info AUTH_EVENTS\n  \
        eventctl streams info DLQ_EVENTS --json")]
    Info(InfoArgs),
}

/// Profiles a topology file is resolved for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Profile {
    /// One replica per stream.
    Dev,
    /// Three replicas per stream.
    Prod,
}

impl Profile {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Prod => "prod",
        }
    }
}

/// `streams apply` options.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The topology file.
    #[arg(long, default_value = "deploy/streams.toml", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Which profile of the file to apply.
    #[arg(long, value_enum, default_value = "dev")]
    pub(crate) profile: Profile,
    /// Print the plan only; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also apply changes that may drop stored messages (smaller limits, removed subjects).
    #[arg(long)]
    pub(crate) force: bool,
}

/// `streams list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `streams info` options.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The stream name, e.g. AUTH_EVENTS.
    pub(crate) name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
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
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        config.validate().unwrap();
    }
}
