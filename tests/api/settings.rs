use std::os::unix::fs::PermissionsExt;

use intercom_installs::startup::Application;
use intercom_stand_in::{Config, StandIn};

use crate::helpers::{captured_logs, settings_for, sqlite_path};

#[tokio::test]
async fn sqlite_without_key_creates_key_file() {
    let intercom = StandIn::start(Config::default()).await.unwrap();
    let database = sqlite_path();
    let url = format!("sqlite://{}?mode=rwc", database.display());
    let mut settings = settings_for(&intercom, &url, "unused");
    settings.token_encryption_key = None;
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    crate::helpers::capture_logs();

    let first = Application::build(settings.clone()).await.unwrap();
    drop(first);
    let second = Application::build(settings).await.unwrap();
    drop(second);

    let key_file = format!("{}.key", database.display());
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let announcements = captured_logs()
        .lines()
        .filter(|line| {
            line.contains("created a token encryption key file") && line.contains(&key_file)
        })
        .count();
    assert_eq!(announcements, 1);
    std::fs::remove_file(&key_file).ok();
    std::fs::remove_file(&database).ok();
}

#[tokio::test]
async fn postgres_without_key_is_refused() {
    let intercom = StandIn::start(Config::default()).await.unwrap();
    let mut settings = settings_for(&intercom, "postgres://nobody@127.0.0.1:1/none", "unused");
    settings.token_encryption_key = None;
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();

    let error = Application::build(settings)
        .await
        .err()
        .expect("build fails");

    assert!(
        format!("{error:#}").contains("TOKEN_ENCRYPTION_KEY is required"),
        "{error:#}"
    );
}

#[tokio::test]
async fn bad_encryption_key_is_refused() {
    let intercom = StandIn::start(Config::default()).await.unwrap();
    let database = sqlite_path();
    let url = format!("sqlite://{}?mode=rwc", database.display());
    let mut settings = settings_for(&intercom, &url, "c2hvcnQ=");
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();

    let error = Application::build(settings)
        .await
        .err()
        .expect("build fails");

    assert_eq!(
        format!("{error:#}"),
        "TOKEN_ENCRYPTION_KEY decodes to 5 bytes; it must be base64 of exactly 32 bytes"
    );
    std::fs::remove_file(&database).ok();
}

#[tokio::test]
async fn concurrent_migrations_all_succeed() {
    // Replicas that start together all run the migrations on one database.
    let (mut database, url) = crate::helpers::TestDatabase::create().await;

    let (first, second, third) = tokio::join!(
        intercom_installs::persistence::migrate(&url),
        intercom_installs::persistence::migrate(&url),
        intercom_installs::persistence::migrate(&url)
    );

    for result in [first, second, third] {
        let db = result.expect("migrations succeed");
        db.close().await.ok();
    }
    database.drop_database().await;
}
