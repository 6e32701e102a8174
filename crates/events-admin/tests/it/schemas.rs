//! Issue #16: the discovery document of every event type and version, and each schema
//! document by URL, served over HTTP on a real socket next to a real nats-server.

use std::path::Path;

use events::schema::SchemaSet;
use events_admin::{AdminState, SchemaDirectory, TypeParties, router, serve_on};
use serde_json::Value;

use super::*;

fn repo_schemas() -> SchemaSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    SchemaSet::from_dir(&dir).expect("the repository's schemas load")
}

fn parties(producer: &str, consumers: &[&str]) -> TypeParties {
    TypeParties {
        producers: vec![producer.to_owned()],
        consumers: consumers.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// One GET over a fresh TCP connection: status code and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut conn = timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    timeout(WAIT, conn.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let status = head[9..12].parse().expect("a status code");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn admin_serves_the_discovery_document_and_each_schema() {
    let f = fixture().await;
    let set = repo_schemas();
    let directory = SchemaDirectory::new(set.clone()).with_parties(
        "auth.user.created",
        parties("auth-service", &["catalog-service"]),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let state = AdminState::new(f.client.clone()).with_schemas(directory);
    let server = tokio::spawn(serve_on(listener, state, shutdown.child_token()));

    let (status, head, body) = get(addr, "/api/v1/events/schemas").await;
    assert_eq!(status, 200, "{head}{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    let types = doc["types"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["type"].as_str().unwrap()).collect();
    let expected: Vec<&str> = set.latest().map(|s| s.key().event_type.as_str()).collect();
    assert_eq!(names, expected, "one entry per type, by type");
    let versions: usize = types
        .iter()
        .map(|t| t["versions"].as_array().unwrap().len())
        .sum();
    assert_eq!(versions, set.len(), "every version listed");

    let created = types
        .iter()
        .find(|t| t["type"] == "auth.user.created")
        .unwrap();
    assert_eq!(created["producers"], json!(["auth-service"]));
    assert_eq!(created["consumers"], json!(["catalog-service"]));
    assert_eq!(created["latest"], "1.0");
    let v = &created["versions"][0];
    assert_eq!(v["schemaversion"], "1.0");
    assert_eq!(v["dataschema"], "urn:events:schema:auth.user.created:1.0");
    assert_eq!(v["datacontenttype"], "application/json");
    // A type without known parties lists none.
    let deleted = types
        .iter()
        .find(|t| t["type"] == "auth.user.deleted")
        .unwrap();
    assert_eq!(deleted["producers"], json!([]));

    // Each schema is reachable by its URL, and is the document with that $id.
    for t in types {
        for v in t["versions"].as_array().unwrap() {
            let url = v["schemaurl"].as_str().unwrap();
            let (status, head, body) = get(addr, url).await;
            assert_eq!(status, 200, "{url}: {body}");
            assert!(
                head.contains("content-type: application/schema+json"),
                "{head}"
            );
            let schema: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(schema["$id"], v["dataschema"], "{url}");
            let ty = t["type"].as_str().unwrap();
            let version = v["schemaversion"].as_str().unwrap();
            assert_eq!(Some(&schema), set.get(ty, version).map(|s| s.document()));
        }
    }
    let (status, _, body) = get(addr, "/api/v1/events/schemas/auth.user.created/9.0").await;
    assert_eq!(status, 404, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error_code(&err), "not_found");

    shutdown.cancel();
    timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn admin_without_schemas_answers_no_schemas() {
    let f = fixture().await;
    let app = router(admin_state(&f));
    for uri in [
        "/api/v1/events/schemas",
        "/api/v1/events/schemas/auth.user.created/1.0",
    ] {
        let (status, v) = call(&app, request(Method::GET, uri, None, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_code(&v), "no_schemas", "{uri}");
    }
}
