//! [`SchemaSet`]: compiled schemas by type and version, and validation of an event's `data`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{DRAFT_2020_12, SchemaKey, Version, pointer_token};
use crate::event::Event;

/// What [`SchemaSet::validate`] does with an event whose type and version have no schema
/// in the set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnknownSchema {
    /// Refuse it ([`SchemaError::Unknown`]), so that a producer cannot publish a type
    /// nobody wrote a contract for, and a typo in `schemaversion` is caught. The example
    /// services choose it.
    Refuse,
    /// Let it through unvalidated: the library's default, so that adding a set to a
    /// publisher or subscriber changes nothing for the types it has no schema for (a
    /// consumer reading types nobody wrote a schema for yet, schemas still being written).
    #[default]
    AcceptUnvalidated,
}

/// Why an event's `data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// `data` breaks the schema of its type and version.
    #[error(
        "data of {event_type} {version} is invalid at {}: {rule}: {message}",
        shown(pointer)
    )]
    Invalid {
        /// The event type.
        event_type: String,
        /// The event's `schemaversion`.
        version: String,
        /// JSON pointer into `data` of the failing value (`/email` for a missing
        /// required `email`; empty for `data` itself).
        pointer: String,
        /// The JSON Schema keyword that failed (`required`, `type`, `pattern`, ...).
        rule: String,
        /// What failed, without the value itself (no personal data in logs or
        /// dead-letter headers).
        message: String,
    },
    /// The set has no schema for this type and version, and the policy is
    /// [`UnknownSchema::Refuse`].
    #[error("no schema for {event_type} {version}")]
    Unknown {
        /// The event type.
        event_type: String,
        /// The event's `schemaversion`.
        version: String,
    },
    /// The event's `dataschema` is not the URI of the schema of its type and version (a
    /// publisher with a set refuses it rather than send a URI naming another contract).
    #[error("dataschema {found:?} of {event_type} {version} is not {expected}")]
    DataSchema {
        /// The event type.
        event_type: String,
        /// The event's `schemaversion`.
        version: String,
        /// The event's `dataschema`.
        found: String,
        /// The schema's `$id`.
        expected: String,
    },
}

fn shown(pointer: &str) -> &str {
    if pointer.is_empty() { "data" } else { pointer }
}

impl SchemaError {
    /// The JSON pointer of an [`Invalid`](Self::Invalid) error.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::Invalid { pointer, .. } => Some(pointer),
            Self::Unknown { .. } | Self::DataSchema { .. } => None,
        }
    }

    /// The failing keyword of an [`Invalid`](Self::Invalid) error.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Invalid { rule, .. } => Some(rule),
            Self::Unknown { .. } | Self::DataSchema { .. } => None,
        }
    }
}

/// Why a schema could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file under the schema directory is not named `<type>/<major>.<minor>.json`.
    #[error("{origin} is not named <type>/<major>.<minor>.json")]
    Name {
        /// The file, relative to the directory.
        origin: String,
    },
    /// The document is not JSON.
    #[error("{origin} is not JSON")]
    Json {
        /// Where it came from (file or registry key).
        origin: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `$id` is missing, or is not the URI of the schema's type and version.
    #[error("{origin}: $id is {found:?}, expected {expected}")]
    Id {
        /// Where it came from.
        origin: String,
        /// The `$id` found.
        found: Option<String>,
        /// What it must be.
        expected: String,
    },
    /// `$schema` is not draft 2020-12.
    #[error("{origin}: $schema is {found:?}, expected {DRAFT_2020_12:?}")]
    Draft {
        /// Where it came from.
        origin: String,
        /// The `$schema` found.
        found: Option<String>,
    },
    /// The document is not a valid JSON Schema.
    #[error("{origin} is not a valid JSON Schema: {message}")]
    Compile {
        /// Where it came from.
        origin: String,
        /// What the compiler said.
        message: String,
    },
    /// Two documents for one type and version.
    #[error("{key} is defined twice")]
    Duplicate {
        /// The type and version.
        key: SchemaKey,
    },
}

