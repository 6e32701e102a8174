//! Users: input validation, the in-memory store, and publishing an event for every change.
//!
//! Each change is published **before** it is committed to the store, and committed only
//! once the stream acknowledged the event (or the publisher's spool holds it): a change the
//! backbone never heard of is never visible here, and an answered request means the event
//! is stored. Writes are serialized by one async lock held across the publish, so that the
//! revisions of a user reach the stream in order. A real service would write the user and
//! the event in one database transaction (an outbox) instead of holding a lock.

use std::collections::HashMap;
use std::sync::Arc;

use events::publisher::{EventPublisher, PublishError, PublishOutcome};
use events::{Event, EventError, OrganizationId};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::schema;

/// Longest accepted e-mail address (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;
/// Longest display name, in characters (EVENT_CATALOG.md).
const MAX_NAME_CHARS: usize = 200;
/// Longest role name.
const MAX_ROLE_LEN: usize = 64;
/// Roles of a user created without any.
const DEFAULT_ROLE: &str = "member";

/// A user as this service stores and returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// UUID v7, assigned on creation.
    pub id: String,
    /// The tenant the user belongs to.
    pub organization_id: OrganizationId,
    /// Lower case; unique within the organization.
    pub email: String,
    /// Display name (`display_name` in the events).
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// 1 on creation, +1 with each change (the events carry it so consumers can order them).
    pub revision: u64,
}

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

/// Where the event of a change went: what `POST`, `PATCH` and `DELETE` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The event id (also its `Nats-Msg-Id`).
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The stream that stored it; `None` when it was spooled.
    pub stream: Option<String>,
    /// Its stream sequence; `None` when it was spooled.
    pub sequence: Option<u64>,
    /// True if the stream already held this event id (stored once).
    pub duplicate: bool,
    /// True if NATS was down and the publisher's durable spool holds it for later.
    pub spooled: bool,
}

impl Published {
    fn new(event: &Event, outcome: &PublishOutcome) -> Self {
        let ack = outcome.ack();
        Self {
            id: event.id().to_owned(),
            event_type: event.event_type().as_str().to_owned(),
            stream: ack.map(|a| a.stream.clone()),
            sequence: ack.map(|a| a.sequence),
            duplicate: ack.is_some_and(|a| a.duplicate),
            spooled: outcome.is_spooled(),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A field is missing or breaks its rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the request body.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No user has this id.
    #[error("no user with id {0}")]
    NotFound(String),
    /// Another user of the organization has this e-mail address.
    #[error("email {email} is already used in organization {organization_id}")]
    EmailTaken {
        /// The address.
        email: String,
        /// The organization.
        organization_id: String,
    },
    /// The event could not be built (a bug: the input was validated).
    #[error("cannot build the {event_type} event")]
    Event {
        /// The event type.
        event_type: &'static str,
        /// What the library refused.
        #[source]
        source: EventError,
    },
    /// The event was not stored, so the change was not made.
    #[error("cannot publish the {event_type} event; the change was not made")]
    Publish {
        /// The event type.
        event_type: &'static str,
        /// Why the publisher gave up.
        #[source]
        source: PublishError,
    },
}

impl UserError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The users and the publisher their events go to.
pub struct UserService {
    publisher: Arc<dyn EventPublisher>,
    users: Mutex<HashMap<String, User>>,
}

impl std::fmt::Debug for UserService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserService").finish_non_exhaustive()
    }
}

