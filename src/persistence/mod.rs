//! Database access through sea-orm: connecting, migrating and the queries
//! shared by the installation and OAuth code.

pub mod entities;

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};

/// Connects to `url`. SQLite gets a single connection: it allows one writer
/// at a time anyway, and one connection keeps concurrent transactions from
/// failing with "database is locked".
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5));
    if is_sqlite(url) {
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|sqlite| sqlite.busy_timeout(Duration::from_secs(5)));
    } else {
        options.max_connections(10);
    }
    Database::connect(options).await
}

/// Key of the PostgreSQL advisory lock that serializes migrations, so
/// replicas starting together do not create the same tables at once.
const MIGRATION_LOCK_KEY: i64 = 0x696e_7374_616c_6c73;

/// Connects to `url` and applies every pending migration.
pub async fn migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = connect(url).await.map_err(|error| {
        let reason = redact_password(&error.to_string(), url);
        anyhow::anyhow!("failed to connect to the database: {reason}")
    })?;
    apply_migrations(&db).await.map_err(|error| {
        let reason = redact_password(&error.to_string(), url);
        anyhow::anyhow!("failed to run database migrations: {reason}")
    })?;
    Ok(db)
}

/// Replaces the password of the database `url` in `text`, because driver
/// errors may quote the whole URL.
fn redact_password(text: &str, url: &str) -> String {
    match url_password(url) {
        Some(password) => text.replace(password, "REDACTED"),
        None => text.to_owned(),
    }
}

/// Returns the password in `scheme://user:password@host…`, parsed by hand
/// because a malformed URL must be redacted too.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

async fn apply_migrations(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        return apply_sqlite_migrations(db).await;
    }
    // The lock is held until the transaction ends, and the migrations run
    // inside it, so a second replica waits and then finds nothing pending.
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    ))
    .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// Runs the migrations inside `BEGIN IMMEDIATE`, which takes SQLite's write
/// lock (waiting up to the busy timeout), so a second process migrating the
/// same file waits and then finds nothing pending. The statements share one
/// connection because the SQLite pool has exactly one.
async fn apply_sqlite_migrations(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("BEGIN IMMEDIATE").await?;
    match Migrator::up(db, None).await {
        Ok(()) => db.execute_unprepared("COMMIT").await.map(|_| ()),
        Err(error) => {
            db.execute_unprepared("ROLLBACK").await.ok();
            Err(error)
        }
    }
}

pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Runs a trivial query, for readiness and health.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// Returns whether `error` is a unique constraint violation, which a
/// concurrent insert of the same key causes.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted_even_in_malformed_urls() {
        let url = "postgres://app:S3cret@127.0.0.1:notaport/db";
        let message = format!("invalid port in {url}");

        let redacted = redact_password(&message, url);

        assert_eq!(
            redacted,
            "invalid port in postgres://app:REDACTED@127.0.0.1:notaport/db"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(url_password("postgres://app@host/db"), None);
        assert_eq!(url_password("sqlite://x.db?mode=rwc"), None);
        assert_eq!(redact_password("text", "postgres://host/db"), "text");
    }
}
