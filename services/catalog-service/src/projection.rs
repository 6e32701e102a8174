//! The read model: users per organization, each with a default workspace, built from
//! `auth.user.*` events.
//!
//! [`Projection::apply`] is pure logic (no NATS) and follows the catalog and
//! SCHEMA_VERSIONING.md:
//! - only the major of `schemaversion` counts, and only major 1 is supported: any other is
//!   [`ApplyError::UnsupportedVersion`], a permanent failure (the event is dead-lettered and
//!   can be replayed once this service supports the new major);
//! - unknown fields are ignored (no `deny_unknown_fields` on the payload types), and
//!   `auth.user.*` types this service does not know are acknowledged without effect;
//! - each user keeps the highest `revision` applied, and anything at or below it is skipped:
//!   an older update arriving after a newer one changes nothing, and a redelivery is a no-op.
//!   A deleted user leaves a tombstone (its revision, no personal data), so a late
//!   `created` or `updated` does not bring it back. Tombstones are kept forever here; a real
//!   service would drop them after the stream's max age (7 days), when no older event can
//!   arrive any more.
//!
//! With a file configured, [`Projection::persist`] writes the whole model (write to a
//! temporary file, then rename) after each change, and [`Projection::open`] reads it back
//! at start: the group's durable consumer has acknowledged those events, so they will not
//! be delivered again.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use events::Event;
use serde::{Deserialize, Serialize};

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
enum Slot {
    Live(CatalogUser),
    Deleted { revision: u64 },
}

