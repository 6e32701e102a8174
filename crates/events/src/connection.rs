//! Connection: the one place that builds an async-nats client from a config.
//!
//! [`ConnectConfig`] is plain serde data (TOML-friendly, `Default`, [`validate`]), so a
//! service or tool loads it from its own config file and applies its own overrides; the
//! library never reads files or the environment itself (except the credential, seed and TLS
//! files the config names). [`connect`] turns it into a [`Connection`]: a client, a
//! JetStream context and `is_connected()`.
//!
//! The initial connect tries every URL once and fails within
//! [`ConnectConfig::connect_timeout`] with an error naming the URLs tried; once connected,
//! the client reconnects by the [`ReconnectPolicy`]. A service that must start while NATS
//! is down uses [`connect_in_background`] instead, which returns at once and connects (by
//! the same policy) when a server answers. Connection-state events (connected,
//! disconnected, reconnecting, lame duck, slow consumer, server and client errors) are logged
//! through `tracing` with the client name as a field; a server's `Permissions Violation`
//! is also recorded in the connection's [`Denials`], so that what waits on the denied
//! subject fails at once with [`PermissionDenied`] (see the [`denials`] module).
//!
//! ```no_run
//! use events::connection::{ConnectConfig, connect};
//! # async fn example() -> Result<(), events::connection::ConnectError> {
//! let config = ConnectConfig {
//!     urls: vec!["nats://127.0.0.1:4222".into()],
//!     name: Some("catalog-service".into()),
//!     ..Default::default()
//! };
//! let conn = connect(&config).await?;
//! let js = conn.jetstream();
//! # let _ = js;
//! # Ok(())
//! # }
//! ```
//!
//! [`validate`]: ConnectConfig::validate

use crate::backoff::Backoff;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Deserializer, Serialize};

pub mod denials;
mod handle;
mod options;

pub use denials::{Denial, Denials, DeniedOperation, PermissionDenied};
pub use handle::Nats;

/// The URL used when none is configured: a local dev server.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How to reach NATS: servers, identity, credentials, TLS, timeouts and reconnects.
///
/// TOML example:
///
/// ```toml
/// urls = ["nats://n1:4222", "nats://n2:4222"]   # or one string
/// name = "catalog-service"
/// connect_timeout = "5s"
/// auth = { credentials_file = "/etc/nats/service.creds" }
/// tls = { ca_file = "/etc/nats/ca.pem" }
/// inbox_prefix = "_INBOX_catalog-service"
/// reconnect = { max_reconnects = 60, max_delay = "5s" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    /// Server URLs to try (`nats://host:port`, `tls://host:port`); one string or a list.
    /// The client also learns the other cluster members from the server.
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// Client name shown by the server (`/connz`) and in our logs; the service name is a
    /// good choice.
    pub name: Option<String>,
    /// Credentials: at most one method.
    pub auth: AuthConfig,
    /// TLS settings; TLS is also used when a URL says `tls://`.
    pub tls: TlsConfig,
    /// Bound on the initial connect, all URLs included (default 5 s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// What the client does after losing an established connection.
    pub reconnect: ReconnectPolicy,
    /// How often the client pings the server to detect a dead connection (default 60 s).
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Bound on a request and on a JetStream API call (default 10 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Prefix of the client's reply subjects (default `_INBOX`). An identity made by
    /// `eventctl auth init` may subscribe only under `_INBOX_<identity>`, so its clients
    /// must set that (see [`crate::security::inbox_prefix`]).
    pub inbox_prefix: Option<String>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            urls: vec![DEFAULT_URL.to_owned()],
            name: None,
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            connect_timeout: Duration::from_secs(5),
            reconnect: ReconnectPolicy::default(),
            ping_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            inbox_prefix: None,
        }
    }
}

