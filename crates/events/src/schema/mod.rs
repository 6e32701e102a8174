//! Event contracts: one JSON Schema (draft 2020-12) per event type and version, checked on
//! the `data` of every event that names them (issue #16). Behind the `schema` cargo feature.
//!
//! - [`SchemaSet`] (`set.rs`): the schemas of a directory (`schemas/<type>/<major>.<minor>.json`)
//!   or of the registry, each compiled once; [`SchemaSet::validate`] checks an event's
//!   `data` against the schema of its `type` and `schemaversion` and names the JSON pointer
//!   and the rule that failed; [`SchemaSet::data_schema`] gives the URI for `dataschema`;
//!   [`UnknownSchema`] says what to do with a type or version the set does not hold.
//! - [`compat`]: is a schema backward compatible with the previous minor of its major?
//!   Names the field and the rule when it is not.
//! - [`registry`]: the schemas in a JetStream key-value bucket ([`registry::DEFAULT_BUCKET`]),
//!   so that running services can load them without a redeploy.
//! - [`SchemaSource`] (`source.rs`): a service's `[schemas]` configuration (off, a
//!   directory or the registry, and the [`UnknownSchema`] policy) and its loading.
//!
//! A [`SchemaSet`] given to `PublisherConfig::with_schemas` or
//! `SubscriberConfig::with_schemas` enforces the contracts on both ends: the publisher
//! refuses invalid `data` and sets `dataschema`, the subscriber dead-letters invalid `data`
//! as `invalid` on its first delivery.
//!
//! ```no_run
//! # async fn run(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use events::publisher::{PublishError, Publisher, PublisherConfig};
//! use events::schema::{SchemaSet, UnknownSchema};
//! use events::subscriber::SubscriberConfig;
//!
//! let schemas = SchemaSet::from_dir("schemas".as_ref())?.with_unknown(UnknownSchema::Refuse);
//! let config = PublisherConfig::new("auth-service").with_schemas(schemas.clone());
//! let publisher = Publisher::new(client, config).await?;
//! # let event: events::Event = todo!();
//! match publisher.publish(&event).await {
//!     Err(PublishError::Schema { source, .. }) => {
//!         eprintln!("refused at {:?} ({:?})", source.pointer(), source.rule());
//!     }
//!     other => drop(other?),
//! }
//! let consumer = SubscriberConfig::default().with_schemas(schemas);
//! # let _ = consumer;
//! # Ok(()) }
//! ```
//!
//! # Identifiers
//!
//! A schema is identified by its [`SchemaKey`]: event type and [`Version`]. The same key
//! gives its file (`auth.user.created/1.0.json`), its registry key (`auth.user.created.1.0`)
//! and its URI, the document's `$id` and what events carry in `dataschema`:
//! `urn:events:schema:<type>:<major>.<minor>` ([`SchemaKey::uri`]).
//!
//! ```
//! use events::schema::SchemaSet;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut set = SchemaSet::new();
//! set.insert_document(json!({
//!     "$schema": "https://json-schema.org/draft/2020-12/schema",
//!     "$id": "urn:events:schema:auth.user.created:1.0",
//!     "type": "object",
//!     "required": ["email"],
//!     "properties": { "email": { "type": "string" } }
//! }))?;
//! let event = events::Event::builder("auth.user.created")
//!     .source("auth-service")
//!     .organization("org-1")
//!     .schema_version("1.0")
//!     .data(&json!({ "user_id": "u-1" }))
//!     .build()?;
//! let err = set.validate(&event).unwrap_err();
//! assert_eq!(err.pointer(), Some("/email"));
//! assert_eq!(err.rule(), Some("required"));
//! assert_eq!(
//!     set.data_schema("auth.user.created", "1.0"),
//!     Some("urn:events:schema:auth.user.created:1.0")
//! );
//! # Ok(()) }
//! ```

pub mod compat;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod registry;
mod set;
mod source;

use std::fmt;
use std::str::FromStr;

use crate::names::EventType;

pub use set::{LoadError, Schema, SchemaError, SchemaSet, UnknownSchema};
pub use source::{SchemaOrigin, SchemaSource, SourceError};

/// The `$schema` every document declares: JSON Schema draft 2020-12.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// The prefix of every schema URI: `urn:events:schema:<type>:<major>.<minor>`.
pub const URI_PREFIX: &str = "urn:events:schema:";

