//! The schema registry on the backbone: a JetStream key-value bucket
//! ([`DEFAULT_BUCKET`], `EVENT_SCHEMAS`) with one entry per type and version, key
//! `<type>.<major>.<minor>` ([`SchemaKey::registry_key`]), value the JSON Schema document.
//! `eventctl schema push` fills it from the repository; a running service loads a
//! [`SchemaSet`] from it ([`SchemaRegistry::load`]) instead of from files, so that new
//! schemas reach it without a redeploy.
//!
//! A released version never changes: [`SchemaRegistry::push`] refuses a document that
//! differs from the one stored under its key (a new minor is the way to change it) unless
//! told to overwrite.
//!
//! ```no_run
//! # async fn run(js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! use events::schema::registry::{DEFAULT_BUCKET, SchemaRegistry};
//!
//! let registry = SchemaRegistry::open(&js, DEFAULT_BUCKET).await?;
//! let schemas = registry.load().await?;
//! println!("{} schemas", schemas.len());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::{LoadError, SchemaKey, SchemaSet};
use crate::error::BoxError;

/// The bucket the schemas live in unless told otherwise.
pub const DEFAULT_BUCKET: &str = "EVENT_SCHEMAS";
/// Bound on every registry operation.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Revisions kept per key: an overwrite (forced) can be looked up afterwards.
const HISTORY: i64 = 10;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The bucket can neither be opened nor created.
    #[error("cannot open schema registry bucket {bucket}")]
    Open {
        /// The bucket.
        bucket: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A read or write failed.
    #[error("schema registry {operation} failed")]
    Store {
        /// `get`, `put`, `list`, ...
        operation: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// No answer within the bound.
    #[error("schema registry {operation} timed out after {timeout:?}")]
    Timeout {
        /// The operation.
        operation: String,
        /// The bound.
        timeout: Duration,
    },
    /// The stored document differs from the pushed one.
    #[error(
        "{key} in the registry differs from the pushed document; a released version does not change: add a new minor, or overwrite on purpose"
    )]
    Changed {
        /// The type and version.
        key: SchemaKey,
    },
    /// A stored entry is not a valid schema.
    #[error("registry entry is not a valid schema")]
    Load(#[source] LoadError),
    /// A key in the bucket is not `<type>.<major>.<minor>`.
    #[error("registry key {0:?} is not <type>.<major>.<minor>")]
    Key(String),
}

/// What [`SchemaRegistry::push`] did with one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// The key was new.
    Created,
    /// The same document was already stored.
    Unchanged,
    /// A different document was overwritten (only when overwriting was asked for).
    Overwritten,
}

/// One entry of [`SchemaRegistry::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    /// Type and version.
    pub key: SchemaKey,
    /// The entry's revision in the bucket.
    pub revision: u64,
    /// When it was stored.
    pub stored_at: OffsetDateTime,
    /// Size of the document in bytes.
    pub size: usize,
}

/// A handle on the registry bucket.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    kv: kv::Store,
}

async fn bounded<T, E: Into<BoxError>>(
    operation: impl Into<String>,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, RegistryError> {
    let operation = operation.into();
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RegistryError::Store {
            operation,
            source: e.into(),
        }),
        Err(_) => Err(RegistryError::Timeout {
            operation,
            timeout: OP_TIMEOUT,
        }),
    }
}

