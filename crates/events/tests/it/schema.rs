//! Integration tests: the schema registry (JetStream KV) on a real nats-server.

use std::path::Path;
use std::time::Duration;

use events::schema::registry::{DEFAULT_BUCKET, PushOutcome, RegistryError, SchemaRegistry};
use events::schema::{SchemaKey, SchemaSet};
use events_testkit::NatsServer;
use serde_json::json;
use tokio::time::timeout;

/// Bound on each step; the machine is shared.
const STEP: Duration = Duration::from_secs(20);

fn repo_schemas() -> SchemaSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    SchemaSet::from_dir(&dir).expect("the repository's schemas load")
}

fn key(ty: &str, version: &str) -> SchemaKey {
    SchemaKey::parse(ty, version).unwrap()
}

#[tokio::test]
async fn pushed_schemas_are_listed_shown_and_loaded_back() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let registry = timeout(STEP, SchemaRegistry::open(&js, DEFAULT_BUCKET))
        .await
        .unwrap()
        .unwrap();
    let set = repo_schemas();

    let pushed = timeout(STEP, registry.push(&set, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.len(), 4);
    assert!(
        pushed.iter().all(|(_, o)| *o == PushOutcome::Created),
        "{pushed:?}"
    );
    // Pushing the same documents again stores nothing.
    let again = timeout(STEP, registry.push(&set, false))
        .await
        .unwrap()
        .unwrap();
    assert!(
        again.iter().all(|(_, o)| *o == PushOutcome::Unchanged),
        "{again:?}"
    );

    let listed = timeout(STEP, registry.list()).await.unwrap().unwrap();
    let keys: Vec<String> = listed.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "auth.organization.created 1.0",
            "auth.user.created 1.0",
            "auth.user.deleted 1.0",
            "auth.user.updated 1.0"
        ]
    );
    assert!(listed.iter().all(|e| e.revision >= 1 && e.size > 100));

    let k = key("auth.user.created", "1.0");
    let shown = timeout(STEP, registry.get(&k)).await.unwrap().unwrap();
    assert_eq!(
        shown.as_ref(),
        set.get("auth.user.created", "1.0").map(|s| s.document())
    );
    assert_eq!(
        timeout(STEP, registry.get(&key("auth.user.created", "9.0")))
            .await
            .unwrap()
            .unwrap(),
        None
    );

    // A second handle (another service) loads the same set and validates with it.
    let reader = SchemaRegistry::open_existing(&js, DEFAULT_BUCKET)
        .await
        .unwrap();
    let loaded = timeout(STEP, reader.load()).await.unwrap().unwrap();
    assert_eq!(loaded.len(), 4);
    let event = events::Event::builder("auth.user.created")
        .source("auth-service")
        .organization("org-acme")
        .data_json(json!({"user_id": "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10"}))
        .build()
        .unwrap();
    let err = loaded.validate(&event).unwrap_err();
    assert_eq!(err.pointer(), Some("/email"), "{err}");
}

#[tokio::test]
async fn a_changed_released_version_is_refused_unless_overwritten() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let registry = SchemaRegistry::open(&js, "SCHEMAS_T2").await.unwrap();
    timeout(STEP, registry.push(&repo_schemas(), false))
        .await
        .unwrap()
        .unwrap();

    // auth.user.deleted 1.0 edited in place (deleted_by no longer nullable).
    let mut edited = SchemaSet::new();
    let mut doc = repo_schemas()
        .get("auth.user.deleted", "1.0")
        .unwrap()
        .document()
        .clone();
    doc["properties"]["deleted_by"]["type"] = json!("string");
    doc["examples"] = json!([]);
    edited.insert_document(doc.clone()).unwrap();

    let err = timeout(STEP, registry.push(&edited, false))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RegistryError::Changed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("auth.user.deleted 1.0 in the registry differs"),
        "{err}"
    );
    let k = key("auth.user.deleted", "1.0");
    let stored = registry.get(&k).await.unwrap().unwrap();
    assert_ne!(stored, doc, "nothing written after a refusal");

    let done = timeout(STEP, registry.push(&edited, true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done, vec![(k.clone(), PushOutcome::Overwritten)]);
    assert_eq!(registry.get(&k).await.unwrap().unwrap(), doc);
}

#[tokio::test]
async fn a_foreign_or_invalid_entry_fails_the_load_naming_it() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let registry = SchemaRegistry::open(&js, "SCHEMAS_T3").await.unwrap();
    let kv = js.get_key_value("SCHEMAS_T3").await.unwrap();
    kv.put(
        "auth.user.created.1.0",
        "{\"$id\": \"urn:events:schema:auth.user.created:2.0\"}".into(),
    )
    .await
    .unwrap();
    let err = timeout(STEP, registry.load()).await.unwrap().unwrap_err();
    assert!(matches!(err, RegistryError::Load(_)), "{err:?}");
    assert!(
        events::error_chain(&err).contains("auth.user.created.1.0"),
        "{}",
        events::error_chain(&err)
    );

    kv.put("not-a-schema", "{}".into()).await.unwrap();
    let err = timeout(STEP, registry.list()).await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "registry key \"not-a-schema\" is not <type>.<major>.<minor>"
    );
    // Reading never creates a bucket.
    assert!(
        SchemaRegistry::open_existing(&js, "NO_SUCH_BUCKET")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_schema_source_loads_from_files_or_the_registry_with_its_policy() {
    use events::schema::{SchemaSource, SourceError, UnknownSchema};
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");

    let off = SchemaSource::off();
    assert!(
        timeout(STEP, off.load(&js))
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );

    let files = SchemaSource::dir(&dir).with_unknown(UnknownSchema::AcceptUnvalidated);
    let loaded = timeout(STEP, files.load(&js)).await.unwrap().unwrap();
    let loaded = loaded.expect("a set from the directory");
    assert_eq!(
        loaded,
        repo_schemas().with_unknown(UnknownSchema::AcceptUnvalidated)
    );

    // The registry does not exist yet: the error names the bucket.
    let registry = SchemaSource::registry(DEFAULT_BUCKET);
    let err = timeout(STEP, registry.load(&js))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SourceError::Registry { .. }), "{err:?}");
    assert!(err.to_string().contains(DEFAULT_BUCKET), "{err}");

    let bucket = timeout(STEP, SchemaRegistry::open(&js, DEFAULT_BUCKET))
        .await
        .unwrap()
        .unwrap();
    timeout(STEP, bucket.push(&repo_schemas(), false))
        .await
        .unwrap()
        .unwrap();
    let from_registry = timeout(STEP, registry.load(&js)).await.unwrap().unwrap();
    let from_registry = from_registry.expect("a set from the registry");
    assert_eq!(
        from_registry,
        repo_schemas().with_unknown(UnknownSchema::Refuse)
    );

    let missing = SchemaSource::dir(dir.join("missing"));
    let err = timeout(STEP, missing.load(&js)).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
