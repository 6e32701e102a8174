//! The read model: users per organization, each with a default workspace, built from
//! `auth.user.*` events and kept in the service's database ([`crate::store`]).
//!
//! The rules follow the catalog and SCHEMA_VERSIONING.md:
//! - only the major of `schemaversion` counts, and only major 1 is supported: any other is
//!   [`ApplyError::UnsupportedVersion`], a permanent failure (the event is dead-lettered and
//!   can be replayed once this service supports the new major);
//! - unknown fields are ignored (no `deny_unknown_fields` on the payload types), and
//!   `auth.user.*` types this service does not know are acknowledged without effect;
//! - each user keeps the highest `revision` applied, and anything at or below it is skipped:
//!   an older update arriving after a newer one changes nothing. A deleted user leaves a
//!   tombstone (its revision, no personal data), so a late `created` or `updated` does not
//!   bring it back. Tombstones are kept forever here; a real service would drop them after
//!   the stream's max age (7 days), when no older event can arrive any more.
//!
//! [`Projection::apply`] records the event id in the consumer's inbox and applies the change
//! in **one transaction**: a redelivered or replayed event (same id) changes nothing
//! ([`Applied::Duplicate`]), and a crash between the commit and the ack only causes such a
//! redelivery.

use events::Event;
use events::db::Database;
use events::inbox::Inbox;
use serde::{Deserialize, Serialize};

use crate::store;

/// `auth.user.created`.
pub const USER_CREATED: &str = "auth.user.created";
/// `auth.user.updated`.
pub const USER_UPDATED: &str = "auth.user.updated";
/// `auth.user.deleted`.
pub const USER_DELETED: &str = "auth.user.deleted";
/// The one major of each type this service reads.
pub const SUPPORTED_MAJOR: u32 = 1;

/// `data` of `auth.user.created` 1.x (unknown fields ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct UserCreatedV1 {
    /// The user's id.
    pub user_id: String,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// 1 on creation.
    pub revision: u64,
}

/// `data` of `auth.user.updated` 1.x: the whole user after the change.
#[derive(Debug, Clone, Deserialize)]
pub struct UserUpdatedV1 {
    /// The user's id.
    pub user_id: String,
    /// After the change.
    pub email: String,
    /// After the change.
    pub display_name: String,
    /// After the change.
    pub roles: Vec<String>,
    /// After the change.
    pub revision: u64,
}

/// `data` of `auth.user.deleted` 1.x.
#[derive(Debug, Clone, Deserialize)]
pub struct UserDeletedV1 {
    /// The user's id.
    pub user_id: String,
    /// The user's last revision plus one.
    pub revision: u64,
}

/// The default workspace made for each new user: the "effect" of a sign-up here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// `ws-<user id>`: derived, so that making it twice gives the same workspace.
    pub id: String,
    /// `<display name>'s workspace` (kept when the user is renamed).
    pub name: String,
}

/// A user as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogUser {
    /// The user's id.
    pub user_id: String,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// The highest revision applied.
    pub revision: u64,
    /// The user's default workspace.
    pub workspace: Workspace,
}

/// What the projection holds about one user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Slot {
    /// A user as the catalog shows it.
    Live(CatalogUser),
    /// A deleted user: only its last revision (a tombstone).
    Deleted {
        /// The revision of the deletion.
        revision: u64,
    },
}

impl Slot {
    /// The revision this slot is at.
    pub fn revision(&self) -> u64 {
        match self {
            Self::Live(u) => u.revision,
            Self::Deleted { revision } => *revision,
        }
    }
}

/// What [`Projection::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The model changed.
    Changed,
    /// The user already has this revision or a newer one: nothing to do.
    Stale,
    /// An `auth.user.*` type this service does not handle (acknowledged, no effect).
    Ignored,
    /// The inbox already holds this event id: its effect was applied before.
    Duplicate,
}

/// Why an event cannot be applied. Every variant is permanent: no retry can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A major version this service does not read.
    #[error(
        "unsupported schemaversion {version} of {event_type} (this service reads major {SUPPORTED_MAJOR})"
    )]
    UnsupportedVersion {
        /// The event type.
        event_type: String,
        /// The event's `schemaversion`.
        version: String,
    },
    /// `data` does not match the schema of its version.
    #[error("data of {event_type} does not match its schema")]
    InvalidData {
        /// The event type.
        event_type: String,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// `data.user_id` and the `subject` attribute differ.
    #[error("data.user_id {user_id} differs from the subject attribute {subject}")]
    SubjectMismatch {
        /// `data.user_id`.
        user_id: String,
        /// The `subject` attribute.
        subject: String,
    },
}

