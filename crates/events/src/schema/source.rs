//! [`SchemaSource`]: where a service loads its [`SchemaSet`] from, as configuration data
//! (TOML `[schemas]`), and the one function that loads it. Its defaults are those of a
//! service that enforces its contracts (the keys below); the publisher and subscriber
//! validate nothing until they are given a set.
//!
//! ```toml
//! [schemas]
//! from = "dir"          # "dir", "registry" or "off" (no validation)
//! dir = "schemas"       # with from = "dir": the schema directory
//! bucket = "EVENT_SCHEMAS"  # with from = "registry": the key-value bucket
//! unknown = "refuse"    # a type or version without a schema: "refuse" or "accept_unvalidated"
//! ```

use std::path::PathBuf;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use super::registry::{DEFAULT_BUCKET, RegistryError, SchemaRegistry};
use super::{LoadError, SchemaSet, UnknownSchema};

/// Where the schemas come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaOrigin {
    /// No schemas: nothing is validated.
    Off,
    /// The files of [`SchemaSource::dir`] ([`SchemaSet::from_dir`]): the default.
    #[default]
    Dir,
    /// The registry bucket [`SchemaSource::bucket`] ([`SchemaRegistry::load`]): schemas
    /// pushed with `eventctl schema push` reach the service at its next start, without a
    /// new build. Needs NATS at start (each registry read is bounded).
    Registry,
}

/// Where a service loads its schema set from, and its policy for types without a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaSource {
    /// Files, registry, or nothing.
    pub from: SchemaOrigin,
    /// The schema directory (`<type>/<major>.<minor>.json`), for [`SchemaOrigin::Dir`];
    /// a relative path is relative to the working directory.
    pub dir: PathBuf,
    /// The registry bucket, for [`SchemaOrigin::Registry`].
    pub bucket: String,
    /// What to do with an event whose type and version have no schema
    /// ([`SchemaSet::with_unknown`]); [`UnknownSchema::Refuse`] unless told otherwise (a
    /// bare [`SchemaSet`] accepts them).
    pub unknown: UnknownSchema,
}

impl Default for SchemaSource {
    /// From the directory `schemas` (relative to the working directory), `bucket`
    /// [`DEFAULT_BUCKET`], unknown types refused.
    fn default() -> Self {
        Self {
            from: SchemaOrigin::Dir,
            dir: PathBuf::from("schemas"),
            bucket: DEFAULT_BUCKET.to_owned(),
            unknown: UnknownSchema::Refuse,
        }
    }
}

/// Why [`SchemaSource::load`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The directory, or a schema in it, could not be loaded.
    #[error("cannot load the schemas of {}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong (names the file).
        #[source]
        source: LoadError,
    },
    /// The registry could not be read, or holds an invalid schema.
    #[error("cannot load the schemas of registry bucket {bucket}")]
    Registry {
        /// The bucket.
        bucket: String,
        /// The cause.
        #[source]
        source: RegistryError,
    },
}

impl SchemaSource {
    /// The schemas of the files under `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            from: SchemaOrigin::Dir,
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// No schemas ([`SchemaOrigin::Off`]).
    pub fn off() -> Self {
        Self {
            from: SchemaOrigin::Off,
            ..Self::default()
        }
    }

    /// The schemas of the registry bucket `bucket`.
    pub fn registry(bucket: impl Into<String>) -> Self {
        Self {
            from: SchemaOrigin::Registry,
            bucket: bucket.into(),
            ..Self::default()
        }
    }

    /// Sets [`Self::unknown`].
    pub fn with_unknown(mut self, policy: UnknownSchema) -> Self {
        self.unknown = policy;
        self
    }

    /// Loads the set (with [`Self::unknown`] as its policy); `None` when the source is
    /// [`SchemaOrigin::Off`]. `js` is used only for [`SchemaOrigin::Registry`].
    ///
    /// # Errors
    /// [`SourceError`] naming the directory or bucket, and the cause.
    pub async fn load(&self, js: &jetstream::Context) -> Result<Option<SchemaSet>, SourceError> {
        let set = match self.from {
            SchemaOrigin::Off => return Ok(None),
            SchemaOrigin::Dir => {
                SchemaSet::from_dir(&self.dir).map_err(|source| SourceError::Dir {
                    dir: self.dir.clone(),
                    source,
                })?
            }
            SchemaOrigin::Registry => {
                let registry_err = |source| SourceError::Registry {
                    bucket: self.bucket.clone(),
                    source,
                };
                SchemaRegistry::open_existing(js, &self.bucket)
                    .await
                    .map_err(registry_err)?
                    .load()
                    .await
                    .map_err(registry_err)?
            }
        };
        Ok(Some(set.with_unknown(self.unknown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        schemas: SchemaSource,
    }

    #[test]
    fn toml_keys_are_read_and_unknown_keys_refused() {
        let w: Wrapper = toml::from_str("[schemas]\n").unwrap();
        assert_eq!(w.schemas, SchemaSource::dir("schemas"));
        assert_eq!(w.schemas.unknown, UnknownSchema::Refuse);
        let w: Wrapper = toml::from_str(
            "[schemas]\nfrom = \"registry\"\nbucket = \"S\"\nunknown = \"accept_unvalidated\"\n",
        )
        .unwrap();
        assert_eq!(
            w.schemas,
            SchemaSource::registry("S").with_unknown(UnknownSchema::AcceptUnvalidated)
        );
        let err = toml::from_str::<Wrapper>("[schemas]\nfrm = \"dir\"\n").unwrap_err();
        assert!(err.to_string().contains("frm"), "{err}");
        let err = toml::from_str::<Wrapper>("[schemas]\nfrom = \"files\"\n").unwrap_err();
        assert!(err.to_string().contains("files"), "{err}");
    }
}
