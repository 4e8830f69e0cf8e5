//! Black-box tests: the real service on port 0, a real database, a tonic
//! client, reqwest, and a stand-in for Intercom on loopback.
//!
//! `cargo test` runs them on SQLite; with `TEST_DATABASE_URL` set to a
//! PostgreSQL URL, each test gets its own database on that server.

mod health;
mod helpers;
mod install;
mod listing;
mod oauth_callback;
mod races;
mod regenerate;
mod revoke;
mod settings;
mod uninstall_notification;