/// The users of one organization, as `GET /catalogs/{org}` returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgCatalog {
    /// The organization.
    pub organization_id: String,
    /// Its live users, by user id.
    pub users: Vec<CatalogUser>,
}

/// Why [`Projection::apply`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event cannot be applied, ever (dead-letter it).
    #[error("the event cannot be applied")]
    Apply(#[from] ApplyError),
    /// The database failed; nothing was written (retry later).
    #[error("the catalog database failed")]
    Storage(#[from] sqlx::Error),
}

/// One user's change, decoded from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The tenant.
    pub organization_id: String,
    /// The user.
    pub user_id: String,
    /// The user's state after the event.
    pub next: Slot,
}

/// Decodes an `auth.user.*` event into the change it makes; `None` for a type this service
/// does not handle.
///
/// # Errors
/// [`ApplyError`], always permanent.
pub fn change_of(event: &Event) -> Result<Option<Change>, ApplyError> {
    let event_type = event.event_type().as_str();
    if ![USER_CREATED, USER_UPDATED, USER_DELETED].contains(&event_type) {
        return Ok(None);
    }
    // The library has checked the format ("<major>.<minor>"): compare the major only.
    let major = event.schema_version().split('.').next();
    if major.and_then(|m| m.parse::<u32>().ok()) != Some(SUPPORTED_MAJOR) {
        return Err(ApplyError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            version: event.schema_version().to_owned(),
        });
    }
    let invalid = |source| ApplyError::InvalidData {
        event_type: event_type.to_owned(),
        source,
    };
    let (user_id, next) = match event_type {
        USER_CREATED => {
            let d: UserCreatedV1 = event.data_as().map_err(invalid)?;
            let user = live(
                d.user_id.clone(),
                d.email,
                d.display_name,
                d.roles,
                d.revision,
            );
            (d.user_id, user)
        }
        USER_UPDATED => {
            let d: UserUpdatedV1 = event.data_as().map_err(invalid)?;
            let user = live(
                d.user_id.clone(),
                d.email,
                d.display_name,
                d.roles,
                d.revision,
            );
            (d.user_id, user)
        }
        _ => {
            let d: UserDeletedV1 = event.data_as().map_err(invalid)?;
            let slot = Slot::Deleted {
                revision: d.revision,
            };
            (d.user_id, slot)
        }
    };
    if let Some(subject) = event.subject()
        && subject != user_id
    {
        return Err(ApplyError::SubjectMismatch {
            user_id,
            subject: subject.to_owned(),
        });
    }
    Ok(Some(Change {
        organization_id: event.organization_id().as_str().to_owned(),
        user_id,
        next,
    }))
}

fn live(user_id: String, email: String, name: String, roles: Vec<String>, revision: u64) -> Slot {
    Slot::Live(CatalogUser {
        workspace: default_workspace(&user_id, &name),
        user_id,
        email,
        display_name: name,
        roles,
        revision,
    })
}

/// The slot after `next` lands on `previous`; `None` if `previous` is at the same revision
/// or newer (stale). An update keeps the workspace made at sign-up (its name does not
/// follow renames).
pub fn merge(previous: Option<&Slot>, next: Slot) -> Option<Slot> {
    if previous.is_some_and(|p| p.revision() >= next.revision()) {
        return None;
    }
    Some(match (previous, next) {
        (Some(Slot::Live(old)), Slot::Live(mut new)) => {
            new.workspace = old.workspace.clone();
            Slot::Live(new)
        }
        (_, next) => next,
    })
}

/// The projection in the service's database, with the consumer's inbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Projection {
    db: Database,
    inbox: Inbox,
}