/// One compiled schema.
pub struct Schema {
    key: SchemaKey,
    uri: String,
    document: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("uri", &self.uri).finish()
    }
}

impl Schema {
    /// Compiles `document` as the schema of `key`.
    ///
    /// # Errors
    /// [`LoadError::Id`], [`LoadError::Draft`] or [`LoadError::Compile`].
    pub fn compile(key: SchemaKey, document: Value, origin: &str) -> Result<Self, LoadError> {
        let uri = key.uri();
        let text = |k: &str| document.get(k).and_then(Value::as_str).map(str::to_owned);
        if text("$id").as_deref() != Some(uri.as_str()) {
            return Err(LoadError::Id {
                origin: origin.to_owned(),
                found: text("$id"),
                expected: uri,
            });
        }
        if text("$schema").as_deref() != Some(DRAFT_2020_12) {
            return Err(LoadError::Draft {
                origin: origin.to_owned(),
                found: text("$schema"),
            });
        }
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&document)
            .map_err(|e| LoadError::Compile {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            key,
            uri,
            document,
            validator,
        })
    }

    /// Its type and version.
    pub fn key(&self) -> &SchemaKey {
        &self.key
    }

    /// Its URI (`$id`, and the `dataschema` of its events).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The JSON Schema document.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The document's `examples` (instances of `data`), empty if it has none.
    pub fn examples(&self) -> &[Value] {
        self.document
            .get("examples")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Validates a `data` value; the first failure is returned.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] naming the pointer and the keyword.
    pub fn validate_value(&self, data: &Value) -> Result<(), SchemaError> {
        let Err(err) = self.validator.validate(data) else {
            return Ok(());
        };
        let mut pointer = err.instance_path().as_str().to_owned();
        if let ValidationErrorKind::Required { property } = err.kind() {
            // The error is reported on the object; name the missing member instead.
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            pointer.push('/');
            pointer.push_str(&pointer_token(&name));
        }
        Err(SchemaError::Invalid {
            event_type: self.key.event_type.as_str().to_owned(),
            version: self.key.version.to_string(),
            pointer,
            rule: err.kind().keyword().to_owned(),
            message: err.masked().to_string(),
        })
    }

    /// Validates an event's `data` map.
    ///
    /// # Errors
    /// As [`Self::validate_value`].
    pub fn validate_data(&self, data: &Map<String, Value>) -> Result<(), SchemaError> {
        // The validator takes a `Value`: one copy of the map (a few hundred bytes).
        self.validate_value(&Value::Object(data.clone()))
    }
}

/// Schemas by event type and version, each compiled once; cheap to clone (shared).
///
/// Two sets are equal when they hold the same documents under the same keys and the same
/// [`UnknownSchema`] policy (compiling is deterministic), so that configurations holding a
/// set can still be compared.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    /// type -> version -> schema; keyed by the type's string so that a lookup for an
    /// event allocates nothing.
    types: BTreeMap<String, BTreeMap<Version, Arc<Schema>>>,
    unknown: UnknownSchema,
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.document == other.document
    }
}

impl PartialEq for SchemaSet {
    fn eq(&self, other: &Self) -> bool {
        self.unknown == other.unknown && self.types == other.types
    }
}

impl SchemaSet {
    /// An empty set that lets every event through ([`UnknownSchema::AcceptUnvalidated`],
    /// the default policy; see [`Self::with_unknown`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what [`Self::validate`] does with a type or version that has no schema.
    pub fn with_unknown(mut self, policy: UnknownSchema) -> Self {
        self.unknown = policy;
        self
    }

    /// The policy for types and versions without a schema.
    pub fn unknown_policy(&self) -> UnknownSchema {
        self.unknown
    }

