//! The users API's logic: validated input, the `users` table, and an event for every
//! change through the transactional outbox.
//!
//! Each change writes the user row and its event (`events::outbox`) in **one database
//! transaction** and answers as soon as it commits: nothing is published on the request
//! path, and requests never wait on NATS. The outbox's relay forwards the events in commit
//! order (SQLite serializes writers; on PostgreSQL the user's row is locked before its event
//! is enqueued, so the revisions of one user keep their order). A crash after the commit
//! loses nothing: the relay of the restarted service sends what is left. `(organization_id,
//! email)` is unique in the table, so a retry of a committed sign-up is a 409.

use events::db::Database;
use events::outbox::Outbox;
use events::{Event, OrganizationId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::UserError;
use crate::schema;
use crate::store;
use crate::user::User;
use crate::validate::{required, valid_email, valid_name, valid_roles};

/// Roles of a user created without any.
const DEFAULT_ROLE: &str = "member";
/// Most users per page of [`UserService::list`].
pub const MAX_PAGE: usize = 1000;

/// Body of `POST /users`. Fields are optional here only so that a missing one is reported
/// by name ([`UserError::Invalid`]) instead of as a generic parse error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewUser {
    /// Required e-mail address.
    pub email: Option<String>,
    /// Required display name.
    pub name: Option<String>,
    /// Required tenant id.
    pub organization_id: Option<String>,
    /// Roles; `["member"]` when absent.
    pub roles: Option<Vec<String>>,
}

/// Body of `PATCH /users/{id}`: the fields to change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserPatch {
    /// New e-mail address.
    pub email: Option<String>,
    /// New display name.
    pub name: Option<String>,
    /// New roles (replace the old ones).
    pub roles: Option<Vec<String>>,
}

/// The event of a change, committed with it: what `POST`, `PATCH` and `DELETE` return.
/// The outbox relay publishes it with `Nats-Msg-Id` = `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The event id (also its `Nats-Msg-Id`).
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
}

impl Enqueued {
    fn of(event: &Event) -> Self {
        Self {
            id: event.id().to_owned(),
            event_type: event.event_type().as_str().to_owned(),
        }
    }
}

/// One page of an organization's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Users in sign-up order.
    pub users: Vec<User>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// The users, in the service's database, and the outbox their events go through.
#[derive(Debug, Clone)]
pub struct UserService {
    db: Database,
    outbox: Outbox,
}

