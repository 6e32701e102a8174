//! Configuration: a TOML file (every key optional), then command-line / environment
//! overrides applied by `main`.
//!
//! ```toml
//! listen = "127.0.0.1:8081"        # the users API
//! admin_listen = "127.0.0.1:9091"  # /metrics, /healthz, /readyz
//! shutdown_timeout = "10s"
//!
//! [nats]                           # events::connection::ConnectConfig
//! urls = ["nats://127.0.0.1:4222"]
//! # With an identity of `eventctl auth init` over TLS (deploy/secure/auth-service.toml):
//! # urls = ["tls://127.0.0.1:4222"]
//! # inbox_prefix = "_INBOX_auth-service"
//! # auth = { nkey_seed_file = ".data/secure/auth-service.nk" }   # or credentials_file
//! # tls = { ca_file = ".data/secure/tls/ca.pem", require_tls = true }  # + cert_file, key_file
//!
//! [publisher]                      # events::publisher::PublisherConfig
//! deadline = "20s"
//!
//! [schemas]                        # events::schema::SchemaSource
//! from = "dir"                     # or "registry" (bucket EVENT_SCHEMAS), or "off"
//! dir = "schemas"                  # default: the repository's schemas/
//! unknown = "refuse"               # a type or version without a schema is not published
//! ```
//!
//! `database = "sqlite://.data/auth-service/auth.db"` (or `postgres://user@host/db`) is a
//! top-level key too: the users and the outbox.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use events::connection::ConnectConfig;
use events::publisher::PublisherConfig;
use events::schema::{SchemaSource, UnknownSchema};
use serde::{Deserialize, Serialize};

use crate::schema::SOURCE;

/// Everything auth-service can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach NATS (`EVENTS_NATS_URL` overrides the URLs).
    pub nats: ConnectConfig,
    /// Where the users API listens.
    pub listen: SocketAddr,
    /// Where the admin server (`/metrics`, `/healthz`, `/readyz`) listens. Loopback by
    /// default: the admin router also carries the dead-letter API.
    pub admin_listen: SocketAddr,
    /// Publisher tuning (deadline, retries, optional durable spool).
    pub publisher: PublisherConfig,
    /// The event contracts every published event is validated against: by default the
    /// repository's `schemas/`, unknown types refused ([`default_schemas`]).
    pub schemas: SchemaSource,
    /// Bound on each shutdown step: finishing in-flight requests, flushing the publisher,
    /// stopping the admin server.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The users and the outbox: `sqlite://PATH` (created if missing) or `postgres://...`
    /// (`--database` / `AUTH_SERVICE_DATABASE` override it).
    pub database: String,
}

/// Where the users live unless told otherwise.
pub const DEFAULT_DATABASE: &str = "sqlite://.data/auth-service/auth.db";

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: ConnectConfig {
                name: Some(SOURCE.to_owned()),
                ..ConnectConfig::default()
            },
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9091)),
            publisher: PublisherConfig::new(SOURCE),
            schemas: default_schemas(),
            shutdown_timeout: Duration::from_secs(10),
            database: DEFAULT_DATABASE.to_owned(),
        }
    }
}

/// Without a `[schemas]` table: the repository's `schemas/` (the path is fixed when the
/// binary is built, so that it is found from any working directory; a `[schemas]` table
/// starts from `dir = "schemas"`, relative to the working directory), and a type or
/// version without a schema refused: an example service publishes only what has a
/// contract.
pub fn default_schemas() -> SchemaSource {
    SchemaSource::dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas"))
        .with_unknown(UnknownSchema::Refuse)
}

impl Config {
    /// Parses a TOML document; `origin` names it in errors.
    ///
    /// # Errors
    /// If the TOML does not parse or has an unknown key (the message names it and its line).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError {
            origin: origin.to_owned(),
            source,
        })
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration in {origin}")]
pub struct ConfigError {
    /// The file.
    pub origin: String,
    /// What is wrong, with its line.
    #[source]
    pub source: toml::de::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults_and_keys_override_them() {
        assert_eq!(Config::from_toml("", "t").unwrap(), Config::default());
        let cfg = Config::from_toml(
            "listen = \"0.0.0.0:8000\"\nshutdown_timeout = \"3s\"\n[nats]\nurls = \"nats://n1:4222\"\n[publisher]\ndeadline = \"20s\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 8000);
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(cfg.nats.urls, vec!["nats://n1:4222".to_owned()]);
        assert_eq!(cfg.publisher.deadline, Duration::from_secs(20));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::from_toml("listn = \"0.0.0.0:8000\"", "auth.toml").unwrap_err();
        let text = format!("{err}: {}", err.source);
        assert!(
            text.contains("auth.toml") && text.contains("listn"),
            "{text}"
        );
    }

    #[test]
    fn the_shipped_secure_file_names_an_identity_and_tls() {
        let text = include_str!("../../../deploy/secure/auth-service.toml");
        let cfg = Config::from_toml(text, "auth-service.toml").unwrap();
        cfg.nats.validate().unwrap();
        assert_eq!(
            cfg.nats.inbox_prefix.as_deref(),
            Some("_INBOX_auth-service")
        );
        assert!(cfg.nats.auth.nkey_seed_file.is_some());
        assert!(cfg.nats.tls.require_tls && cfg.nats.tls.ca_file.is_some());
    }

    #[test]
    fn the_shipped_example_file_parses() {
        let text = include_str!("../auth-service.toml");
        let cfg = Config::from_toml(text, "auth-service.toml").unwrap();
        cfg.publisher.validate().unwrap();
        cfg.nats.validate().unwrap();
        assert_eq!(cfg.schemas.unknown, UnknownSchema::Refuse);
    }

    #[test]
    fn schemas_default_to_the_repository_and_refuse_unknown_types() {
        let schemas = Config::default().schemas;
        assert_eq!(schemas.from, events::schema::SchemaOrigin::Dir);
        assert!(schemas.dir.join("auth.user.created/1.0.json").is_file());
        let cfg = Config::from_toml("[schemas]\nfrom = \"registry\"\n", "t").unwrap();
        assert_eq!(cfg.schemas.from, events::schema::SchemaOrigin::Registry);
        assert_eq!(cfg.schemas.bucket, "EVENT_SCHEMAS");
        assert_eq!(cfg.schemas.unknown, UnknownSchema::Refuse);
    }
}