    /// Loads every `<type>/<major>.<minor>.json` under `dir`. Files directly in `dir`
    /// (`catalog.toml`, a README) are ignored; anything else in a type directory is an
    /// error, so that a misnamed schema is not silently left out.
    ///
    /// # Errors
    /// [`LoadError`] naming the file.
    pub fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let mut set = Self::new();
        for type_dir in sorted_entries(dir)? {
            if !type_dir.is_dir() {
                continue;
            }
            for file in sorted_entries(&type_dir)? {
                let origin = relative(dir, &file);
                let key = SchemaKey::from_file_path(&origin).ok_or_else(|| LoadError::Name {
                    origin: origin.clone(),
                })?;
                let bytes = std::fs::read(&file).map_err(|source| LoadError::Read {
                    path: file.clone(),
                    source,
                })?;
                set.insert_bytes(key, &bytes, &origin)?;
            }
        }
        Ok(set)
    }

    /// Parses and adds the document of `key`; `origin` names it in errors.
    ///
    /// # Errors
    /// [`LoadError::Json`], and as [`Self::insert`].
    pub fn insert_bytes(
        &mut self,
        key: SchemaKey,
        bytes: &[u8],
        origin: &str,
    ) -> Result<(), LoadError> {
        let document = serde_json::from_slice(bytes).map_err(|source| LoadError::Json {
            origin: origin.to_owned(),
            source,
        })?;
        self.insert(Schema::compile(key, document, origin)?)
    }

    /// Adds a document whose `$id` names its type and version.
    ///
    /// # Errors
    /// [`LoadError::Id`] if `$id` is not a schema URI, and as [`Self::insert`].
    pub fn insert_document(&mut self, document: Value) -> Result<SchemaKey, LoadError> {
        let id = document.get("$id").and_then(Value::as_str);
        let key = id
            .and_then(SchemaKey::from_uri)
            .ok_or_else(|| LoadError::Id {
                origin: "document".to_owned(),
                found: id.map(str::to_owned),
                expected: "urn:events:schema:<type>:<major>.<minor>".to_owned(),
            })?;
        self.insert(Schema::compile(key.clone(), document, &key.uri())?)?;
        Ok(key)
    }

    /// Adds a compiled schema.
    ///
    /// # Errors
    /// [`LoadError::Duplicate`] if the set already has its type and version.
    pub fn insert(&mut self, schema: Schema) -> Result<(), LoadError> {
        let key = schema.key.clone();
        let versions = self
            .types
            .entry(key.event_type.as_str().to_owned())
            .or_default();
        if versions.contains_key(&key.version) {
            return Err(LoadError::Duplicate { key });
        }
        versions.insert(key.version, Arc::new(schema));
        Ok(())
    }

    /// The schema of `event_type` at `version` (`"1.0"`).
    pub fn get(&self, event_type: &str, version: &str) -> Option<&Schema> {
        let version: Version = version.parse().ok()?;
        self.types.get(event_type)?.get(&version).map(Arc::as_ref)
    }

    /// The URI to set as `dataschema` on an event of `event_type` at `version`, if the set
    /// has that schema.
    pub fn data_schema(&self, event_type: &str, version: &str) -> Option<&str> {
        self.get(event_type, version).map(Schema::uri)
    }

    /// Checks `event`'s `data` against the schema of its `type` and `schemaversion`.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] naming the JSON pointer and the rule;
    /// [`SchemaError::Unknown`] when the set has no such schema and the policy refuses.
    pub fn validate(&self, event: &Event) -> Result<(), SchemaError> {
        let event_type = event.event_type().as_str();
        let version = event.schema_version();
        match self.get(event_type, version) {
            Some(schema) => schema.validate_data(event.data()),
            None if self.unknown == UnknownSchema::AcceptUnvalidated => Ok(()),
            None => Err(SchemaError::Unknown {
                event_type: event_type.to_owned(),
                version: version.to_owned(),
            }),
        }
    }

    /// As [`Self::validate`], for a consumer (the subscriber uses it): an event of a minor
    /// the set lacks is checked against the newest older minor of its major that the set
    /// has, since a later minor only adds to it (SCHEMA_VERSIONING.md), so that a producer's
    /// new minor does not reach the consumers as unknown before their schemas are updated.
    /// A major or type the set lacks follows the [`UnknownSchema`] policy.
    ///
    /// # Errors
    /// As [`Self::validate`]; an [`SchemaError::Invalid`] from an older minor names that
    /// minor.
    pub fn validate_received(&self, event: &Event) -> Result<(), SchemaError> {
        let event_type = event.event_type().as_str();
        let version = event.schema_version();
        if self.get(event_type, version).is_none()
            && let Ok(v) = version.parse::<Version>()
            && let Some(older) = self.newest_older_minor(event_type, v)
        {
            return older.validate_data(event.data());
        }
        self.validate(event)
    }

    /// The newest schema of `event_type` with the major of `v` and a lower minor.
    fn newest_older_minor(&self, event_type: &str, v: Version) -> Option<&Schema> {
        let versions = self.types.get(event_type)?;
        let (_, schema) = versions.range(Version::new(v.major, 0)..v).next_back()?;
        Some(schema)
    }

    /// Every schema, by type then version (oldest first).
    pub fn iter(&self) -> impl Iterator<Item = &Schema> {
        self.types
            .values()
            .flat_map(|v| v.values().map(Arc::as_ref))
    }

    /// The versions of `event_type`, oldest first.
    pub fn versions(&self, event_type: &str) -> impl Iterator<Item = &Schema> {
        self.types
            .get(event_type)
            .into_iter()
            .flat_map(|v| v.values().map(Arc::as_ref))
    }

    /// The newest version of each type, by type.
    pub fn latest(&self) -> impl Iterator<Item = &Schema> {
        self.types
            .values()
            .filter_map(|v| v.values().next_back().map(Arc::as_ref))
    }

    /// How many schemas.
    pub fn len(&self) -> usize {
        self.types.values().map(BTreeMap::len).sum()
    }

    /// True if the set holds no schema.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// `file` relative to `dir`, `/` separated.