impl UserService {
    /// An empty store publishing through `publisher` (the real
    /// [`Publisher`](events::publisher::Publisher), or a
    /// [`RecordingPublisher`](events::publisher::RecordingPublisher) in tests).
    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self {
            publisher,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// The user with this id.
    pub async fn get(&self, id: &str) -> Option<User> {
        self.users.lock().await.get(id).cloned()
    }

    /// Validates `new`, publishes `auth.user.created` and stores the user.
    ///
    /// # Errors
    /// [`UserError::Invalid`] naming the field, [`UserError::EmailTaken`],
    /// [`UserError::Publish`] (nothing stored).
    pub async fn create(&self, new: NewUser) -> Result<(User, Published), UserError> {
        let organization_id = required("organization_id", new.organization_id)?;
        let organization_id = OrganizationId::new(&organization_id)
            .map_err(|e| UserError::invalid("organization_id", e.to_string()))?;
        let email = valid_email(&required("email", new.email)?)?;
        let name = valid_name(&required("name", new.name)?)?;
        let roles = match new.roles {
            Some(roles) => valid_roles(roles)?,
            None => vec![DEFAULT_ROLE.to_owned()],
        };
        let mut users = self.users.lock().await;
        check_email_free(&users, &organization_id, &email, None)?;
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
        let published = self.publish(&event, schema::USER_CREATED).await?;
        users.insert(user.id.clone(), user.clone());
        Ok((user, published))
    }

    /// Applies `patch`, publishes `auth.user.updated` with the fields that changed, and
    /// stores the result. A patch that changes nothing publishes nothing (`None`).
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`], [`UserError::EmailTaken`],
    /// [`UserError::Publish`] (nothing changed).
    pub async fn update(
        &self,
        id: &str,
        patch: UserPatch,
    ) -> Result<(User, Option<Published>), UserError> {
        let email = patch.email.as_deref().map(valid_email).transpose()?;
        let name = patch.name.as_deref().map(valid_name).transpose()?;
        let roles = patch.roles.map(valid_roles).transpose()?;
        let mut users = self.users.lock().await;
        let current = users
            .get(id)
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(email) = email.filter(|e| *e != current.email) {
            check_email_free(&users, &current.organization_id, &email, Some(id))?;
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
        let published = self.publish(&event, schema::USER_UPDATED).await?;
        users.insert(next.id.clone(), next.clone());
        Ok((next, Some(published)))
    }

    /// Publishes `auth.user.deleted` and removes the user. `deleted_by`, if given, must be
    /// a UUID.
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`] (`deleted_by`),
    /// [`UserError::Publish`] (the user stays).
    pub async fn delete(&self, id: &str, deleted_by: Option<&str>) -> Result<Published, UserError> {
        if let Some(by) = deleted_by {
            Uuid::parse_str(by).map_err(|e| UserError::invalid("deleted_by", e.to_string()))?;
        }
        let mut users = self.users.lock().await;
        let mut gone = users
            .get(id)
            .cloned()
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        gone.revision += 1;
        let event = schema::user_deleted(&gone, deleted_by).map_err(|source| UserError::Event {
            event_type: schema::USER_DELETED,
            source,
        })?;
        let published = self.publish(&event, schema::USER_DELETED).await?;
        users.remove(id);
        Ok(published)
    }

    async fn publish(
        &self,
        event: &Event,
        event_type: &'static str,
    ) -> Result<Published, UserError> {
        let outcome = self
            .publisher
            .publish(event)
            .await
            .map_err(|source| UserError::Publish { event_type, source })?;
        tracing::info!(event_id = %event.id(), event_type, "published");
        Ok(Published::new(event, &outcome))
    }
}

fn required(field: &'static str, value: Option<String>) -> Result<String, UserError> {
    value.ok_or_else(|| UserError::invalid(field, "is required"))
}

/// A plausible address, lower-cased: one `@`, a non-empty local part, a dotted domain, no
/// whitespace or control characters. (Real verification is a confirmation mail.)
fn valid_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_lowercase();
    let bad = |reason: &str| Err(UserError::invalid("email", reason));
    if email.is_empty() {
        return bad("must not be empty");
    }
    if email.len() > MAX_EMAIL_LEN {
        return bad("must be at most 254 bytes");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(email)
        }
        _ => bad("must look like name@example.com"),
    }
}

fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(UserError::invalid("name", "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(UserError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, got {chars}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(UserError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn valid_roles(roles: Vec<String>) -> Result<Vec<String>, UserError> {
    for role in &roles {
        let ok = !role.is_empty()
            && role.len() <= MAX_ROLE_LEN
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(UserError::invalid(
                "roles",
                format!("{role:?} must be 1 to {MAX_ROLE_LEN} characters of [a-z0-9_-]"),
            ));
        }
    }
    let mut unique = roles.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != roles.len() {
        return Err(UserError::invalid("roles", "must not repeat a role"));
    }
    Ok(roles)
}

