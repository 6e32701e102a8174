//! Users: input validation, the in-memory store, and publishing an event for every change.
//!
//! Each change is published **before** it is committed to the store, and committed only
//! once the stream acknowledged the event (or the publisher's spool holds it): a change the
//! backbone never heard of is never visible here, and an answered request means the event
//! is stored. Writes are serialized by one async lock held across the publish, so that the
//! revisions of a user reach the stream in order. A real service would write the user and
//! the event in one database transaction (an outbox) instead of holding a lock.
//!
//! # When the outcome of a publish is unknown
//! A publish can end with [`PublishError::Unconfirmed`]: NATS did not answer, but the event
//! may be stored (now, or later when a buffered write reaches the server) and so reach every
//! consumer. Answering "not made" would be a lie that a client retry turns into a second
//! user with the same address. So this service treats the change as **made but unsettled**:
//! it commits it, keeps the event, and answers [`UserError::Unconfirmed`] (HTTP 202 with
//! the user and the event id). The event is settled by publishing the *same* event (same
//! id: the stream stores it at most once) again:
//! - a retry of the same `POST /users` (same organization, e-mail, name and roles) finds the
//!   unsettled user and re-publishes its event instead of creating another user; any other
//!   sign-up with that address gets 409 `email_taken`, since the address is taken;
//! - any later change of that user first re-publishes the unsettled event, so revisions
//!   still reach the stream in order; if it is still unconfirmed, the new change is refused
//!   (503, not made).
//!
//! The duplicate window (2 minutes by default) bounds how long a re-publish is guaranteed
//! to be stored once; an operator finds what is still unsettled after that in the logs.

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
/// Most roles per user: keeps every user's event far below the server's `max_payload`
/// (100 roles of 64 bytes are under 7 KiB).
pub const MAX_ROLES: usize = 100;
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
    /// A value is over a size limit (e.g. too many roles): HTTP 422.
    #[error("{field} too large: {reason}")]
    TooLarge {
        /// The field, as named in the request body.
        field: &'static str,
        /// The limit broken.
        reason: String,
    },
    /// NATS did not confirm the event, but it may be stored: the change **was made** and
    /// stays (see the module docs); repeat the request to settle it.
    #[error(
        "the {event_type} event {event_id} may or may not be stored yet; the change is kept \
         and settled by repeating the request"
    )]
    Unconfirmed {
        /// The event type.
        event_type: &'static str,
        /// The event id; a re-publish uses the same.
        event_id: String,
        /// The user as changed (`None` for a deletion).
        user: Option<Box<User>>,
        /// Why the publisher gave up.
        #[source]
        source: PublishError,
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
    store: Mutex<Store>,
}

