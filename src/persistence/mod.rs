//! Database access through sea-orm: connecting, migrating and the queries
//! shared by the installation and OAuth code.

pub mod entities;

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

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

/// Connects to `url` and applies every pending migration.
pub async fn migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = connect(url)
        .await
        .map_err(|error| anyhow::anyhow!("failed to connect to the database: {error}"))?;
    Migrator::up(&db, None)
        .await
        .map_err(|error| anyhow::anyhow!("failed to run database migrations: {error}"))?;
    Ok(db)
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

pub fn backend(db: &DatabaseConnection) -> DbBackend {
    db.get_database_backend()
}