/// Credentials; at most one of: credentials file, nkey seed file, token, user + password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A `.creds` file (JWT + nkey seed), as issued by `nsc` for decentralized auth.
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`), for nkey auth.
    pub nkey_seed_file: Option<PathBuf>,
    /// A token, for token auth.
    pub token: Option<String>,
    /// A user name, for user + password auth (needs `password`).
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
}

impl fmt::Debug for AuthConfig {
    // Secrets never reach logs: token and password are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("credentials_file", &self.credentials_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AuthConfig {
    /// Names of the methods that are set (for the "at most one" rule and messages).
    fn methods(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.credentials_file.is_some() {
            out.push("credentials_file");
        }
        if self.nkey_seed_file.is_some() {
            out.push("nkey_seed_file");
        }
        if self.token.is_some() {
            out.push("token");
        }
        if self.user.is_some() || self.password.is_some() {
            out.push("user/password");
        }
        out
    }
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the server certificate (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub require_tls: bool,
}

/// What the client does after losing an established connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectPolicy {
    /// Reconnect attempts before giving up for good; absent means unlimited (the default:
    /// a service should outlive a server restart of any length).
    pub max_reconnects: Option<usize>,
    /// Longest wait between two attempts; the wait doubles from 100 ms up to this (default
    /// 5 s).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_reconnects: None,
            max_delay: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// The wait before reconnect attempt `attempt` (1-based): 0 for the first, then
    /// 100 ms doubling, capped at `max_delay`.
    pub fn delay(&self, attempt: usize) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let n = u32::try_from(attempt - 2).unwrap_or(u32::MAX);
        Backoff::doubling(Duration::from_millis(100), self.max_delay).delay(n)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One problem found by [`ConnectConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigProblem {
    /// The config field, dotted (`auth.token`, `tls.key_file`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// async-nats's connect error, shown once: its own message repeats its cause, which an
/// error chain (`{err:#}`) would then print twice. Displays the kind; the cause is the
/// source.
#[derive(Debug)]
pub struct NatsConnectError(pub async_nats::ConnectError);

impl fmt::Display for NatsConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.kind())
    }
}

impl std::error::Error for NatsConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The config breaks a rule; every problem is listed with its field.
    #[error("invalid connection config: {}", join_problems(.problems))]
    InvalidConfig {
        /// The problems, each naming its field.
        problems: Vec<ConfigProblem>,
    },
    /// A file named by the config could not be read.
    #[error("cannot read {what} {}", .path.display())]
    File {
        /// Which setting: `credentials file`, `nkey seed file`, `TLS CA file`, ...
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No server answered within the connect timeout.
    #[error("could not connect to NATS at {urls} within {timeout:?}")]
    Timeout {
        /// The URLs tried, comma-separated.
        urls: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// The server refused our credentials.
    #[error("NATS at {urls} refused the credentials (authorization violation)")]
    Auth {
        /// The URLs tried, comma-separated.
        urls: String,
        /// The client's error.
        #[source]
        source: NatsConnectError,
    },
    /// The TLS setup or handshake failed.
    #[error("TLS with NATS at {urls} failed")]
    Tls {
        /// The URLs tried, comma-separated.
        urls: String,
        /// The client's error.
        #[source]
        source: NatsConnectError,
    },
    /// Any other failure to connect (refused, DNS, I/O).
    #[error("could not connect to NATS at {urls}")]
    Nats {
        /// The URLs tried, comma-separated.
        urls: String,
        /// The client's error.
        #[source]
        source: NatsConnectError,
    },
}

impl ConnectConfig {
    /// A default config for one URL.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            ..Self::default()
        }
    }

    /// The URLs, comma-separated, as error messages show them.
    pub fn urls_display(&self) -> String {
        self.urls.join(", ")
    }

    /// Checks every rule and reports all problems at once.
    ///
    /// # Errors
    /// [`ConnectError::InvalidConfig`] listing each problem with its field: no URL or one
    /// that does not parse, more than one auth method, user without password (or the
    /// reverse), an empty token, name or user, a client cert without key (or the reverse),
    /// a zero timeout, interval or delay, an inbox prefix that is not subject tokens.
    pub fn validate(&self) -> Result<(), ConnectError> {
        let mut problems = Vec::new();
        self.identity_problems(&mut problems);
        self.auth.problems(&mut problems);
        self.tls.problems(&mut problems);
        self.duration_problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConnectError::InvalidConfig { problems })
        }
    }

    /// URLs that are missing or do not parse, an empty name, a bad inbox prefix.
    fn identity_problems(&self, out: &mut Vec<ConfigProblem>) {
        if self.urls.is_empty() {
            out.push(ConfigProblem::new("urls", "at least one URL is needed"));
        }
        for url in &self.urls {
            if url.trim().is_empty() {
                out.push(ConfigProblem::new("urls", "an empty URL"));
            } else if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                out.push(ConfigProblem::new(
                    "urls",
                    format!("{url:?} is not a NATS URL: {e}"),
                ));
            }
        }
        if self.name.as_deref() == Some("") {
            out.push(ConfigProblem::new("name", "must not be empty when set"));
        }
        if let Some(prefix) = &self.inbox_prefix
            && let Err(reason) = check_inbox_prefix(prefix)
        {
            out.push(ConfigProblem::new("inbox_prefix", reason));
        }
    }

    /// A zero timeout, interval or delay.
    fn duration_problems(&self, out: &mut Vec<ConfigProblem>) {
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("ping_interval", self.ping_interval),
            ("request_timeout", self.request_timeout),
            ("reconnect.max_delay", self.reconnect.max_delay),
        ] {
            if d.is_zero() {
                out.push(ConfigProblem::new(field, "must be greater than zero"));
            }
        }
    }
}