impl UserService {
    /// Users in `db` (migrated by [`store::open`]), events enqueued in `outbox` (whose
    /// relay the caller runs).
    pub fn new(db: Database, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// The user with this id.
    ///
    /// # Errors
    /// [`UserError::Storage`] if the database fails.
    pub async fn get(&self, id: &str) -> Result<Option<User>, UserError> {
        Ok(store::get(&self.db, id).await?)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) users of `organization_id` signed up after the
    /// user `after` (from the start if `None`).
    ///
    /// # Errors
    /// [`UserError::Invalid`] for a bad organization id or limit, [`UserError::Storage`].
    pub async fn list(
        &self,
        organization_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, UserError> {
        let org = OrganizationId::new(organization_id)
            .map_err(|e| UserError::invalid("organization_id", e.to_string()))?;
        if limit == 0 || limit > MAX_PAGE {
            return Err(UserError::invalid(
                "limit",
                format!("must be 1 to {MAX_PAGE}, got {limit}"),
            ));
        }
        let users = store::list(&self.db, &org, after.unwrap_or(""), limit).await?;
        let next_after = (users.len() == limit)
            .then(|| users.last().map(|u| u.id.clone()))
            .flatten();
        Ok(Page { users, next_after })
    }

    /// Validates `new`, then stores the user and its `auth.user.created` event in one
    /// transaction.
    ///
    /// # Errors
    /// [`UserError::Invalid`] naming the field, [`UserError::TooLarge`],
    /// [`UserError::EmailTaken`] (also for a retry of a committed sign-up),
    /// [`UserError::Outbox`], [`UserError::Storage`]; nothing is stored on any error.
    pub async fn create(&self, new: NewUser) -> Result<(User, Enqueued), UserError> {
        let organization_id = required("organization_id", new.organization_id)?;
        let organization_id = OrganizationId::new(&organization_id)
            .map_err(|e| UserError::invalid("organization_id", e.to_string()))?;
        let email = valid_email(&required("email", new.email)?)?;
        let name = valid_name(&required("name", new.name)?)?;
        let roles = match new.roles {
            Some(roles) => valid_roles(roles)?,
            None => vec![DEFAULT_ROLE.to_owned()],
        };
        let user = User {
            id: Uuid::now_v7().to_string(),
            organization_id,
            email,
            name,
            roles,
            revision: 1,
        };
        let event = schema::user_created(&user).map_err(|source| UserError::Event {
            event_type: schema::USER_CREATED,
            source,
        })?;
        let mut tx = self.db.begin().await?;
        if let Err(e) = store::insert(&mut tx, &user).await {
            return Err(email_taken_or(e, &user));
        }
        let enqueued = self.enqueue_and_commit(tx, &event).await?;
        Ok((user, enqueued))
    }

    /// Applies `patch` and stores the result with its `auth.user.updated` event (the fields
    /// that changed) in one transaction. A patch that changes nothing writes nothing
    /// (`None`).
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`], [`UserError::TooLarge`],
    /// [`UserError::EmailTaken`], [`UserError::Outbox`], [`UserError::Storage`]; nothing
    /// changes on any error.
    pub async fn update(
        &self,
        id: &str,
        patch: UserPatch,
    ) -> Result<(User, Option<Enqueued>), UserError> {
        let email = patch.email.as_deref().map(valid_email).transpose()?;
        let name = patch.name.as_deref().map(valid_name).transpose()?;
        let roles = patch.roles.map(valid_roles).transpose()?;
        let mut tx = self.db.begin().await?;
        let current = store::load_for_update(&mut tx, self.db.backend(), id)
            .await?
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(email) = email.filter(|e| *e != current.email) {
            next.email = email;
            changed.push("email");
        }
        if let Some(name) = name.filter(|n| *n != current.name) {
            next.name = name;
            changed.push("display_name");
        }
        if let Some(roles) = roles.filter(|r| *r != current.roles) {
            next.roles = roles;
            changed.push("roles");
        }
        if changed.is_empty() {
            return Ok((next, None));
        }
        next.revision += 1;
        let event = schema::user_updated(&next, &changed).map_err(|source| UserError::Event {
            event_type: schema::USER_UPDATED,
            source,
        })?;
        if let Err(e) = store::update(&mut tx, &next).await {
            return Err(email_taken_or(e, &next));
        }
        let enqueued = self.enqueue_and_commit(tx, &event).await?;
        Ok((next, Some(enqueued)))
    }

    /// Removes the user and stores its `auth.user.deleted` event in one transaction.
    /// `deleted_by`, if given, must be a UUID.
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`] (`deleted_by`),
    /// [`UserError::Outbox`], [`UserError::Storage`] (the user stays).
    pub async fn delete(&self, id: &str, deleted_by: Option<&str>) -> Result<Enqueued, UserError> {
        if let Some(by) = deleted_by {
            Uuid::parse_str(by).map_err(|e| UserError::invalid("deleted_by", e.to_string()))?;
        }
        let mut tx = self.db.begin().await?;
        let mut gone = store::load_for_update(&mut tx, self.db.backend(), id)
            .await?
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        gone.revision += 1;
        let event = schema::user_deleted(&gone, deleted_by).map_err(|source| UserError::Event {
            event_type: schema::USER_DELETED,
            source,
        })?;
        store::delete(&mut tx, id).await?;
        self.enqueue_and_commit(tx, &event).await
    }

    /// Adds `event` to the outbox inside `tx` and commits both.
    async fn enqueue_and_commit(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        event: &Event,
    ) -> Result<Enqueued, UserError> {
        let event_type = static_type(event);
        self.outbox
            .enqueue(&mut tx, event)
            .await
            .map_err(|source| UserError::Outbox { event_type, source })?;
        self.outbox.commit(tx).await?;
        tracing::info!(event_id = %event.id(), event_type, "committed");
        Ok(Enqueued::of(event))
    }
}

/// A unique violation on insert or update is the `(organization_id, email)` constraint.
fn email_taken_or(e: sqlx::Error, user: &User) -> UserError {
    if store::is_unique_violation(&e) {
        UserError::EmailTaken {
            email: user.email.clone(),
            organization_id: user.organization_id.as_str().to_owned(),
        }
    } else {
        UserError::Storage(e)
    }
}

/// The `&'static` name of one of this service's event types.
fn static_type(event: &Event) -> &'static str {
    [
        schema::USER_CREATED,
        schema::USER_UPDATED,
        schema::USER_DELETED,
    ]
    .into_iter()
    .find(|t| event.event_type().as_str() == *t)
    .unwrap_or("auth.user.*")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::user::{MAX_ROLE_LEN, MAX_ROLES};