/// A `schemaversion`: `<major>.<minor>`, both decimal integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Changes on a breaking change; a consumer supports a set of majors.
    pub major: u32,
    /// Changes on a backward-compatible change within the major.
    pub minor: u32,
}

impl Version {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A string that is not `<major>.<minor>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema version {0:?} is not <major>.<minor> (decimal integers)")]
pub struct VersionError(pub String);

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError(s.to_owned());
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        };
        Ok(Self::new(number(major)?, number(minor)?))
    }
}

/// One schema's identity: event type and version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaKey {
    /// The event type the schema describes the `data` of.
    pub event_type: EventType,
    /// Its `schemaversion`.
    pub version: Version,
}

impl SchemaKey {
    /// The key of `event_type` at `version`.
    pub fn new(event_type: EventType, version: Version) -> Self {
        Self {
            event_type,
            version,
        }
    }

    /// Parses a type and a version string.
    ///
    /// # Errors
    /// A message naming what is wrong with either.
    pub fn parse(event_type: &str, version: &str) -> Result<Self, String> {
        let event_type = EventType::new(event_type).map_err(|e| e.to_string())?;
        let version = version.parse().map_err(|e: VersionError| e.to_string())?;
        Ok(Self::new(event_type, version))
    }

    /// `urn:events:schema:<type>:<major>.<minor>`: the document's `$id` and the `dataschema`
    /// of the events it describes.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}:{}", self.event_type, self.version)
    }

    /// Parses a URI made by [`Self::uri`].
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let (ty, version) = rest.rsplit_once(':')?;
        Self::parse(ty, version).ok()
    }

    /// `<type>/<major>.<minor>.json`: the file under the schema directory.
    pub fn file_path(&self) -> String {
        format!("{}/{}.json", self.event_type, self.version)
    }

    /// Parses a path made by [`Self::file_path`] (`/` separated, relative to the
    /// schema directory).
    pub fn from_file_path(path: &str) -> Option<Self> {
        let (ty, file) = path.split_once('/')?;
        Self::parse(ty, file.strip_suffix(".json")?).ok()
    }

    /// `<type>.<major>.<minor>`: the key in the registry bucket.
    pub fn registry_key(&self) -> String {
        format!("{}.{}", self.event_type, self.version)
    }

    /// Parses a key made by [`Self::registry_key`].
    pub fn from_registry_key(key: &str) -> Option<Self> {
        let (rest, minor) = key.rsplit_once('.')?;
        let (ty, major) = rest.rsplit_once('.')?;
        Self::parse(ty, &format!("{major}.{minor}")).ok()
    }
}

impl fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.event_type, self.version)
    }
}

/// Escapes a property name for a JSON pointer (RFC 6901: `~` is `~0`, `/` is `~1`).
pub(crate) fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SchemaKey {
        SchemaKey::parse("auth.user.created", "1.10").unwrap()
    }

    #[test]
    fn versions_parse_strictly_and_order_numerically() {
        assert_eq!("1.0".parse::<Version>().unwrap(), Version::new(1, 0));
        for bad in ["1", "1.", ".1", "1.0.0", "v1.0", "1.a", "-1.0", "1.+2", ""] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
        assert!(Version::new(1, 9) < Version::new(1, 10));
        assert!(Version::new(1, 10) < Version::new(2, 0));
    }

    #[test]
    fn one_key_gives_uri_file_and_registry_key_and_back() {
        let k = key();
        assert_eq!(k.uri(), "urn:events:schema:auth.user.created:1.10");
        assert_eq!(k.file_path(), "auth.user.created/1.10.json");
        assert_eq!(k.registry_key(), "auth.user.created.1.10");
        assert_eq!(SchemaKey::from_uri(&k.uri()), Some(k.clone()));
        assert_eq!(SchemaKey::from_file_path(&k.file_path()), Some(k.clone()));
        assert_eq!(SchemaKey::from_registry_key(&k.registry_key()), Some(k));
        assert_eq!(
            SchemaKey::from_uri("urn:events:schema:auth.user.created:1"),
            None
        );
        assert_eq!(SchemaKey::from_file_path("auth.user.created/1.json"), None);
        assert_eq!(SchemaKey::from_registry_key("Auth.user.created.1.0"), None);
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