impl Projection {
    /// The projection in `db` (opened by [`store::open`]), recording events in the inbox of
    /// consumer `consumer`.
    pub fn new(db: Database, consumer: &str) -> Self {
        Self {
            db,
            inbox: Inbox::new(consumer),
        }
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The consumer's inbox (for the retention sweep).
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Applies one `auth.user.*` event (module docs): the inbox record and the change commit
    /// together.
    ///
    /// # Errors
    /// [`ProjectionError::Apply`] (permanent) or [`ProjectionError::Storage`] (transient).
    pub async fn apply(&self, event: &Event) -> Result<Applied, ProjectionError> {
        let Some(change) = change_of(event)? else {
            return Ok(Applied::Ignored);
        };
        let mut tx = self.db.begin().await?;
        if !self.inbox.record(&mut tx, event).await? {
            tx.commit().await?;
            return Ok(Applied::Duplicate);
        }
        let backend = self.db.backend();
        let previous =
            store::load_for_update(&mut tx, backend, &change.organization_id, &change.user_id)
                .await?;
        let applied = match merge(previous.as_ref(), change.next) {
            Some(next) => {
                store::save(&mut tx, &change.organization_id, &change.user_id, &next).await?;
                Applied::Changed
            }
            None => Applied::Stale,
        };
        tx.commit().await?;
        Ok(applied)
    }

    /// The live users of `organization_id` (empty for an organization never seen).
    ///
    /// # Errors
    /// The driver's error if the query fails.
    pub async fn catalog(&self, organization_id: &str) -> Result<OrgCatalog, sqlx::Error> {
        Ok(OrgCatalog {
            organization_id: organization_id.to_owned(),
            users: store::live_users(&self.db, organization_id).await?,
        })
    }
}

fn default_workspace(user_id: &str, display_name: &str) -> Workspace {
    Workspace {
        id: format!("ws-{user_id}"),
        name: format!("{display_name}'s workspace"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Value, json};

    use super::*;

    const ORG: &str = "org-acme";
    const ADA: &str = "5b0f2a64-31c8-4d3e-9a57-0c2b8e1d7f10";

    fn event(ty: &str, version: &str, data: Value) -> Event {
        Event::builder(ty)
            .source("auth-service")
            .organization(ORG)
            .schema_version(version)
            .subject(data["user_id"].as_str().unwrap_or(ADA))
            .data_json(data)
            .build()
            .unwrap()
    }

    fn created(rev: u64) -> Event {
        event(
            USER_CREATED,
            "1.0",
            json!({"user_id": ADA, "email": "ada@acme.example", "display_name": "Ada",
                   "roles": ["member"], "revision": rev}),
        )
    }

    fn updated(rev: u64, name: &str) -> Event {
        event(
            USER_UPDATED,
            "1.3", // a later minor: more fields, still readable
            json!({"user_id": ADA, "email": "ada@acme.example", "display_name": name,
                   "roles": ["member"], "revision": rev, "changed": ["display_name"],
                   "nickname": "added in 1.3"}),
        )
    }

    fn deleted(rev: u64) -> Event {
        event(
            USER_DELETED,
            "1.0",
            json!({"user_id": ADA, "revision": rev, "deleted_by": null}),
        )
    }

    /// A projection over a fresh SQLite file (kept by the returned directory).
    pub(crate) async fn projection() -> (tempfile::TempDir, Projection) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let db = store::open(&url).await.unwrap();
        (dir, Projection::new(db, "catalog-service"))
    }

    async fn names(p: &Projection) -> Vec<String> {
        p.catalog(ORG)
            .await
            .unwrap()
            .users
            .into_iter()
            .map(|u| u.display_name)
            .collect()
    }

    #[tokio::test]
    async fn created_adds_the_user_with_a_default_workspace() {
        let (_dir, p) = projection().await;
        assert_eq!(p.apply(&created(1)).await.unwrap(), Applied::Changed);
        let users = p.catalog(ORG).await.unwrap().users;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].user_id, ADA);
        assert_eq!(users[0].workspace.id, format!("ws-{ADA}"));
        assert_eq!(users[0].workspace.name, "Ada's workspace");
        assert!(p.catalog("org-other").await.unwrap().users.is_empty());
    }

    #[tokio::test]
    async fn a_redelivery_is_skipped_and_an_older_revision_changes_nothing() {
        let (_dir, p) = projection().await;
        let first = created(1);
        p.apply(&first).await.unwrap();
        assert_eq!(p.apply(&first).await.unwrap(), Applied::Duplicate);
        assert_eq!(p.apply(&created(1)).await.unwrap(), Applied::Stale);
        assert_eq!(
            p.apply(&updated(3, "Ada K3")).await.unwrap(),
            Applied::Changed
        );
        // Revision 2 arrives late (it was retried): ignored.
        assert_eq!(
            p.apply(&updated(2, "Ada K2")).await.unwrap(),
            Applied::Stale
        );
        assert_eq!(names(&p).await, ["Ada K3"]);
        // The workspace made at sign-up stays.
        let users = p.catalog(ORG).await.unwrap().users;
        assert_eq!(users[0].workspace.name, "Ada's workspace");
    }

    #[tokio::test]
    async fn deleted_removes_the_user_and_late_events_do_not_bring_it_back() {
        let (_dir, p) = projection().await;
        p.apply(&created(1)).await.unwrap();
        assert_eq!(p.apply(&deleted(2)).await.unwrap(), Applied::Changed);
        assert!(p.catalog(ORG).await.unwrap().users.is_empty());
        assert_eq!(p.apply(&created(1)).await.unwrap(), Applied::Stale);
        assert!(p.catalog(ORG).await.unwrap().users.is_empty());
        // Deleting a user never seen is a success.
        let (_dir2, q) = projection().await;
        assert_eq!(q.apply(&deleted(4)).await.unwrap(), Applied::Changed);
    }

    #[tokio::test]
    async fn an_update_before_its_create_creates_the_user() {
        let (_dir, p) = projection().await;
        p.apply(&updated(2, "Ada K")).await.unwrap();
        assert_eq!(p.apply(&created(1)).await.unwrap(), Applied::Stale);
        assert_eq!(names(&p).await, ["Ada K"]);
    }

    #[test]
    fn unknown_major_is_a_permanent_error_naming_the_version() {
        let v2 = event(
            USER_CREATED,
            "2.0",
            json!({"user_id": ADA, "emails": ["ada@acme.example"]}),
        );
        let err = change_of(&v2).unwrap_err();
        assert!(
            matches!(err, ApplyError::UnsupportedVersion { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("2.0"), "{err}");
    }

    #[test]
    fn bad_data_and_a_wrong_subject_are_permanent_errors() {
        let missing = event(USER_CREATED, "1.0", json!({"user_id": ADA}));
        assert!(matches!(
            change_of(&missing),
            Err(ApplyError::InvalidData { .. })
        ));
        let other_subject = Event::builder(USER_DELETED)
            .source("auth-service")
            .organization(ORG)
            .subject("someone-else")
            .data_json(json!({"user_id": ADA, "revision": 2}))
            .build()
            .unwrap();
        assert!(matches!(
            change_of(&other_subject),
            Err(ApplyError::SubjectMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn a_permanent_error_records_nothing() {
        let (_dir, p) = projection().await;
        let missing = event(USER_CREATED, "1.0", json!({"user_id": ADA}));
        assert!(matches!(
            p.apply(&missing).await,
            Err(ProjectionError::Apply(ApplyError::InvalidData { .. }))
        ));
        assert!(p.catalog(ORG).await.unwrap().users.is_empty());
    }

    #[tokio::test]
    async fn other_user_types_are_ignored() {
        let (_dir, p) = projection().await;
        let suspended = event("auth.user.suspended", "7.0", json!({"user_id": ADA}));
        assert_eq!(p.apply(&suspended).await.unwrap(), Applied::Ignored);
    }

    #[tokio::test]
    async fn the_projection_survives_reopening_the_database() {
        let (dir, p) = projection().await;
        p.apply(&created(1)).await.unwrap();
        p.apply(&deleted(2)).await.unwrap();
        let bo = Event::builder(USER_CREATED)
            .source("auth-service")
            .organization(ORG)
            .data_json(json!({"user_id": "u-2", "email": "bo@acme.example",
                              "display_name": "Bo", "roles": [], "revision": 1}))
            .build()
            .unwrap();
        p.apply(&bo).await.unwrap();
        p.db().close().await;

        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let back = Projection::new(store::open(&url).await.unwrap(), "catalog-service");
        assert_eq!(names(&back).await, ["Bo"]);
        // The tombstone and the inbox came back too.
        assert_eq!(back.apply(&created(1)).await.unwrap(), Applied::Stale);
        assert_eq!(back.apply(&bo).await.unwrap(), Applied::Duplicate);
    }
}