impl SchemaRegistry {
    /// Opens `bucket`, creating it (file storage, 10 revisions per key) if it is missing.
    ///
    /// # Errors
    /// [`RegistryError::Open`] or [`RegistryError::Timeout`].
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, RegistryError> {
        let open_err = |source: BoxError| RegistryError::Open {
            bucket: bucket.to_owned(),
            source,
        };
        if let Ok(Ok(kv)) = tokio::time::timeout(OP_TIMEOUT, js.get_key_value(bucket)).await {
            return Ok(Self { kv });
        }
        let config = kv::Config {
            bucket: bucket.to_owned(),
            description: "JSON Schemas of event data, key <type>.<major>.<minor>".to_owned(),
            history: HISTORY,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let created = bounded("create bucket", js.create_key_value(config)).await;
        let kv = match created {
            Ok(kv) => kv,
            // Another client created it first.
            Err(e) => bounded("open bucket", js.get_key_value(bucket))
                .await
                .map_err(|_| open_err(e.into()))?,
        };
        Ok(Self { kv })
    }

    /// Opens `bucket` only if it exists (for reading: never creates it).
    ///
    /// # Errors
    /// [`RegistryError::Open`] if it does not exist or cannot be read.
    pub async fn open_existing(
        js: &jetstream::Context,
        bucket: &str,
    ) -> Result<Self, RegistryError> {
        let kv = bounded("open bucket", js.get_key_value(bucket))
            .await
            .map_err(|e| RegistryError::Open {
                bucket: bucket.to_owned(),
                source: e.into(),
            })?;
        Ok(Self { kv })
    }

    /// Stores every schema of `set`. Checks every key first and writes nothing if a stored
    /// document differs, unless `overwrite` is true.
    ///
    /// # Errors
    /// [`RegistryError::Changed`], or a store failure (some schemas may be stored then;
    /// pushing again is safe).
    pub async fn push(
        &self,
        set: &SchemaSet,
        overwrite: bool,
    ) -> Result<Vec<(SchemaKey, PushOutcome)>, RegistryError> {
        let mut plan = Vec::new();
        for schema in set.iter() {
            let key = schema.key().clone();
            let stored = self.get(&key).await?;
            let outcome = match stored {
                None => PushOutcome::Created,
                Some(doc) if &doc == schema.document() => PushOutcome::Unchanged,
                Some(_) if overwrite => PushOutcome::Overwritten,
                Some(_) => return Err(RegistryError::Changed { key }),
            };
            plan.push((key, outcome, schema.document()));
        }
        for (key, outcome, document) in &plan {
            if *outcome == PushOutcome::Unchanged {
                continue;
            }
            // Invariant: a `Value` always serializes.
            let bytes = Bytes::from(serde_json::to_vec(document).unwrap_or_default());
            let name = key.registry_key();
            if *outcome == PushOutcome::Created {
                // `create` fails if someone stored the key meanwhile: no silent overwrite.
                bounded(format!("create {name}"), self.kv.create(&name, bytes)).await?;
            } else {
                bounded(format!("put {name}"), self.kv.put(&name, bytes)).await?;
            }
        }
        Ok(plan.into_iter().map(|(k, o, _)| (k, o)).collect())
    }

    /// The stored document of `key`, if any.
    ///
    /// # Errors
    /// A store failure or timeout; [`RegistryError::Load`] if it is not JSON.
    pub async fn get(&self, key: &SchemaKey) -> Result<Option<Value>, RegistryError> {
        let name = key.registry_key();
        let Some(bytes) = bounded(format!("get {name}"), self.kv.get(name.clone())).await? else {
            return Ok(None);
        };
        let doc = serde_json::from_slice(&bytes).map_err(|source| {
            RegistryError::Load(LoadError::Json {
                origin: name,
                source,
            })
        })?;
        Ok(Some(doc))
    }

    /// Every stored schema's key, revision, time and size, by key.
    ///
    /// # Errors
    /// A store failure or timeout; [`RegistryError::Key`] for a key that is not a schema's.
    pub async fn list(&self) -> Result<Vec<RegistryEntry>, RegistryError> {
        let mut out = Vec::new();
        for name in self.keys().await? {
            let key = SchemaKey::from_registry_key(&name)
                .ok_or_else(|| RegistryError::Key(name.clone()))?;
            let entry = bounded(format!("entry {name}"), self.kv.entry(name.clone())).await?;
            if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
                out.push(RegistryEntry {
                    key,
                    revision: e.revision,
                    stored_at: e.created,
                    size: e.value.len(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Every stored schema, compiled: what a service validates with.
    ///
    /// # Errors
    /// As [`Self::list`]; [`RegistryError::Load`] for an entry that is not a valid schema.
    pub async fn load(&self) -> Result<SchemaSet, RegistryError> {
        let mut set = SchemaSet::new();
        for name in self.keys().await? {
            let key = SchemaKey::from_registry_key(&name)
                .ok_or_else(|| RegistryError::Key(name.clone()))?;
            let bytes = bounded(format!("get {name}"), self.kv.get(name.clone())).await?;
            if let Some(bytes) = bytes {
                set.insert_bytes(key, &bytes, &name)
                    .map_err(RegistryError::Load)?;
            }
        }
        Ok(set)
    }

    async fn keys(&self) -> Result<Vec<String>, RegistryError> {
        let keys = async {
            let stream = self.kv.keys().await.map_err(BoxError::from)?;
            stream
                .try_collect::<Vec<String>>()
                .await
                .map_err(BoxError::from)
        };
        let mut keys = bounded("list keys", keys).await?;
        keys.sort();
        Ok(keys)
    }
}
