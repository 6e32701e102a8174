//! Unit-test fixtures shared by the schema and publisher tests: the repository's schemas
//! and an `auth.user.created` event.

use std::path::Path;

use serde_json::{Value, json};

use super::SchemaSet;
use crate::event::Event;

/// A user id.
pub(crate) const ADA: &str = "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10";

/// The schemas of the repository's `schemas/`.
pub(crate) fn repo_schemas() -> SchemaSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    SchemaSet::from_dir(&dir).expect("the repository's schemas load")
}

/// An event of `ty` at `version` with `data`.
pub(crate) fn event(ty: &str, version: &str, data: Value) -> Event {
    Event::builder(ty)
        .source("auth-service")
        .organization("org-acme")
        .schema_version(version)
        .data_json(data)
        .build()
        .expect("a valid envelope")
}

/// `auth.user.created` 1.0 with `data`.
pub(crate) fn created(data: Value) -> Event {
    event("auth.user.created", "1.0", data)
}

/// Valid `auth.user.created` 1.0 data.
pub(crate) fn ada() -> Value {
    json!({"user_id": ADA, "email": "ada@acme.example", "display_name": "Ada",
           "roles": ["member"], "revision": 1})
}