impl AuthConfig {
    /// More than one method, an empty token or user, a user without password (or the
    /// reverse).
    fn problems(&self, out: &mut Vec<ConfigProblem>) {
        let methods = self.methods();
        if methods.len() > 1 {
            out.push(ConfigProblem::new(
                "auth",
                format!(
                    "set at most one auth method; found {}",
                    methods.join(" and ")
                ),
            ));
        }
        if self.token.as_deref() == Some("") {
            out.push(ConfigProblem::new("auth.token", "must not be empty"));
        }
        let problem = match (&self.user, &self.password) {
            (Some(u), _) if u.is_empty() => Some(("auth.user", "must not be empty")),
            (Some(_), None) => Some(("auth.password", "user is set but password is not")),
            (None, Some(_)) => Some(("auth.user", "password is set but user is not")),
            _ => None,
        };
        out.extend(problem.map(|(field, reason)| ConfigProblem::new(field, reason)));
    }
}

impl TlsConfig {
    /// A client certificate without its key, or the reverse.
    fn problems(&self, out: &mut Vec<ConfigProblem>) {
        let problem = match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Some(("tls.key_file", "cert_file is set but key_file is not")),
            (None, Some(_)) => Some(("tls.cert_file", "key_file is set but cert_file is not")),
            _ => None,
        };
        out.extend(problem.map(|(field, reason)| ConfigProblem::new(field, reason)));
    }
}

impl ConfigProblem {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// An inbox prefix is one or more subject tokens: no wildcard, no empty token, no
/// whitespace (the client appends `.<id>` to it).
fn check_inbox_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty when set".into());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!(
                "{prefix:?} has an empty token (a leading, trailing or double dot)"
            ));
        }
        if token == "*" || token == ">" || token.contains(['*', '>']) {
            return Err(format!(
                "{prefix:?} has a wildcard; write plain tokens like _INBOX_auth-service"
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{prefix:?} has whitespace or a control character"));
        }
    }
    Ok(())
}

/// A connected client with its JetStream context.
#[derive(Debug, Clone)]
pub struct Connection {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    urls: String,
    denials: Denials,
}

impl Connection {
    /// The NATS client (cheap to clone).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// A JetStream context on the client, with the configured request timeout.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// True while the client is connected (false while it reconnects).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The configured URLs, comma-separated.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The client, dropping the rest.
    pub fn into_client(self) -> async_nats::Client {
        self.client
    }

    /// The permission denials the server reported on this connection: hand them to a
    /// [`Publisher`](crate::Publisher) or [`Subscriber`](crate::Subscriber) so that a
    /// denial fails fast and typed, or [`Denials::guard`] a request.
    pub fn denials(&self) -> &Denials {
        &self.denials
    }
}

/// Connects by `config`.
///
/// Tries each URL once; fails within `config.connect_timeout`. After that the client
/// reconnects on its own by `config.reconnect`, logging its state changes.
///
/// # Errors
/// [`ConnectError`]: invalid config (naming the field), an unreadable credentials, seed or
/// TLS file (naming the path), a timeout, refused credentials, a TLS failure or any other
/// connect failure, each naming the URLs tried.
pub async fn connect(config: &ConnectConfig) -> Result<Connection, ConnectError> {
    let conn = open(config, false).await?;
    tracing::debug!(client = %config.name.as_deref().unwrap_or_default(), urls = %conn.urls(), "connected to NATS");
    Ok(conn)
}

/// Connects by `config` without waiting for a server: returns at once with a client that
/// connects in the background (async-nats `retry_on_initial_connect`), retrying by
/// `config.reconnect`, and publishes and requests once it is up. For a service that must
/// start (answer `/healthz`, report not ready, spool) while NATS is down; watch
/// [`Connection::is_connected`].
///
/// # Errors
/// Only what can be known without a server: an invalid config or an unreadable
/// credentials, seed or TLS file. Refused credentials show later, in the logs.
pub async fn connect_in_background(config: &ConnectConfig) -> Result<Connection, ConnectError> {
    let conn = open(config, true).await?;
    tracing::info!(client = %config.name.as_deref().unwrap_or_default(), urls = %conn.urls(), "connecting to NATS in the background");
    Ok(conn)
}