    /// A service over a fresh SQLite file (kept by the returned directory).
    async fn service_with(outbox: Outbox) -> (tempfile::TempDir, UserService) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        let db = store::open(&url).await.unwrap();
        (dir, UserService::new(db, outbox))
    }

    async fn service() -> (tempfile::TempDir, UserService) {
        service_with(Outbox::new()).await
    }

    /// The events waiting in the outbox, in commit order.
    async fn outboxed(users: &UserService) -> Vec<Event> {
        let bodies: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM events_outbox ORDER BY seq")
                .fetch_all(users.db.pool())
                .await
                .unwrap();
        bodies
            .iter()
            .map(|b| Event::decode_structured(b).unwrap())
            .collect()
    }

    fn ada() -> NewUser {
        NewUser {
            email: Some(" Ada@Acme.Example ".into()),
            name: Some("Ada Lovelace".into()),
            organization_id: Some("org-acme".into()),
            roles: None,
        }
    }

    #[tokio::test]
    async fn create_commits_the_user_and_user_created_per_the_catalog() {
        let (_dir, users) = service().await;
        let (user, enqueued) = users.create(ada()).await.unwrap();

        let events = outboxed(&users).await;
        assert_eq!(events.len(), 1);
        let ev = &events[0];
        assert_eq!(ev.event_type().as_str(), "auth.user.created");
        assert_eq!(ev.source(), "auth-service");
        assert_eq!(ev.organization_id().as_str(), "org-acme");
        assert_eq!(ev.schema_version(), "1.0");
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.created:1.0")
        );
        assert_eq!(ev.subject(), Some(user.id.as_str()));
        assert_eq!(
            serde_json::Value::Object(ev.data().clone()),
            json!({
                "user_id": user.id,
                "email": "ada@acme.example",
                "display_name": "Ada Lovelace",
                "roles": ["member"],
                "revision": 1,
            })
        );
        assert_eq!(enqueued.id, ev.id());
        assert_eq!(users.get(&user.id).await.unwrap(), Some(user));
    }

    #[tokio::test]
    async fn invalid_input_names_the_field_and_writes_nothing() {
        let (_dir, users) = service().await;
        let cases: Vec<(NewUser, &str)> = vec![
            (
                NewUser {
                    email: None,
                    ..ada()
                },
                "email",
            ),
            (
                NewUser {
                    email: Some("no-at-sign".into()),
                    ..ada()
                },
                "email",
            ),
            (
                NewUser {
                    name: Some("   ".into()),
                    ..ada()
                },
                "name",
            ),
            (
                NewUser {
                    name: Some("x".repeat(201)),
                    ..ada()
                },
                "name",
            ),
            (
                NewUser {
                    organization_id: Some("org.acme".into()),
                    ..ada()
                },
                "organization_id",
            ),
            (
                NewUser {
                    organization_id: None,
                    ..ada()
                },
                "organization_id",
            ),
            (
                NewUser {
                    roles: Some(vec!["Admin".into()]),
                    ..ada()
                },
                "roles",
            ),
        ];
        for (input, field) in cases {
            match users.create(input).await {
                Err(UserError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
        assert!(outboxed(&users).await.is_empty());
    }

    #[tokio::test]
    async fn duplicate_email_in_one_org_is_refused_but_allowed_in_another() {
        let (_dir, users) = service().await;
        users.create(ada()).await.unwrap();
        // Also what a client's retry of a committed sign-up gets.
        let again = users.create(ada()).await;
        assert!(
            matches!(again, Err(UserError::EmailTaken { .. })),
            "{again:?}"
        );
        let other_org = NewUser {
            organization_id: Some("org-other".into()),
            ..ada()
        };
        users.create(other_org).await.unwrap();
        assert_eq!(outboxed(&users).await.len(), 2);
    }

    #[tokio::test]
    async fn update_enqueues_the_whole_user_and_what_changed() {
        let (_dir, users) = service().await;
        let (user, _) = users.create(ada()).await.unwrap();
        let patch = UserPatch {
            name: Some("Ada King".into()),
            roles: Some(vec!["member".into(), "catalog-editor".into()]),
            email: Some("ADA@acme.example".into()), // same address, other case: unchanged
        };
        let (updated, enqueued) = users.update(&user.id, patch).await.unwrap();
        assert_eq!(updated.revision, 2);
        let enqueued = enqueued.expect("a change enqueues an event");

        let ev = outboxed(&users).await.pop().unwrap();
        assert_eq!(ev.event_type().as_str(), "auth.user.updated");
        assert_eq!(enqueued.id, ev.id());
        assert_eq!(ev.subject(), Some(user.id.as_str()));
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.updated:1.0")
        );
        assert_eq!(
            serde_json::Value::Object(ev.data().clone()),
            json!({
                "user_id": user.id,
                "email": "ada@acme.example",
                "display_name": "Ada King",
                "roles": ["member", "catalog-editor"],
                "revision": 2,
                "changed": ["display_name", "roles"],
            })
        );
        assert_eq!(users.get(&user.id).await.unwrap(), Some(updated));

        // Nothing new: nothing written, revision unchanged.
        let same_name = UserPatch {
            name: Some("Ada King".into()),
            ..UserPatch::default()
        };
        let (same, none) = users.update(&user.id, same_name).await.unwrap();
        assert!(none.is_none());
        assert_eq!(same.revision, 2);
        assert_eq!(outboxed(&users).await.len(), 2);

        // Taking another user's address is a conflict, and changes nothing.
        let bo = NewUser {
            email: Some("bo@acme.example".into()),
            ..ada()
        };
        users.create(bo).await.unwrap();
        let steal = UserPatch {
            email: Some("bo@acme.example".into()),
            ..UserPatch::default()
        };
        assert!(matches!(
            users.update(&user.id, steal).await,
            Err(UserError::EmailTaken { .. })
        ));
        assert_eq!(users.get(&user.id).await.unwrap().unwrap().revision, 2);
    }

    #[tokio::test]
    async fn delete_enqueues_user_deleted_and_removes_the_user() {
        let (_dir, users) = service().await;
        let (user, _) = users.create(ada()).await.unwrap();
        let enqueued = users.delete(&user.id, None).await.unwrap();
        let ev = outboxed(&users).await.pop().unwrap();
        assert_eq!(enqueued.id, ev.id());
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.deleted:1.0")
        );
        assert_eq!(
            serde_json::Value::Object(ev.data().clone()),
            json!({ "user_id": user.id, "revision": 2, "deleted_by": null })
        );
        assert_eq!(users.get(&user.id).await.unwrap(), None);
        assert!(matches!(
            users.delete(&user.id, None).await,
            Err(UserError::NotFound(_))
        ));
        // The address is free again.
        users.create(ada()).await.unwrap();
    }

    /// The user and its event commit together: an event the outbox refuses leaves no user.
    #[tokio::test]
    async fn a_refused_event_leaves_no_user() {
        let (_dir, users) = service_with(Outbox::with_max_payload(200)).await;
        let err = users.create(ada()).await.unwrap_err();
        assert!(matches!(err, UserError::Outbox { .. }), "{err:?}");
        let page = users.list("org-acme", None, 10).await.unwrap();
        assert!(page.users.is_empty());
        assert!(outboxed(&users).await.is_empty());
    }

    #[tokio::test]
    async fn list_pages_through_an_organization_in_sign_up_order() {
        let (_dir, users) = service().await;
        let n = 5;
        let mut made = Vec::new();
        for i in 0..n {
            let new = NewUser {
                email: Some(format!("u{i}@acme.example")),
                ..ada()
            };
            made.push(users.create(new).await.unwrap().0.id);
        }
        let other = NewUser {
            organization_id: Some("org-other".into()),
            ..ada()
        };
        users.create(other).await.unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = users.list("org-acme", after.as_deref(), 2).await.unwrap();
            seen.extend(page.users.iter().map(|u| u.id.clone()));
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, made);
        assert!(matches!(
            users.list("org acme", None, 2).await,
            Err(UserError::Invalid {
                field: "organization_id",
                ..
            })
        ));
        assert!(matches!(
            users.list("org-acme", None, MAX_PAGE + 1).await,
            Err(UserError::Invalid { field: "limit", .. })
        ));
    }

    /// Issue #10, item 10: 120,000 roles made an event over `max_payload` and a 500.
    #[tokio::test]
    async fn roles_are_bounded_in_count_and_length() {
        let (_dir, users) = service().await;
        let many = NewUser {
            roles: Some((0..=MAX_ROLES).map(|i| format!("r{i}")).collect()),
            ..ada()
        };
        assert!(matches!(
            users.create(many).await,
            Err(UserError::TooLarge { field: "roles", .. })
        ));
        let long = NewUser {
            roles: Some(vec!["r".repeat(MAX_ROLE_LEN + 1)]),
            ..ada()
        };
        assert!(matches!(
            users.create(long).await,
            Err(UserError::TooLarge { field: "roles", .. })
        ));
        let most = NewUser {
            roles: Some((0..MAX_ROLES).map(|i| format!("{i:0>64}")).collect()),
            ..ada()
        };
        users.create(most).await.unwrap();
        assert_eq!(outboxed(&users).await.len(), 1);
    }
}
