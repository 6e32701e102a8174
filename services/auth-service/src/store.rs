//! The `users` table: the statements the users API runs, on SQLite or PostgreSQL
//! (`migrations/{sqlite,postgres}`).

use events::OrganizationId;
use events::db::{Backend, Database, DbError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::user::User;

/// Opens the database at `url`, creating the outbox, inbox and `users` tables if missing.
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

const COLUMNS: &str = "id, organization_id, email, name, roles, revision";

fn user_of(row: &AnyRow) -> Result<User, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let org: String = row.try_get("organization_id")?;
    let roles: String = row.try_get("roles")?;
    let revision: i64 = row.try_get("revision")?;
    Ok(User {
        id: row.try_get("id")?,
        organization_id: OrganizationId::new(&org).map_err(|e| decode(e.to_string()))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        roles: serde_json::from_str(&roles).map_err(|e| decode(e.to_string()))?,
        revision: u64::try_from(revision).map_err(|e| decode(e.to_string()))?,
    })
}

fn roles_json(user: &User) -> String {
    // A Vec<String> always serializes.
    serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".to_owned())
}

fn revision(user: &User) -> i64 {
    i64::try_from(user.revision).unwrap_or(i64::MAX)
}

/// True if `e` is the `(organization_id, email)` constraint (the only unique one a new id
/// can break).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Inserts a new user.
pub async fn insert(conn: &mut AnyConnection, user: &User) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, organization_id, email, name, roles, revision) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.id)
    .bind(user.organization_id.as_str())
    .bind(&user.email)
    .bind(&user.name)
    .bind(roles_json(user))
    .bind(revision(user))
    .execute(conn)
    .await?;
    Ok(())
}

/// The user `id`, locked for the rest of the transaction (PostgreSQL `FOR UPDATE`; an
/// SQLite write transaction already holds the database's write lock).
pub async fn load_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    id: &str,
) -> Result<Option<User>, sqlx::Error> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1{lock}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(user_of).transpose()
}

/// Writes every field of `user` (found by id).
pub async fn update(conn: &mut AnyConnection, user: &User) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $2, name = $3, roles = $4, revision = $5 WHERE id = $1")
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(roles_json(user))
        .bind(revision(user))
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes user `id`.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user `id`, if any.
pub async fn get(db: &Database, id: &str) -> Result<Option<User>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(user_of).transpose()
}

/// Up to `limit` users of `organization_id` with ids after `after`, by id (UUID v7: sign-up
/// order).
pub async fn list(
    db: &Database,
    organization_id: &OrganizationId,
    after: &str,
    limit: usize,
) -> Result<Vec<User>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(organization_id.as_str())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(user_of).collect()
}