/// The one connect path: options from `config`, then the connect under
/// `config.connect_timeout`. With `in_background`, async-nats returns before any network
/// I/O (`retry_on_initial_connect`) and the bound only guards against that changing.
async fn open(config: &ConnectConfig, in_background: bool) -> Result<Connection, ConnectError> {
    let urls = config.urls_display();
    let denials = Denials::new();
    let mut options = options::options(config, &denials).await?;
    if in_background {
        options = options.retry_on_initial_connect();
    }
    let attempt = options.connect(config.urls.clone());
    let client = match tokio::time::timeout(config.connect_timeout, attempt).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                urls,
                timeout: config.connect_timeout,
            });
        }
        Ok(Err(err)) => return Err(connect_error(err, urls, config.connect_timeout)),
        Ok(Ok(client)) => client,
    };
    Ok(Connection::new(client, config, urls, denials))
}

/// Sorts a failed initial connect.
fn connect_error(err: async_nats::ConnectError, urls: String, timeout: Duration) -> ConnectError {
    use async_nats::ConnectErrorKind as K;
    let kind = err.kind();
    let source = NatsConnectError(err);
    match kind {
        K::AuthorizationViolation | K::Authentication => ConnectError::Auth { urls, source },
        K::Tls => ConnectError::Tls { urls, source },
        K::TimedOut => ConnectError::Timeout { urls, timeout },
        // A failed handshake (e.g. "invalid peer certificate") comes back as an I/O
        // error wrapping the rustls error.
        K::Io if is_tls_failure(&source) => ConnectError::Tls { urls, source },
        _ => ConnectError::Nats { urls, source },
    }
}

/// True if a rustls error is somewhere in `err`'s chain (also inside an `io::Error`).
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<async_nats::rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl Connection {
    fn new(
        client: async_nats::Client,
        config: &ConnectConfig,
        urls: String,
        denials: Denials,
    ) -> Self {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        Self {
            client,
            jetstream,
            urls,
            denials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ConnectConfig::default().validate().unwrap();
        assert_eq!(
            ConnectConfig::default().connect_timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn two_auth_methods_are_refused() {
        let config = ConnectConfig {
            auth: AuthConfig {
                token: Some("t".into()),
                user: Some("u".into()),
                password: Some("p".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("auth: set at most one auth method"), "{err}");
        assert!(err.contains("token and user/password"), "{err}");
    }

    #[test]
    fn every_problem_is_named() {
        let config = ConnectConfig {
            urls: vec![],
            auth: AuthConfig {
                user: Some("u".into()),
                ..Default::default()
            },
            tls: TlsConfig {
                cert_file: Some("c.pem".into()),
                ..Default::default()
            },
            connect_timeout: Duration::ZERO,
            ..Default::default()
        };
        let ConnectError::InvalidConfig { problems } = config.validate().unwrap_err() else {
            panic!("expected InvalidConfig")
        };
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert!(
            ConnectConfig::for_url("")
                .validate()
                .unwrap_err()
                .to_string()
                .contains("urls: an empty URL")
        );
        assert_eq!(
            fields,
            ["urls", "auth.password", "tls.key_file", "connect_timeout"]
        );
    }

    #[test]
    fn toml_round_trip_and_one_url() {
        let config: ConnectConfig = toml::from_str(
            r#"
            urls = "nats://a:4222"
            connect_timeout = "2s"
            auth = { token = "s3cret" }
            reconnect = { max_reconnects = 3, max_delay = "1s" }
            "#,
        )
        .unwrap();
        assert_eq!(config.urls, ["nats://a:4222"]);
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.reconnect.max_reconnects, Some(3));
        assert!(!format!("{config:?}").contains("s3cret"));
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<ConnectConfig>(&text).unwrap(), config);
        assert!(toml::from_str::<ConnectConfig>("nope = 1").is_err());
    }

    #[test]
    fn inbox_prefix_must_be_plain_tokens() {
        for good in ["_INBOX_auth-service", "a.b"] {
            let config = ConnectConfig {
                inbox_prefix: Some(good.into()),
                ..Default::default()
            };
            config.validate().unwrap();
        }
        for bad in ["", "a..b", ".a", "a.*", "_INBOX.>", "a b"] {
            let config = ConnectConfig {
                inbox_prefix: Some(bad.into()),
                ..Default::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("inbox_prefix: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn reconnect_delay_grows_to_the_cap() {
        let p = ReconnectPolicy {
            max_reconnects: None,
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1), Duration::ZERO);
        assert_eq!(p.delay(2), Duration::from_millis(100));
        assert_eq!(p.delay(3), Duration::from_millis(200));
        assert_eq!(p.delay(100), Duration::from_secs(1));
    }
}
