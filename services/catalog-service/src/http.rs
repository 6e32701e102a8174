//! `GET /catalogs/{org}`: the projection of one organization, served on the admin port
//! next to `/metrics`, `/healthz` and `/readyz`.
//!
//! 200 `{"organization_id", "users": [{user_id, email, display_name, roles, revision,
//! workspace: {id, name}}]}` read from the service's database (an organization never seen
//! has no users); 400 with a JSON error for an invalid organization id; 503
//! `storage_unavailable` if the database fails.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use events::OrganizationId;
use serde_json::json;

use crate::projection::Projection;

/// The catalog routes over `projection` (no fallback, so they merge into the admin router).
pub fn routes(projection: Projection) -> Router {
    Router::new()
        .route("/catalogs/{org}", get(get_catalog))
        .with_state(projection)
}

async fn get_catalog(State(projection): State<Projection>, Path(org): Path<String>) -> Response {
    match OrganizationId::new(&org) {
        Ok(org) => match projection.catalog(org.as_str()).await {
            Ok(catalog) => Json(catalog).into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "catalog query failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": {
                        "code": "storage_unavailable",
                        "message": format!("the catalog database failed: {e}"),
                    }})),
                )
                    .into_response()
            }
        },
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": {
                "code": "invalid_field",
                "field": "organization_id",
                "message": format!("invalid organization_id: {e}"),
            }})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use events::Event;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
        let res = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn shows_the_users_of_one_organization() {
        let (_dir, projection) = crate::projection::tests::projection().await;
        let ev = Event::builder("auth.user.created")
            .source("auth-service")
            .organization("org-acme")
            .data_json(json!({"user_id": "u-1", "email": "a@acme.example",
                              "display_name": "A", "roles": [], "revision": 1}))
            .build()
            .unwrap();
        projection.apply(&ev).await.unwrap();
        let app = routes(projection);

        let (status, body) = get(&app, "/catalogs/org-acme").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["organization_id"], "org-acme");
        assert_eq!(body["users"][0]["user_id"], "u-1");
        assert_eq!(body["users"][0]["workspace"]["id"], "ws-u-1");

        let (status, body) = get(&app, "/catalogs/org-empty").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["users"], json!([]));

        let (status, body) = get(&app, "/catalogs/org.bad").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "organization_id");
    }
}