fn check_email_free(
    users: &HashMap<String, User>,
    organization_id: &OrganizationId,
    email: &str,
    except: Option<&str>,
) -> Result<(), UserError> {
    let taken = users.values().any(|u| {
        u.organization_id == *organization_id && u.email == email && Some(u.id.as_str()) != except
    });
    if taken {
        return Err(UserError::EmailTaken {
            email: email.to_owned(),
            organization_id: organization_id.as_str().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use events::publisher::RecordingPublisher;
    use serde_json::json;

    use super::*;

    fn service() -> (Arc<RecordingPublisher>, UserService) {
        let recorder = Arc::new(RecordingPublisher::new());
        (recorder.clone(), UserService::new(recorder))
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
    async fn create_publishes_user_created_per_the_catalog() {
        let (rec, users) = service();
        let (user, published) = users.create(ada()).await.unwrap();

        let events = rec.events();
        assert_eq!(events.len(), 1);
        let ev = &events[0];
        assert_eq!(ev.event_type().as_str(), "auth.user.created");
        assert_eq!(ev.source(), "auth-service");
        assert_eq!(ev.organization_id().as_str(), "org-acme");
        assert_eq!(ev.schema_version(), "1.0");
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.created:1")
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
        assert_eq!(published.id, ev.id());
        assert_eq!(published.stream.as_deref(), Some("AUTH_EVENTS"));
        assert_eq!(published.sequence, Some(1));
        assert_eq!(users.get(&user.id).await, Some(user));
    }

    #[tokio::test]
    async fn invalid_input_names_the_field_and_publishes_nothing() {
        let (rec, users) = service();
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
        assert!(rec.is_empty());
    }

    #[tokio::test]
    async fn duplicate_email_in_one_org_is_refused_but_allowed_in_another() {
        let (rec, users) = service();
        users.create(ada()).await.unwrap();
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
        assert_eq!(rec.len(), 2);
    }

    #[tokio::test]
    async fn update_publishes_the_whole_user_and_what_changed() {
        let (rec, users) = service();
        let (user, _) = users.create(ada()).await.unwrap();
        let patch = UserPatch {
            name: Some("Ada King".into()),
            roles: Some(vec!["member".into(), "catalog-editor".into()]),
            email: Some("ADA@acme.example".into()), // same address, other case: unchanged
        };
        let (updated, published) = users.update(&user.id, patch).await.unwrap();
        assert_eq!(updated.revision, 2);
        let published = published.expect("a change publishes an event");

        let ev = rec.events_of_type("auth.user.updated").pop().unwrap();
        assert_eq!(published.id, ev.id());
        assert_eq!(ev.subject(), Some(user.id.as_str()));
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.updated:1")
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

        // Nothing new: nothing published, revision unchanged.
        let (same, none) = users
            .update(
                &user.id,
                UserPatch {
                    name: Some("Ada King".into()),
                    ..UserPatch::default()
                },
            )
            .await
            .unwrap();
        assert!(none.is_none());
        assert_eq!(same.revision, 2);
        assert_eq!(rec.len(), 2);
    }

    #[tokio::test]
    async fn delete_publishes_user_deleted_and_removes_the_user() {
        let (rec, users) = service();
        let (user, _) = users.create(ada()).await.unwrap();
        users
            .update(
                &user.id,
                UserPatch {
                    name: Some("Ada King".into()),
                    ..UserPatch::default()
                },
            )
            .await
            .unwrap();
        let published = users.delete(&user.id, None).await.unwrap();
        let ev = rec.events_of_type("auth.user.deleted").pop().unwrap();
        assert_eq!(published.id, ev.id());
        assert_eq!(
            ev.data_schema(),
            Some("urn:events:schema:auth.user.deleted:1")
        );
        assert_eq!(
            serde_json::Value::Object(ev.data().clone()),
            json!({ "user_id": user.id, "revision": 3, "deleted_by": null })
        );
        assert_eq!(users.get(&user.id).await, None);
        assert!(matches!(
            users.delete(&user.id, None).await,
            Err(UserError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_publish_changes_nothing() {
        let (rec, users) = service();
        rec.fail_next(1);
        let err = users.create(ada()).await.unwrap_err();
        assert!(
            matches!(&err, UserError::Publish { source, .. } if source.is_transient()),
            "{err:?}"
        );
        assert!(rec.is_empty());
        // The same input succeeds afterwards: nothing half-made blocks it (e.g. the email).
        let (user, _) = users.create(ada()).await.unwrap();

        rec.fail_next(1);
        assert!(users.delete(&user.id, None).await.is_err());
        assert_eq!(users.get(&user.id).await, Some(user));
    }
}
