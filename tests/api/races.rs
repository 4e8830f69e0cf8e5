//! Races between requests, pending OAuth tokens and shutdown.

use std::time::Duration;

use intercom_installs::persistence::entities::oauth_state;
use intercom_installs::{crypto::fingerprint, proto};
use intercom_stand_in::{Endpoint, Fault};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};

use crate::helpers::{TestApp, eventually, install_request};

/// Install checks its token with /me before Revoke's uninstall kills every
/// token of the workspace, and stores it before Revoke writes `revoked`.
#[tokio::test]
async fn install_between_uninstall_and_revoke_write() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let new_token = app.intercom.issue_token("ws1", "admin-1");
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::SlowResponse(Duration::from_millis(500))),
    );
    app.intercom.set_fault(
        Endpoint::Uninstall,
        Some(Fault::SlowResponse(Duration::from_millis(1500))),
    );
    let mut client = app.grpc.clone();
    let install_token = new_token.clone();
    let install =
        tokio::spawn(async move { client.install(install_request(&install_token)).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let revoke = app
        .grpc
        .clone()
        .revoke(proto::RevokeRequest {
            workspace_id: "ws1".into(),
        })
        .await;
    let install = install.await.unwrap();

    let row = app.installation("ws1").await.unwrap();
    assert!(install.is_ok(), "{install:?}");
    assert!(revoke.unwrap().into_inner().changed);
    assert!(!app.intercom.is_live(&new_token));
    assert_eq!(row.status, "revoked");
    assert_eq!(row.token_fingerprint, None);
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced", "revoked"]
    );
    app.finish().await;
}

/// A token kept pending by a failed /me is resolved after a newer token was
/// installed for the same workspace.
#[tokio::test]
async fn pending_token_keeps_newer_install() {
    let app = TestApp::spawn_with(|settings| settings.oauth_maintenance_interval_seconds = 3).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    app.intercom
        .set_fault(Endpoint::Me, Some(Fault::BadGateway));
    let mut browser = app.browser();
    app.walk_install(&mut browser, "/install").await;
    assert!(
        app.oauth_states().await[0]
            .pending_token_ciphertext
            .is_some()
    );
    app.intercom.set_fault(Endpoint::Me, None);

    let (newer_token, _) = app.install_with_token("ws1", "US").await;
    let resolved = eventually(Duration::from_secs(10), || async {
        app.oauth_states().await[0]
            .pending_token_ciphertext
            .is_none()
    })
    .await;

    assert!(resolved, "the pending token was not resolved");
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(
        row.token_fingerprint.as_deref(),
        Some(fingerprint(newer_token.as_bytes()).as_str()),
        "the older pending token replaced the newer Developer Hub token"
    );
    assert_eq!(row.install_method, "developer_hub");
    app.finish().await;
}

/// A request task blocked in the database when the grace period ends.
#[tokio::test]
async fn shutdown_ends_within_grace_when_database_blocks() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|url| url.starts_with("postgres")) {
        eprintln!("skipped: needs TEST_DATABASE_URL=postgres://…");
        return;
    }
    let mut app = TestApp::spawn_with(|settings| settings.shutdown_grace_seconds = 1).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    let token = app.intercom.issue_token("ws1", "admin-1");
    let blocker = app.db.begin().await.unwrap();
    blocker
        .execute_unprepared("LOCK TABLE installations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut client = app.grpc.clone();
    let install = tokio::spawn(async move { client.install(install_request(&token)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    app.begin_shutdown();
    let stopped = app.stops_within(Duration::from_secs(6)).await;

    blocker.rollback().await.unwrap();
    install.abort();
    app.finish().await;
    assert!(
        stopped,
        "the app did not stop within 6 s of a 1 s grace period"
    );
}

/// An OAuth callback whose /me is still running when the grace period ends.
#[tokio::test]
async fn callback_cut_by_shutdown_keeps_its_token() {
    let mut app = TestApp::spawn_with(|settings| settings.shutdown_grace_seconds = 1).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    let mut browser = app.browser();
    let authorize = app.start_install(&mut browser, "/install").await;
    let callback = app.authorize(&mut browser, &authorize).await;
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::Delay(Duration::from_millis(1800))),
    );
    let browse = tokio::spawn(async move {
        browser.get(callback.as_str()).await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.begin_shutdown();
    assert!(app.stops_within(Duration::from_secs(5)).await);
    // Give the callback task time to finish /me and try to write.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browse.abort();

    let states = app.oauth_states().await;
    app.assert_no_untracked_tokens().await;
    assert!(
        states
            .iter()
            .any(|state| state.pending_token_ciphertext.is_some())
            || app.installation_count().await == 1,
        "the exchanged token is neither stored nor kept pending"
    );
    app.finish().await;
}

/// One pending row that cannot be decrypted (sealed under an earlier key)
/// must not stop the maintenance task from resolving the others.
#[tokio::test]
async fn unreadable_pending_row_blocks_others() {
    let app = TestApp::spawn_with(|settings| settings.oauth_maintenance_interval_seconds = 1).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.add_workspace("ws2", "Beta", "US");
    app.intercom
        .set_fault(Endpoint::Me, Some(Fault::BadGateway));
    for (workspace_id, admin_id) in [("ws1", "admin-1"), ("ws2", "admin-2")] {
        app.intercom.sign_in(workspace_id, admin_id);
        let mut browser = app.browser();
        app.walk_install(&mut browser, "/install").await;
    }
    let mut states = app.oauth_states().await;
    states.sort_by_key(|state| state.id);
    assert!(
        states
            .iter()
            .all(|state| state.pending_token_ciphertext.is_some())
    );
    oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::PendingTokenKeyId,
            Expr::value("retired-key"),
        )
        .filter(oauth_state::Column::Id.eq(states[0].id))
        .exec(&app.db)
        .await
        .unwrap();

    app.intercom.set_fault(Endpoint::Me, None);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let ws2 = app.installation("ws2").await;
    assert!(
        ws2.is_some(),
        "the readable pending token of ws2 was never stored"
    );
    app.finish().await;
}
