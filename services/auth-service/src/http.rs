//! The users API (axum):
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /users {email, name, organization_id, roles?}` | 201 `{user, event}` |
//! | `GET /users?organization_id=ORG&limit=N&after=ID` | 200 `{users, next_after}` (sign-up order; `limit` 1 to 1000, default 100) |
//! | `GET /users/{id}` | 200 `{user}` |
//! | `PATCH /users/{id} {email?, name?, roles?}` | 200 `{user, event}` (`event` null if nothing changed) |
//! | `DELETE /users/{id}?deleted_by=<uuid>` | 200 `{user_id, event}` |
//!
//! `event` is `{id, type}`: the event committed with the change, which the outbox relay
//! publishes (with `Nats-Msg-Id` = `id`) whether NATS is up or not. Errors are JSON
//! `{"error": {"code", "message", "field"?}}`: 400 `invalid_field` (naming the field) or
//! `invalid_body` (not a JSON object of the documented fields), 404 `not_found`,
//! 405 `method_not_allowed`, 409 `email_taken` (also the answer to a retry of a committed
//! sign-up), 413 `event_too_large`, 422 `too_large` (e.g. more than
//! [`MAX_ROLES`](crate::user::MAX_ROLES) roles), 503 `storage_unavailable` (the database
//! failed; nothing was changed, try again), 500 otherwise.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::error_chain;
use events::outbox::OutboxError;
use events::publisher::PublishError;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::UserError;
use crate::users::{NewUser, UserPatch, UserService};

/// The users API over `users`.
pub fn router(users: Arc<UserService>) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .method_not_allowed_fallback(events_admin::method_not_allowed)
        .with_state(users)
}

async fn create_user(
    State(users): State<Arc<UserService>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let new: NewUser = match object_body(body) {
        Ok(b) => b,
        Err(res) => return *res,
    };
    match users.create(new).await {
        Ok((user, event)) => (
            StatusCode::CREATED,
            Json(json!({ "user": user, "event": event })),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn get_user(State(users): State<Arc<UserService>>, Path(id): Path<String>) -> Response {
    match users.get(&id).await {
        Ok(Some(user)) => Json(json!({ "user": user })).into_response(),
        Ok(None) => error_response(&UserError::NotFound(id)),
        Err(e) => error_response(&e),
    }
}

/// Query of `GET /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    organization_id: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Default page size of `GET /users`.
const DEFAULT_PAGE: usize = 100;

async fn list_users(
    State(users): State<Arc<UserService>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &rejection.body_text(),
                None,
            );
        }
    };
    let Some(org) = q.organization_id else {
        return error_response(&UserError::invalid("organization_id", "is required"));
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    match users.list(&org, q.after.as_deref(), limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn update_user(
    State(users): State<Arc<UserService>>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let patch: UserPatch = match object_body(body) {
        Ok(b) => b,
        Err(res) => return *res,
    };
    match users.update(&id, patch).await {
        Ok((user, event)) => Json(json!({ "user": user, "event": event })).into_response(),
        Err(e) => error_response(&e),
    }
}

/// Query of `DELETE /users/{id}`.
#[derive(Debug, Deserialize)]
struct DeleteQuery {
    deleted_by: Option<String>,
}

async fn delete_user(
    State(users): State<Arc<UserService>>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Response {
    match users.delete(&id, q.deleted_by.as_deref()).await {
        Ok(event) => Json(json!({ "user_id": id, "event": event })).into_response(),
        Err(e) => error_response(&e),
    }
}

/// The body as `T`, which must come from a JSON **object**: serde would also read a
/// struct from an array (`[]` gave "organization_id is required").
fn object_body<T: DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
) -> Result<T, Box<Response>> {
    let bad = |status, message: &str| Box::new(error_body(status, "invalid_body", message, None));
    let value = match body {
        Ok(Json(v)) => v,
        Err(rejection) => return Err(bad(rejection.status(), &rejection.body_text())),
    };
    if !value.is_object() {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| bad(StatusCode::BAD_REQUEST, &e.to_string()))
}

fn error_response(err: &UserError) -> Response {
    let message = error_chain(err);
    match err {
        UserError::Invalid { field, .. } => error_body(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            &message,
            Some(field),
        ),
        UserError::NotFound(_) => error_body(StatusCode::NOT_FOUND, "not_found", &message, None),
        UserError::EmailTaken { .. } => {
            error_body(StatusCode::CONFLICT, "email_taken", &message, Some("email"))
        }
        UserError::TooLarge { field, .. } => error_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_large",
            &message,
            Some(field),
        ),
        UserError::Outbox {
            source:
                OutboxError::Invalid {
                    source: PublishError::PayloadTooLarge { .. },
                    ..
                },
            ..
        } => error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            &message,
            None,
        ),
        UserError::Storage(_) => {
            tracing::warn!(error = %message, "database failed; request refused");
            let mut res = error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                &message,
                None,
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            res
        }
        _ => {
            tracing::error!(error = %message, "request failed");
            error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &message,
                None,
            )
        }
    }
}

