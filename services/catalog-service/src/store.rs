//! The `catalog_users` table: the projection's rows, on SQLite or PostgreSQL
//! (`migrations/{sqlite,postgres}`).

use events::db::{Backend, Database, DbError};
use sqlx::{AnyConnection, Row};

use crate::projection::{CatalogUser, Slot};

/// Opens the database at `url`, creating the outbox, inbox and `catalog_users` tables if
/// missing.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn open(url: &str) -> Result<Database, DbError> {
    Database::open(
        url,
        sqlx::migrate!("./migrations/sqlite"),
        sqlx::migrate!("./migrations/postgres"),
    )
    .await
}

fn slot_of(json: &str) -> Result<Slot, sqlx::Error> {
    serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// The slot of `(organization_id, user_id)`, locked for the rest of the transaction
/// (PostgreSQL `FOR UPDATE`; an SQLite write transaction holds the write lock already).
pub async fn load_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    organization_id: &str,
    user_id: &str,
) -> Result<Option<Slot>, sqlx::Error> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql =
        format!("SELECT slot FROM catalog_users WHERE organization_id = $1 AND user_id = $2{lock}");
    let row = sqlx::query(&sql)
        .bind(organization_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| slot_of(&r.try_get::<String, _>(0)?))
        .transpose()
}

/// Writes the slot of `(organization_id, user_id)`.
pub async fn save(
    conn: &mut AnyConnection,
    organization_id: &str,
    user_id: &str,
    slot: &Slot,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(slot).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let live = i64::from(matches!(slot, Slot::Live(_)));
    let revision = i64::try_from(slot.revision()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO catalog_users (organization_id, user_id, live, revision, slot) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, user_id) \
         DO UPDATE SET live = excluded.live, revision = excluded.revision, slot = excluded.slot",
    )
    .bind(organization_id)
    .bind(user_id)
    .bind(live)
    .bind(revision)
    .bind(json)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live users of `organization_id`, by user id.
pub async fn live_users(
    db: &Database,
    organization_id: &str,
) -> Result<Vec<CatalogUser>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT slot FROM catalog_users WHERE organization_id = $1 AND live = 1 ORDER BY user_id",
    )
    .bind(organization_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .filter_map(|r| match r.try_get::<String, _>(0).map(|j| slot_of(&j)) {
            Ok(Ok(Slot::Live(user))) => Some(Ok(user)),
            Ok(Ok(Slot::Deleted { .. })) => None,
            Ok(Err(e)) | Err(e) => Some(Err(e)),
        })
        .collect()
}
