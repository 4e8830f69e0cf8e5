//! Schema migrations for intercom-installs. Each migration runs unchanged on
//! SQLite and PostgreSQL, so it uses only sea-query's portable column types.

pub use sea_orm_migration::prelude::*;

mod m20261204_000001_create_installations;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261204_000001_create_installations::Migration)]
    }
}