impl Slot {
    fn revision(&self) -> u64 {
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

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// organization id -> user id -> slot.
    organizations: BTreeMap<String, BTreeMap<String, Slot>>,
    /// Bumped on every change; compared with `saved` to know if a write is due.
    #[serde(skip)]
    generation: u64,
    #[serde(skip)]
    saved: u64,
}

/// The projection: in memory, optionally saved to a JSON file.
#[derive(Debug)]
pub struct Projection {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// Serializes file writes so that a newer snapshot is never overwritten by an older one.
    writer: tokio::sync::Mutex<()>,
}

impl Projection {
    /// An empty projection held in memory only.
    pub fn in_memory() -> Self {
        Self {
            state: Mutex::new(State::default()),
            file: None,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// A projection saved to `file`: loaded from it if it exists, empty otherwise.
    ///
    /// # Errors
    /// If the file exists but cannot be read or parsed.
    pub fn open(file: &Path) -> io::Result<Self> {
        let state = match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a projection file: {e}", file.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            state: Mutex::new(state),
            file: Some(file.to_owned()),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update below is a single map operation, so a panic elsewhere cannot leave
        // the data half-changed: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one `auth.user.*` event (see the module doc for the rules).
    ///
    /// # Errors
    /// [`ApplyError`], always permanent.
    pub fn apply(&self, event: &Event) -> Result<Applied, ApplyError> {
        let event_type = event.event_type().as_str();
        if ![USER_CREATED, USER_UPDATED, USER_DELETED].contains(&event_type) {
            return Ok(Applied::Ignored);
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
        let (user_id, revision, next) = match event_type {
            USER_CREATED => {
                let d: UserCreatedV1 = event.data_as().map_err(invalid)?;
                let workspace = default_workspace(&d.user_id, &d.display_name);
                let user = CatalogUser {
                    user_id: d.user_id.clone(),
                    email: d.email,
                    display_name: d.display_name,
                    roles: d.roles,
                    revision: d.revision,
                    workspace,
                };
                (d.user_id, d.revision, Slot::Live(user))
            }
            USER_UPDATED => {
                let d: UserUpdatedV1 = event.data_as().map_err(invalid)?;
                let user = CatalogUser {
                    user_id: d.user_id.clone(),
                    workspace: default_workspace(&d.user_id, &d.display_name),
                    email: d.email,
                    display_name: d.display_name,
                    roles: d.roles,
                    revision: d.revision,
                };
                (d.user_id, d.revision, Slot::Live(user))
            }
            _ => {
                let d: UserDeletedV1 = event.data_as().map_err(invalid)?;
                let slot = Slot::Deleted {
                    revision: d.revision,
                };
                (d.user_id, d.revision, slot)
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

        let mut state = self.state();
        let users = state
            .organizations
            .entry(event.organization_id().as_str().to_owned())
            .or_default();
        let previous = users.get(&user_id);
        if previous.is_some_and(|p| p.revision() >= revision) {
            return Ok(Applied::Stale);
        }
        let next = match (previous, next) {
            // An update keeps the workspace made at sign-up (its name does not follow renames).
            (Some(Slot::Live(old)), Slot::Live(mut new)) => {
                new.workspace = old.workspace.clone();
                Slot::Live(new)
            }
            (_, next) => next,
        };
        users.insert(user_id, next);
        state.generation += 1;
        Ok(Applied::Changed)
    }

    /// The live users of `organization_id` (empty for an organization never seen).
    pub fn catalog(&self, organization_id: &str) -> OrgCatalog {
        let state = self.state();
        let users = state
            .organizations
            .get(organization_id)
            .map(|users| {
                users
                    .values()
                    .filter_map(|s| match s {
                        Slot::Live(u) => Some(u.clone()),
                        Slot::Deleted { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        OrgCatalog {
            organization_id: organization_id.to_owned(),
            users,
        }
    }

    /// Writes the model to its file if it changed since the last write (nothing to do
    /// in memory). Called after every delivery, so that a write that failed is retried by
    /// the redelivery even though the model itself is already up to date.
    ///
    /// # Errors
    /// If the file cannot be written: a transient failure (disk full, permissions fixed
    /// later); the message is redelivered.
    pub async fn persist(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let _writing = self.writer.lock().await;
        let (generation, bytes) = {
            let state = self.state();
            if state.generation == state.saved {
                return Ok(());
            }
            let bytes = serde_json::to_vec_pretty(&*state).map_err(io::Error::other)?;
            (state.generation, bytes)
        };
        let file = file.clone();
        tokio::task::spawn_blocking(move || write_atomically(&file, &bytes))
            .await
            .map_err(io::Error::other)??;
        let mut state = self.state();
        state.saved = state.saved.max(generation);
        Ok(())
    }
}

fn default_workspace(user_id: &str, display_name: &str) -> Workspace {
    Workspace {
        id: format!("ws-{user_id}"),
        name: format!("{display_name}'s workspace"),
    }
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`:
/// a crash leaves the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
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

    fn names(p: &Projection) -> Vec<String> {
        p.catalog(ORG)
            .users
            .into_iter()
            .map(|u| u.display_name)
            .collect()
    }

    #[test]
    fn created_adds_the_user_with_a_default_workspace() {
        let p = Projection::in_memory();
        assert_eq!(p.apply(&created(1)).unwrap(), Applied::Changed);
        let users = p.catalog(ORG).users;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].user_id, ADA);
        assert_eq!(users[0].workspace.id, format!("ws-{ADA}"));
        assert_eq!(users[0].workspace.name, "Ada's workspace");
        assert!(p.catalog("org-other").users.is_empty());
    }

    #[test]
    fn a_redelivery_or_an_older_revision_changes_nothing() {
        let p = Projection::in_memory();
        p.apply(&created(1)).unwrap();
        assert_eq!(p.apply(&created(1)).unwrap(), Applied::Stale);
        assert_eq!(p.apply(&updated(3, "Ada K3")).unwrap(), Applied::Changed);
        // Revision 2 arrives late (it was retried): ignored.
        assert_eq!(p.apply(&updated(2, "Ada K2")).unwrap(), Applied::Stale);
        assert_eq!(names(&p), ["Ada K3"]);
        // The workspace made at sign-up stays.
        assert_eq!(p.catalog(ORG).users[0].workspace.name, "Ada's workspace");
    }

    #[test]
    fn deleted_removes_the_user_and_late_events_do_not_bring_it_back() {
        let p = Projection::in_memory();
        p.apply(&created(1)).unwrap();
        assert_eq!(p.apply(&deleted(2)).unwrap(), Applied::Changed);
        assert!(p.catalog(ORG).users.is_empty());
        assert_eq!(p.apply(&created(1)).unwrap(), Applied::Stale);
        assert!(p.catalog(ORG).users.is_empty());
        // Deleting a user never seen is a success.
        let q = Projection::in_memory();
        assert_eq!(q.apply(&deleted(4)).unwrap(), Applied::Changed);
    }

    #[test]
    fn an_update_before_its_create_creates_the_user() {
        let p = Projection::in_memory();
        p.apply(&updated(2, "Ada K")).unwrap();
        assert_eq!(p.apply(&created(1)).unwrap(), Applied::Stale);
        assert_eq!(names(&p), ["Ada K"]);
    }

    #[test]
    fn unknown_major_is_a_permanent_error_naming_the_version() {
        let p = Projection::in_memory();
        let v2 = event(
            USER_CREATED,
            "2.0",
            json!({"user_id": ADA, "emails": ["ada@acme.example"]}),
        );
        let err = p.apply(&v2).unwrap_err();
        assert!(
            matches!(err, ApplyError::UnsupportedVersion { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("2.0"), "{err}");
        assert!(p.catalog(ORG).users.is_empty());
    }

    #[test]
    fn bad_data_and_a_wrong_subject_are_permanent_errors() {
        let p = Projection::in_memory();
        let missing = event(USER_CREATED, "1.0", json!({"user_id": ADA}));
        assert!(matches!(
            p.apply(&missing),
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
            p.apply(&other_subject),
            Err(ApplyError::SubjectMismatch { .. })
        ));
    }

    #[test]
    fn other_user_types_are_ignored() {
        let p = Projection::in_memory();
        let suspended = event("auth.user.suspended", "7.0", json!({"user_id": ADA}));
        assert_eq!(p.apply(&suspended).unwrap(), Applied::Ignored);
    }

    #[tokio::test]
    async fn persisted_projection_is_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/projection.json");
        let p = Projection::open(&file).unwrap();
        p.persist().await.unwrap(); // nothing changed: nothing written
        assert!(!file.exists());
        p.apply(&created(1)).unwrap();
        p.apply(&deleted(2)).unwrap();
        let other = Event::builder(USER_CREATED)
            .source("auth-service")
            .organization(ORG)
            .data_json(json!({"user_id": "u-2", "email": "bo@acme.example",
                              "display_name": "Bo", "roles": [], "revision": 1}))
            .build()
            .unwrap();
        p.apply(&other).unwrap();
        p.persist().await.unwrap();

        let back = Projection::open(&file).unwrap();
        assert_eq!(back.catalog(ORG), p.catalog(ORG));
        assert_eq!(names(&back), ["Bo"]);
        // The tombstone came back too.
        assert_eq!(back.apply(&created(1)).unwrap(), Applied::Stale);

        std::fs::write(&file, b"not json").unwrap();
        assert!(Projection::open(&file).is_err());
    }
}
