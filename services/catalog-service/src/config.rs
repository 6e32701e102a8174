//! Configuration: a TOML file (every key optional), then command-line / environment
//! overrides applied by `main`.
//!
//! ```toml
//! admin_listen = "127.0.0.1:9092"    # /catalogs/{org}, /metrics, /healthz, /readyz
//! database = "sqlite://.data/catalog-service/catalog.db"   # or postgres://user@host/db
//! shutdown_timeout = "10s"
//!
//! [nats]                             # events::connection::ConnectConfig
//! urls = ["nats://127.0.0.1:4222"]
//! # With an identity of `eventctl auth init` over TLS (deploy/secure/catalog-service.toml):
//! # urls = ["tls://127.0.0.1:4222"]
//! # inbox_prefix = "_INBOX_catalog-service"
//! # auth = { nkey_seed_file = ".data/secure/catalog-service.nk" }   # or credentials_file
//! # tls = { ca_file = ".data/secure/tls/ca.pem", require_tls = true }  # + cert_file, key_file
//!
//! [subscriber]                       # events::subscriber::SubscriberConfig
//! max_in_flight = 32
//! drain_timeout = "10s"
//! retry = { max_attempts = 5, initial_backoff = "1s", max_backoff = "1m" }
//!
//! [schemas]                          # events::schema::SchemaSource
//! from = "dir"                       # or "registry" (bucket EVENT_SCHEMAS), or "off"
//! dir = "schemas"                    # default: the repository's schemas/
//! unknown = "refuse"                 # a type or version without a schema is dead-lettered
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use events::connection::ConnectConfig;
use events::schema::{SchemaSource, UnknownSchema};
use events::subscriber::SubscriberConfig;
use serde::{Deserialize, Serialize};

use crate::GROUP;

/// Everything catalog-service can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach NATS (`EVENTS_NATS_URL` overrides the URLs).
    pub nats: ConnectConfig,
    /// Where the admin server listens: `/catalogs/{org}` plus the `events-admin` routes.
    /// Loopback by default: the admin router also carries the dead-letter API.
    pub admin_listen: SocketAddr,
    /// The subscription's tuning (retries, ack wait, concurrency, drain timeout).
    pub subscriber: SubscriberConfig,
    /// The event contracts every delivered event is validated against before the handler
    /// runs (an invalid one is dead-lettered as `invalid` on its first delivery): by
    /// default the repository's `schemas/`, unknown types refused ([`default_schemas`]).
    pub schemas: SchemaSource,
    /// Bound on stopping the admin server (the subscriber's drain has its own,
    /// `subscriber.drain_timeout`).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The projection and the inbox: `sqlite://PATH` (created if missing) or
    /// `postgres://...` (`--database` / `CATALOG_SERVICE_DATABASE` override it).
    pub database: String,
}

/// Where the projection lives unless told otherwise.
pub const DEFAULT_DATABASE: &str = "sqlite://.data/catalog-service/catalog.db";

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: ConnectConfig {
                name: Some(GROUP.to_owned()),
                ..ConnectConfig::default()
            },
            admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9092)),
            subscriber: SubscriberConfig {
                drain_timeout: Duration::from_secs(10),
                ..SubscriberConfig::default()
            },
            schemas: default_schemas(),
            shutdown_timeout: Duration::from_secs(10),
            database: DEFAULT_DATABASE.to_owned(),
        }
    }
}

/// Without a `[schemas]` table: the repository's `schemas/` (the path is fixed when the
/// binary is built, so that it is found from any working directory; a `[schemas]` table
/// starts from `dir = "schemas"`, relative to the working directory), and a type or
/// version without a schema refused: the handler sees only events with a contract.
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
            "database = \"sqlite::memory:\"\n[subscriber]\nmax_in_flight = 4\nretry = { max_attempts = 3 }\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.database, "sqlite::memory:");
        assert_eq!(cfg.subscriber.max_in_flight, 4);
        assert_eq!(cfg.subscriber.retry.max_attempts, 3);
        cfg.subscriber.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err =
            Config::from_toml("[subscriber]\nmax_inflight = 4\n", "catalog.toml").unwrap_err();
        let text = format!("{err}: {}", err.source);
        assert!(
            text.contains("catalog.toml") && text.contains("max_inflight"),
            "{text}"
        );
    }

    #[test]
    fn the_shipped_secure_file_names_an_identity_and_tls() {
        let text = include_str!("../../../deploy/secure/catalog-service.toml");
        let cfg = Config::from_toml(text, "catalog-service.toml").unwrap();
        cfg.nats.validate().unwrap();
        assert_eq!(
            cfg.nats.inbox_prefix.as_deref(),
            Some("_INBOX_catalog-service")
        );
        assert!(cfg.nats.auth.nkey_seed_file.is_some());
        assert!(cfg.nats.tls.require_tls && cfg.nats.tls.ca_file.is_some());
    }

    #[test]
    fn the_shipped_example_file_parses() {
        let text = include_str!("../catalog-service.toml");
        let cfg = Config::from_toml(text, "catalog-service.toml").unwrap();
        cfg.subscriber.validate().unwrap();
        cfg.nats.validate().unwrap();
        assert_eq!(cfg.schemas, default_schemas());
    }

    #[test]
    fn schemas_default_to_the_repository_and_refuse_unknown_types() {
        let schemas = Config::default().schemas;
        assert_eq!(schemas.from, events::schema::SchemaOrigin::Dir);
        assert!(schemas.dir.join("auth.user.created/1.0.json").is_file());
        assert_eq!(schemas.unknown, UnknownSchema::Refuse);
        let cfg = Config::from_toml("[schemas]\nfrom = \"off\"\n", "t").unwrap();
        assert_eq!(cfg.schemas.from, events::schema::SchemaOrigin::Off);
    }
}