fn relative(dir: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(dir).unwrap_or(file);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::fixtures::{ada, created, event, repo_schemas};

    #[test]
    fn the_repository_schemas_load_and_accept_their_examples() {
        let set = repo_schemas();
        assert_eq!(set.len(), 4);
        for schema in set.iter() {
            assert!(!schema.examples().is_empty(), "{}", schema.key());
            for example in schema.examples() {
                schema.validate_value(example).unwrap();
            }
        }
    }

    #[test]
    fn a_valid_event_passes() {
        repo_schemas().validate(&created(ada())).unwrap();
    }

    #[test]
    fn a_missing_required_field_names_its_pointer_and_the_rule() {
        let mut data = ada();
        data.as_object_mut().unwrap().remove("email");
        let err = repo_schemas().validate(&created(data)).unwrap_err();
        assert_eq!(err.pointer(), Some("/email"), "{err}");
        assert_eq!(err.rule(), Some("required"));
        assert!(err.to_string().contains("at /email: required"), "{err}");
    }

    #[test]
    fn a_wrong_type_or_format_names_the_nested_pointer_without_the_value() {
        let set = repo_schemas();
        let mut data = ada();
        data["roles"] = json!(["member", "Secret Role"]);
        let err = set.validate(&created(data)).unwrap_err();
        assert_eq!(err.pointer(), Some("/roles/1"), "{err}");
        assert_eq!(err.rule(), Some("pattern"));
        assert!(!err.to_string().contains("Secret Role"), "{err}");

        let mut data = ada();
        data["revision"] = json!("1");
        let err = set.validate(&created(data)).unwrap_err();
        assert_eq!(
            (err.pointer(), err.rule()),
            (Some("/revision"), Some("type"))
        );

        let mut data = ada();
        data["user_id"] = json!("not-a-uuid");
        let err = set.validate(&created(data)).unwrap_err();
        assert_eq!(
            (err.pointer(), err.rule()),
            (Some("/user_id"), Some("format"))
        );
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let mut data = ada();
        data["nickname"] = json!("added by a later minor");
        repo_schemas().validate(&created(data)).unwrap();
    }

    #[test]
    fn an_unknown_type_or_version_follows_the_policy() {
        let lenient = repo_schemas();
        assert_eq!(lenient.unknown_policy(), UnknownSchema::AcceptUnvalidated);
        let set = lenient.with_unknown(UnknownSchema::Refuse);
        let v9 = event("auth.user.created", "1.9", ada());
        let other = event("auth.user.suspended", "1.0", ada());
        for e in [&v9, &other] {
            assert!(matches!(set.validate(e), Err(SchemaError::Unknown { .. })));
        }
        assert_eq!(
            set.validate(&v9).unwrap_err().to_string(),
            "no schema for auth.user.created 1.9"
        );
        let lenient = set.with_unknown(UnknownSchema::AcceptUnvalidated);
        lenient.validate(&v9).unwrap();
        lenient.validate(&other).unwrap();
        // Known schemas are still enforced.
        assert!(lenient.validate(&created(json!({}))).is_err());
    }

    #[test]
    fn a_received_newer_minor_is_checked_against_the_newest_older_one() {
        let set = repo_schemas().with_unknown(UnknownSchema::Refuse);
        set.validate_received(&event("auth.user.created", "1.3", ada()))
            .unwrap();
        let mut data = ada();
        data.as_object_mut().unwrap().remove("email");
        let err = set
            .validate_received(&event("auth.user.created", "1.3", data))
            .unwrap_err();
        assert_eq!(err.pointer(), Some("/email"), "{err}");
        assert!(err.to_string().contains("auth.user.created 1.0"), "{err}");
        // Another major, or a type without schemas, is unknown.
        for (ty, v) in [("auth.user.created", "2.0"), ("auth.user.suspended", "1.1")] {
            let err = set.validate_received(&event(ty, v, ada())).unwrap_err();
            assert!(matches!(err, SchemaError::Unknown { .. }), "{err}");
        }
        // The publisher's check stays strict: 1.3 has no schema.
        assert!(
            set.validate(&event("auth.user.created", "1.3", ada()))
                .is_err()
        );
    }

    #[test]
    fn data_schema_is_the_uri_of_type_and_version() {
        let set = repo_schemas();
        assert_eq!(
            set.data_schema("auth.user.deleted", "1.0"),
            Some("urn:events:schema:auth.user.deleted:1.0")
        );
        assert_eq!(set.data_schema("auth.user.deleted", "2.0"), None);
        assert_eq!(set.data_schema("auth.user.deleted", "x"), None);
    }

    #[test]
    fn documents_must_name_their_key_and_draft_and_compile() {
        let key = SchemaKey::parse("auth.user.created", "1.1").unwrap();
        let doc = |id: &str, draft: &str| json!({"$id": id, "$schema": draft, "type": "object"});
        let uri = key.uri();
        let err = Schema::compile(
            key.clone(),
            doc("urn:events:schema:auth.user.created:1.0", DRAFT_2020_12),
            "f",
        );
        assert!(matches!(err, Err(LoadError::Id { .. })), "{err:?}");
        let err = Schema::compile(
            key.clone(),
            doc(&uri, "http://json-schema.org/draft-07/schema#"),
            "f",
        );
        assert!(matches!(err, Err(LoadError::Draft { .. })), "{err:?}");
        let mut bad = doc(&uri, DRAFT_2020_12);
        bad["type"] = json!("objekt");
        let err = Schema::compile(key.clone(), bad, "f");
        assert!(matches!(err, Err(LoadError::Compile { .. })), "{err:?}");
        let mut set = SchemaSet::new();
        set.insert(Schema::compile(key.clone(), doc(&uri, DRAFT_2020_12), "f").unwrap())
            .unwrap();
        let again = set.insert(Schema::compile(key, doc(&uri, DRAFT_2020_12), "f").unwrap());
        assert!(matches!(again, Err(LoadError::Duplicate { .. })));
    }

    #[test]
    fn a_misnamed_file_in_a_type_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.toml"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("auth.user.created")).unwrap();
        std::fs::write(dir.path().join("auth.user.created/1.json"), "{}").unwrap();
        let err = SchemaSet::from_dir(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.user.created/1.json is not named <type>/<major>.<minor>.json"
        );
    }
}
