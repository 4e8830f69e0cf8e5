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
    let db = connect(url)
        .await
        .map_err(|error| anyhow::anyhow!("failed to connect to the database: {error}"))?;
    apply_migrations(&db)
        .await
        .map_err(|error| anyhow::anyhow!("failed to run database migrations: {error}"))?;
    Ok(db)
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