/// What the lock guards.
#[derive(Default)]
struct Store {
    users: HashMap<String, User>,
    /// Per user id: the last event whose publish ended unconfirmed (see the module docs).
    unsettled: HashMap<String, Event>,
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
            store: Mutex::new(Store::default()),
        }
    }

    /// The user with this id.
    pub async fn get(&self, id: &str) -> Option<User> {
        self.store.lock().await.users.get(id).cloned()
    }

    /// Validates `new`, publishes `auth.user.created` and stores the user. A repeat of a
    /// sign-up whose event is unsettled settles it and returns that user (module docs).
    ///
    /// # Errors
    /// [`UserError::Invalid`] naming the field, [`UserError::TooLarge`],
    /// [`UserError::EmailTaken`], [`UserError::Publish`] (nothing stored),
    /// [`UserError::Unconfirmed`] (the user is kept).
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
        let mut store = self.store.lock().await;
        let user = User {
            id: Uuid::now_v7().to_string(),
            organization_id,
            email,
            name,
            roles,
            revision: 1,
        };
        if let Some(repeat) = store.unsettled_sign_up(&user)
            && let Some(published) = self.settle(&mut store, &repeat.id).await?
        {
            return Ok((repeat, published));
        }
        check_email_free(&store.users, &user.organization_id, &user.email, None)?;
        let event = schema::user_created(&user).map_err(|source| UserError::Event {
            event_type: schema::USER_CREATED,
            source,
        })?;
        let published = self
            .publish(&mut store, &event, &user.id, Some(&user))
            .await?;
        store.users.insert(user.id.clone(), user.clone());
        Ok((user, published))
    }

    /// Applies `patch`, publishes `auth.user.updated` with the fields that changed, and
    /// stores the result. A patch that changes nothing publishes nothing (`None`).
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`], [`UserError::TooLarge`],
    /// [`UserError::EmailTaken`], [`UserError::Publish`] (nothing changed),
    /// [`UserError::Unconfirmed`] (the change is kept).
    pub async fn update(
        &self,
        id: &str,
        patch: UserPatch,
    ) -> Result<(User, Option<Published>), UserError> {
        let email = patch.email.as_deref().map(valid_email).transpose()?;
        let name = patch.name.as_deref().map(valid_name).transpose()?;
        let roles = patch.roles.map(valid_roles).transpose()?;
        let mut store = self.store.lock().await;
        self.settle(&mut store, id)
            .await
            .map_err(UserError::not_made)?;
        let current = store
            .users
            .get(id)
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(email) = email.filter(|e| *e != current.email) {
            check_email_free(&store.users, &current.organization_id, &email, Some(id))?;
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
        let published = self.publish(&mut store, &event, id, Some(&next)).await?;
        store.users.insert(next.id.clone(), next.clone());
        Ok((next, Some(published)))
    }

    /// Publishes `auth.user.deleted` and removes the user. `deleted_by`, if given, must be
    /// a UUID. A repeat of a deletion whose event is unsettled settles it.
    ///
    /// # Errors
    /// [`UserError::NotFound`], [`UserError::Invalid`] (`deleted_by`),
    /// [`UserError::Publish`] (the user stays), [`UserError::Unconfirmed`] (the user is
    /// removed).
    pub async fn delete(&self, id: &str, deleted_by: Option<&str>) -> Result<Published, UserError> {
        if let Some(by) = deleted_by {
            Uuid::parse_str(by).map_err(|e| UserError::invalid("deleted_by", e.to_string()))?;
        }
        let mut store = self.store.lock().await;
        let settled = self.settle(&mut store, id).await;
        let mut gone = match store.users.get(id) {
            Some(user) => user.clone(),
            // The unsettled event was this deletion: settling it answers the repeat.
            None => return settled?.ok_or_else(|| UserError::NotFound(id.to_owned())),
        };
        settled.map_err(UserError::not_made)?;
        gone.revision += 1;
        let event = schema::user_deleted(&gone, deleted_by).map_err(|source| UserError::Event {
            event_type: schema::USER_DELETED,
            source,
        })?;
        let published = self.publish(&mut store, &event, id, None).await?;
        store.users.remove(id);
        Ok(published)
    }

    /// Publishes the event of a change to user `id`, whose state after the change is
    /// `after` (`None`: deleted). If the outcome is unknown, commits the change anyway and
    /// keeps the event to settle (module docs).
    async fn publish(
        &self,
        store: &mut Store,
        event: &Event,
        id: &str,
        after: Option<&User>,
    ) -> Result<Published, UserError> {
        let event_type = static_type(event);
        match self.publisher.publish(event).await {
            Ok(outcome) => {
                tracing::info!(event_id = %event.id(), event_type, "published");
                Ok(Published::new(event, &outcome))
            }
            Err(source) if source.may_be_stored() => {
                tracing::warn!(event_id = %event.id(), event_type, error = %source, "publish unconfirmed; change kept, to be settled");
                match after {
                    Some(user) => store.users.insert(id.to_owned(), user.clone()),
                    None => store.users.remove(id),
                };
                store.unsettled.insert(id.to_owned(), event.clone());
                Err(UserError::Unconfirmed {
                    event_type,
                    event_id: event.id().to_owned(),
                    user: after.cloned().map(Box::new),
                    source,
                })
            }
            Err(source) => Err(UserError::Publish { event_type, source }),
        }
    }

    /// Publishes the unsettled event of user `id` again (same id: stored at most once).
    /// `Ok(None)` if none was unsettled; the event stays unsettled unless stored.
    async fn settle(&self, store: &mut Store, id: &str) -> Result<Option<Published>, UserError> {
        let Some(event) = store.unsettled.get(id).cloned() else {
            return Ok(None);
        };
        let event_type = static_type(&event);
        match self.publisher.publish(&event).await {
            Ok(outcome) => {
                tracing::info!(event_id = %event.id(), event_type, "unconfirmed event settled");
                store.unsettled.remove(id);
                Ok(Some(Published::new(&event, &outcome)))
            }
            Err(source) => Err(UserError::Unconfirmed {
                event_type,
                event_id: event.id().to_owned(),
                user: store.users.get(id).cloned().map(Box::new),
                source,
            }),
        }
    }
}

impl Store {
    /// The unsettled user that `candidate` repeats (same organization, e-mail, name and
    /// roles), if any.
    fn unsettled_sign_up(&self, candidate: &User) -> Option<User> {
        self.users
            .values()
            .find(|u| {
                u.organization_id == candidate.organization_id
                    && u.email == candidate.email
                    && u.name == candidate.name
                    && u.roles == candidate.roles
                    && u.revision == 1
                    && self.unsettled.contains_key(&u.id)
            })
            .cloned()
    }
}

impl UserError {
    /// An unconfirmed *earlier* event refuses a new change: for that change, "not made".
    fn not_made(self) -> Self {
        match self {
            Self::Unconfirmed {
                event_type, source, ..
            } => Self::Publish { event_type, source },
            other => other,
        }
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
    if roles.len() > MAX_ROLES {
        return Err(UserError::TooLarge {
            field: "roles",
            reason: format!("at most {MAX_ROLES} roles, got {}", roles.len()),
        });
    }
    if let Some(long) = roles.iter().find(|r| r.len() > MAX_ROLE_LEN) {
        return Err(UserError::TooLarge {
            field: "roles",
            reason: format!("a role is at most {MAX_ROLE_LEN} bytes, got {}", long.len()),
        });
    }
    for role in &roles {
        let ok = !role.is_empty()
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
            Some("urn:events:schema:auth.user.deleted:1.0")
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

    /// Issue #10, item 11: NATS did not answer but the event is stored (a buffered write).
    /// The user is kept, and the client's retry settles the same event instead of making a
    /// second user with the same address.
    #[tokio::test]
    async fn an_unconfirmed_sign_up_is_kept_and_a_retry_settles_it_once() {
        let (rec, users) = service();
        rec.unconfirm_next(1);
        let err = users.create(ada()).await.unwrap_err();
        let kept = match &err {
            UserError::Unconfirmed {
                user: Some(user), ..
            } => (**user).clone(),
            other => panic!("expected Unconfirmed with the user, got {other:?}"),
        };
        assert_eq!(users.get(&kept.id).await, Some(kept.clone()), "kept");
        assert_eq!(rec.len(), 1, "the buffered event reached the stream");

        // Another sign-up with the same address is refused: the address is taken.
        let other = NewUser {
            name: Some("Someone Else".into()),
            ..ada()
        };
        assert!(matches!(
            users.create(other).await,
            Err(UserError::EmailTaken { .. })
        ));
        // The retry of the same request settles it: same user, same event, stored once.
        let (again, published) = users.create(ada()).await.unwrap();
        assert_eq!(again, kept);
        assert_eq!(published.id, rec.events()[0].id());
        assert!(published.duplicate, "{published:?}");
        assert_eq!(rec.len(), 1, "one user, one event");
        // Settled: a further repeat is an ordinary conflict.
        assert!(matches!(
            users.create(ada()).await,
            Err(UserError::EmailTaken { .. })
        ));
    }

    #[tokio::test]
    async fn a_change_after_an_unconfirmed_one_settles_it_first_or_is_refused() {
        let (rec, users) = service();
        rec.unconfirm_next(1);
        let Err(UserError::Unconfirmed {
            user: Some(user), ..
        }) = users.create(ada()).await
        else {
            panic!("expected Unconfirmed");
        };
        // Settling fails (nothing stored this time): the new change is not made.
        rec.fail_next(1);
        let patch = || UserPatch {
            name: Some("Ada K".into()),
            ..UserPatch::default()
        };
        assert!(matches!(
            users.update(&user.id, patch()).await,
            Err(UserError::Publish { .. })
        ));
        assert_eq!(users.get(&user.id).await.map(|u| u.revision), Some(1));
        // Settling works: the created event stays first and once, then the update.
        let (next, _) = users.update(&user.id, patch()).await.unwrap();
        assert_eq!(next.revision, 2);
        let types: Vec<String> = rec
            .events()
            .iter()
            .map(|e| e.event_type().as_str().to_owned())
            .collect();
        assert_eq!(types, [schema::USER_CREATED, schema::USER_UPDATED]);
    }

    #[tokio::test]
    async fn an_unconfirmed_deletion_is_settled_by_repeating_it() {
        let (rec, users) = service();
        let (user, _) = users.create(ada()).await.unwrap();
        rec.unconfirm_next(1);
        assert!(matches!(
            users.delete(&user.id, None).await,
            Err(UserError::Unconfirmed { user: None, .. })
        ));
        assert_eq!(users.get(&user.id).await, None, "the deletion is kept");
        let published = users.delete(&user.id, None).await.unwrap();
        assert!(published.duplicate);
        assert_eq!(rec.events_of_type(schema::USER_DELETED).len(), 1);
        assert!(matches!(
            users.delete(&user.id, None).await,
            Err(UserError::NotFound(_))
        ));
    }

    /// Issue #10, item 10: 120,000 roles made an event over `max_payload` and a 500.
    #[tokio::test]
    async fn roles_are_bounded_in_count_and_length() {
        let (rec, users) = service();
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
        assert_eq!(rec.len(), 1);
    }
}
