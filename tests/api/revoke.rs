use intercom_installs::proto::{self, WorkspaceStatus};
use intercom_stand_in::{Endpoint, Fault};
use tonic::Code;

use crate::helpers::{TestApp, eventually};

fn revoke_request(workspace_id: &str) -> proto::RevokeRequest {
    proto::RevokeRequest {
        workspace_id: workspace_id.into(),
    }
}

#[tokio::test]
async fn revoke_uninstalls_and_erases_token() {
    let app = TestApp::spawn().await;
    let (token, _) = app.install_with_token("ws1", "US").await;

    let response = app
        .grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap()
        .into_inner();

    assert!(response.changed);
    let workspace = response.workspace.unwrap();
    assert_eq!(workspace.status, WorkspaceStatus::Revoked as i32);
    assert!(workspace.revoked_at.is_some());
    assert_eq!(workspace.token_fingerprint, "");
    assert!(!app.intercom.is_live(&token));
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(row.status, "revoked");
    assert_eq!(row.token_ciphertext, None);
    assert_eq!(row.token_key_id, None);
    assert_eq!(row.token_fingerprint, None);
    assert_eq!(app.event_kinds("ws1").await, ["installed", "revoked"]);
    app.finish().await;
}

#[tokio::test]
async fn revoke_of_dead_token_marks_revoked() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");

    let response = app
        .grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap()
        .into_inner();

    assert!(response.changed);
    assert_eq!(app.installation("ws1").await.unwrap().status, "revoked");
    app.finish().await;
}

#[tokio::test]
async fn revoke_with_bare_401_marks_revoked() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom
        .set_fault(Endpoint::Uninstall, Some(Fault::BareUnauthorized));

    let response = app
        .grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap()
        .into_inner();

    assert!(response.changed);
    assert_eq!(app.installation("ws1").await.unwrap().status, "revoked");
    app.finish().await;
}

#[tokio::test]
async fn revoke_during_outage_changes_nothing() {
    let app = TestApp::spawn().await;
    let (token, _) = app.install_with_token("ws1", "US").await;
    let row_before = app.installation("ws1").await.unwrap();

    for fault in [
        Fault::BadGateway,
        Fault::Delay(std::time::Duration::from_secs(5)),
    ] {
        app.intercom.set_fault(Endpoint::Uninstall, Some(fault));
        let status = app
            .grpc
            .clone()
            .revoke(revoke_request("ws1"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{fault:?}");
        assert!(
            status.message().starts_with("Intercom is unavailable"),
            "{}",
            status.message()
        );
    }
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    assert!(app.intercom.is_live(&token));
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    app.finish().await;
}

#[tokio::test]
async fn revoke_twice_changes_once() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap();

    let second = app
        .grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap()
        .into_inner();

    assert!(!second.changed);
    assert_eq!(
        second.workspace.unwrap().status,
        WorkspaceStatus::Revoked as i32
    );
    let uninstall_calls = app
        .intercom
        .requests()
        .iter()
        .filter(|request| request.path == "/auth/uninstall")
        .count();
    assert_eq!(uninstall_calls, 1);
    assert_eq!(app.event_kinds("ws1").await, ["installed", "revoked"]);
    app.finish().await;
}

#[tokio::test]
async fn revoke_uses_regional_host() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws-eu", "EU").await;
    app.install_with_token("ws-au", "AU").await;

    app.grpc
        .clone()
        .revoke(revoke_request("ws-eu"))
        .await
        .unwrap();
    app.grpc
        .clone()
        .revoke(revoke_request("ws-au"))
        .await
        .unwrap();

    let paths: Vec<String> = app
        .intercom
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert!(
        paths.contains(&"/eu/auth/uninstall".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/au/auth/uninstall".to_owned()),
        "{paths:?}"
    );
    assert!(!paths.contains(&"/auth/uninstall".to_owned()), "{paths:?}");
    app.finish().await;
}

#[tokio::test]
async fn revoke_rejects_bad_workspace_ids() {
    let app = TestApp::spawn().await;

    let missing = app
        .grpc
        .clone()
        .revoke(revoke_request(""))
        .await
        .unwrap_err();
    let invalid = app
        .grpc
        .clone()
        .revoke(revoke_request("ws 1"))
        .await
        .unwrap_err();
    let unknown = app
        .grpc
        .clone()
        .revoke(revoke_request("ws1"))
        .await
        .unwrap_err();

    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("workspace_id: is missing"));
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid
            .message()
            .starts_with("workspace_id: character ' ' at byte 2 is not allowed")
    );
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "workspace ws1 is not installed");
    app.finish().await;
}

#[tokio::test]
async fn revoke_past_deadline_still_records() {
    let app = TestApp::spawn().await;
    let (token, _) = app.install_with_token("ws1", "US").await;
    app.intercom.set_fault(
        Endpoint::Uninstall,
        Some(Fault::Delay(std::time::Duration::from_millis(1000))),
    );
    let mut request = tonic::Request::new(revoke_request("ws1"));
    request.set_timeout(std::time::Duration::from_millis(300));

    let status = app.grpc.clone().revoke(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Cancelled, "{}", status.message());
    let revoked = eventually(std::time::Duration::from_secs(4), || async {
        app.installation("ws1").await.unwrap().status == "revoked"
    })
    .await;
    assert!(revoked, "the revoke finished after the deadline passed");
    assert!(!app.intercom.is_live(&token));
    app.finish().await;
}
