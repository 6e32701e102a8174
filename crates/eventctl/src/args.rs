//! Option types shared by the command line and the commands: the global connection options,
//! the duration parser, the topology profile.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use events::connection::{AuthConfig, ConnectConfig, TlsConfig};

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
