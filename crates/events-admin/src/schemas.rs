//! The event contracts, discoverable over HTTP (open routes):
//!
//! - `GET /api/v1/events/schemas`: a discovery document in the style of the CloudEvents
//!   Discovery API, one entry per event type: its versions, each with its `dataschema`
//!   (the schema's `$id`), `datacontenttype`, the JSON Schema dialect and the URL of the
//!   document; the producers and consumers; the newest version.
//! - `GET /api/v1/events/schemas/{type}/{version}`: the JSON Schema document itself
//!   (`application/schema+json`).
//!
//! URLs in the document are paths on this server (it does not know the name clients reach
//! it by). The set is given at start ([`AdminState::with_schemas`]); without one both
//! routes answer 404 `no_schemas`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use events::schema::{DRAFT_2020_12, Schema, SchemaSet};
use serde::Serialize;

use crate::{AdminState, ApiError};

/// Where the routes are mounted.
pub const SCHEMAS_PATH: &str = "/api/v1/events/schemas";

/// Who publishes and who consumes one event type (service names), as the discovery
/// document shows them; `schemas/catalog.toml` is where `eventctl serve` reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeParties {
    /// The services that publish the type.
    pub producers: Vec<String>,
    /// The services (consumer groups) that consume it.
    pub consumers: Vec<String>,
}

/// What the discovery routes serve: the schemas and, per type, its parties.
#[derive(Debug, Clone, Default)]
pub struct SchemaDirectory {
    set: Arc<SchemaSet>,
    parties: BTreeMap<String, TypeParties>,
}

impl SchemaDirectory {
    /// The schemas of `set`, no parties known yet.
    pub fn new(set: impl Into<Arc<SchemaSet>>) -> Self {
        Self {
            set: set.into(),
            parties: BTreeMap::new(),
        }
    }

    /// Sets the producers and consumers of `event_type`.
    pub fn with_parties(mut self, event_type: impl Into<String>, parties: TypeParties) -> Self {
        self.parties.insert(event_type.into(), parties);
        self
    }

    /// The discovery document (what `GET /api/v1/events/schemas` answers).
    pub fn document(&self) -> Discovery {
        let mut types: BTreeMap<&str, Vec<&Schema>> = BTreeMap::new();
        for schema in self.set.iter() {
            types
                .entry(schema.key().event_type.as_str())
                .or_default()
                .push(schema);
        }
        let types = types
            .into_iter()
            .map(|(ty, versions)| self.entry(ty, &versions))
            .collect();
        Discovery {
            specversion: "1.0",
            url: SCHEMAS_PATH,
            types,
        }
    }

    /// One type; `versions` is not empty and oldest first ([`SchemaSet::iter`]).
    fn entry(&self, event_type: &str, versions: &[&Schema]) -> DiscoveredType {
        let latest = versions.last().map(|s| s.key().version.to_string());
        let description = versions
            .last()
            .and_then(|s| s.document().get("description"))
            .and_then(|d| d.as_str())
            .map(str::to_owned);
        let parties = self.parties.get(event_type).cloned().unwrap_or_default();
        DiscoveredType {
            event_type: event_type.to_owned(),
            description,
            producers: parties.producers,
            consumers: parties.consumers,
            latest: latest.unwrap_or_default(),
            versions: versions.iter().map(|s| version(s)).collect(),
        }
    }
}

fn version(schema: &Schema) -> DiscoveredVersion {
    let key = schema.key();
    DiscoveredVersion {
        schemaversion: key.version.to_string(),
        dataschema: schema.uri().to_owned(),
        dataschematype: DRAFT_2020_12,
        datacontenttype: "application/json",
        schemaurl: format!("{SCHEMAS_PATH}/{}/{}", key.event_type, key.version),
    }
}

/// The discovery document: every event type and version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discovery {
    /// The version of this document's format.
    pub specversion: &'static str,
    /// Where it is served.
    pub url: &'static str,
    /// One entry per event type, by type.
    pub types: Vec<DiscoveredType>,
}

/// One event type of the [`Discovery`] document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveredType {
    /// The CloudEvents `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The newest schema's `description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The services that publish it.
    pub producers: Vec<String>,
    /// The services that consume it.
    pub consumers: Vec<String>,
    /// The newest `schemaversion`.
    pub latest: String,
    /// Every version, oldest first.
    pub versions: Vec<DiscoveredVersion>,
}

/// One version of a [`DiscoveredType`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveredVersion {
    /// The `schemaversion` events of this version carry.
    pub schemaversion: String,
    /// The `dataschema` they carry: the schema's `$id`.
    pub dataschema: String,
    /// The schema dialect (JSON Schema 2020-12).
    pub dataschematype: &'static str,
    /// The `datacontenttype` of `data`.
    pub datacontenttype: &'static str,
    /// The path of the schema document on this server.
    pub schemaurl: String,
}

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(discovery))
        .route("/{event_type}/{version}", get(document))
}

fn directory(state: &AdminState) -> Result<&SchemaDirectory, ApiError> {
    state.schemas().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_schemas",
            "this server was started without event schemas",
        )
    })
}

async fn discovery(State(state): State<AdminState>) -> Result<Json<Discovery>, ApiError> {
    Ok(Json(directory(&state)?.document()))
}

async fn document(
    State(state): State<AdminState>,
    Path((event_type, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let schema = directory(&state)?
        .set
        .get(&event_type, &version)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no schema for {event_type:?} {version:?}"),
            )
        })?;
    let body = Json(schema.document().clone());
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], body).into_response())
}
