//! The database under the outbox and the inbox (feature `outbox`): one [`Database`] over
//! sqlx's `Any` driver, so that the same code runs on SQLite (the embedded default, WAL
//! mode) and on PostgreSQL (a `postgres://` URL).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use events::db::Database;
//! let db = Database::connect("sqlite://.data/app.db").await?;
//! db.migrate().await?; // the outbox and inbox tables
//! let mut tx = db.begin().await?;
//! // ... the business rows, then `Outbox::enqueue(&mut tx, &event)` ...
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// Which server a [`Database`] talks to; the few statements that differ pick by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// An SQLite file: one process owns it (one relay per outbox holds by construction).
    Sqlite,
    /// A PostgreSQL server: several processes may share it.
    Postgres,
}

/// Connecting to or migrating a database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres://` / `postgresql://`.
    #[error("unsupported database URL {0:?}: expected sqlite:PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the database directory {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server refused or could not be reached.
    #[error("database {url} failed")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed")]
    Migrate(#[source] MigrateError),
    /// A statement failed.
    #[error("database statement failed")]
    Sql(#[from] sqlx::Error),
}

/// A pool of connections to one SQLite file or PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// For the PostgreSQL LISTEN connection of the outbox relay.
    url: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("url", &redact(&self.url))
            .finish_non_exhaustive()
    }
}

/// How long a statement waits for SQLite's write lock before failing with "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Database {
    /// Connects to `url`: `sqlite:PATH` / `sqlite://PATH` (the file and its directory are
    /// created if missing; WAL mode with `synchronous = FULL`) or
    /// `postgres://user@host:port/db`. The pool holds up to 8 connections.
    ///
    /// # Errors
    /// [`DbError::UnsupportedUrl`] for another scheme, [`DbError::Connect`] if the first
    /// connection fails.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        install_default_drivers();
        let (backend, url_used) = if url.starts_with("sqlite:") {
            let with_mode = if url.contains("mode=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            create_parent_dir(url)?;
            (Backend::Sqlite, with_mode)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(DbError::UnsupportedUrl(redact(url)));
        };
        let opts = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10));
        let opts = match backend {
            Backend::Sqlite => opts.after_connect(|conn, _| {
                Box::pin(async move {
                    let busy = SQLITE_BUSY_TIMEOUT.as_millis();
                    conn.execute(
                        format!("PRAGMA busy_timeout = {busy}; PRAGMA synchronous = FULL;")
                            .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => opts,
        };
        let connect_err = |source| DbError::Connect {
            url: redact(url),
            source,
        };
        let pool = opts.connect(&url_used).await.map_err(connect_err)?;
        if backend == Backend::Sqlite {
            // Persistent in the file: set once, every later connection reads in WAL mode.
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(connect_err)?;
        }
        Ok(Self {
            pool,
            backend,
            url: url.to_owned(),
        })
    }

    /// Connects (as [`Database::connect`]) and migrates: the library's tables, then the
    /// caller's migrations for this backend (as [`Database::run_migrations`]).
    ///
    /// # Errors
    /// As [`Database::connect`] and [`Database::migrate`].
    pub async fn open(url: &str, sqlite: Migrator, postgres: Migrator) -> Result<Self, DbError> {
        let db = Self::connect(url).await?;
        db.migrate().await?;
        db.run_migrations(sqlite, postgres).await?;
        Ok(db)
    }

    /// Checks that the database answers (`SELECT 1`), e.g. for `/readyz`.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(|_| ())
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The server kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the caller's own queries (`$1`-style placeholders work on
    /// both backends).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that a transaction that reads before it writes never fails
    /// with "busy" half-way; writers queue up to the busy timeout instead.
    ///
    /// # Errors
    /// The driver's error if no connection is free in time or `BEGIN` fails.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Creates the outbox and inbox tables (idempotent; versions `2026010100000N`).
    ///
    /// # Errors
    /// [`DbError::Migrate`] if a migration fails.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.run_migrations(
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await
    }

    /// Runs the caller's migrations for this backend, next to the library's (both ignore
    /// the versions the other applied, so give yours versions of their own).
    ///
    /// # Errors
    /// [`DbError::Migrate`] if a migration fails.
    pub async fn run_migrations(
        &self,
        sqlite: Migrator,
        postgres: Migrator,
    ) -> Result<(), DbError> {
        let mut migrator = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await.map_err(DbError::Migrate)
    }

    /// Closes every connection (waits for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the directory of an SQLite URL's file (nothing for an in-memory database).
fn create_parent_dir(url: &str) -> Result<(), DbError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                dir: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) => {
                let user = auth.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch, as stored in the `*_ms` columns.
pub(crate) fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_drops_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("sqlite://a/b.db"), "sqlite://a/b.db");
    }
}