fn error_body(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    (status, Json(json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use events::outbox::Outbox;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, json)
    }

    /// The API over a fresh SQLite file (kept by the returned directory).
    async fn app() -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        let db = crate::store::open(&url).await.unwrap();
        (dir, router(Arc::new(UserService::new(db, Outbox::new()))))
    }

    #[tokio::test]
    async fn post_list_patch_delete_round_trip() {
        let (_dir, app) = app().await;
        let (status, body) = call(
            &app,
            "POST",
            "/users",
            Some(
                json!({"email": "ada@acme.example", "name": "Ada", "organization_id": "org-acme"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["user"]["id"].as_str().unwrap().to_owned();
        assert_eq!(body["event"]["type"], "auth.user.created");
        assert!(body["event"]["id"].is_string(), "{body}");

        let (status, body) = call(&app, "GET", "/users?organization_id=org-acme", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["users"][0]["id"], id.as_str());
        assert_eq!(body["next_after"], Value::Null);

        let (status, body) = call(
            &app,
            "PATCH",
            &format!("/users/{id}"),
            Some(json!({"name": "Ada K"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user"]["revision"], 2);
        assert_eq!(body["event"]["type"], "auth.user.updated");

        let (status, body) = call(&app, "DELETE", &format!("/users/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["event"]["type"], "auth.user.deleted");
        let (status, _) = call(&app, "GET", &format!("/users/{id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_input_is_400_naming_the_field() {
        let (_dir, app) = app().await;
        let (status, body) = call(
            &app,
            "POST",
            "/users",
            Some(json!({"name": "Ada", "organization_id": "org-acme"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_field");
        assert_eq!(body["error"]["field"], "email");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("email"),
            "{body}"
        );

        let (status, body) = call(&app, "POST", "/users", Some(json!({"email": 5}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_body");

        let (status, body) = call(
            &app,
            "PATCH",
            "/users/nope",
            Some(json!({"organization_id": "x"})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "unknown fields are refused: {body}"
        );

        for (uri, code) in [
            ("/users", "invalid_field"),
            ("/users?organization_id=a.b", "invalid_field"),
            ("/users?organization_id=org-acme&limit=0", "invalid_field"),
            ("/users?organization_id=org-acme&limit=x", "invalid_query"),
            ("/users?organization_id=org-acme&color=red", "invalid_query"),
        ] {
            let (status, body) = call(&app, "GET", uri, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_eq!(body["error"]["code"], code, "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn a_repeated_sign_up_is_409() {
        let (_dir, app) = app().await;
        let new =
            json!({"email": "ada@acme.example", "name": "Ada", "organization_id": "org-acme"});
        let (status, body) = call(&app, "POST", "/users", Some(new.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = call(&app, "POST", "/users", Some(new)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "email_taken");
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_invalid_body() {
        let (_dir, app) = app().await;
        for body in [json!([]), json!("x"), json!(null)] {
            let (status, res) = call(&app, "POST", "/users", Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {res}");
            assert_eq!(res["error"]["code"], "invalid_body", "{body}: {res}");
            let (status, res) = call(&app, "PATCH", "/users/x", Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {res}");
            assert_eq!(res["error"]["code"], "invalid_body", "{body}: {res}");
        }
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_with_a_json_error() {
        let (_dir, app) = app().await;
        for (method, uri) in [("PUT", "/users/x"), ("DELETE", "/users"), ("PUT", "/users")] {
            let (status, body) = call(&app, method, uri, None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
        }
    }

    #[tokio::test]
    async fn too_many_roles_is_422_not_500() {
        let (_dir, app) = app().await;
        let roles: Vec<String> = (0..120_000).map(|i| format!("r{i}")).collect();
        let new = json!({"email": "ada@acme.example", "name": "Ada",
                         "organization_id": "org-acme", "roles": roles});
        let (status, body) = call(&app, "POST", "/users", Some(new)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "too_large");
        assert_eq!(body["error"]["field"], "roles");
    }
}
