use intercom_installs::proto::{self, ChangeOutcome, regenerate_response};
use tonic::Code;

use crate::helpers::{TestApp, app_store_failure_message, assert_app_store_success, query_value};

fn regenerate_request(workspace_id: &str, token: Option<&str>) -> proto::RegenerateRequest {
    proto::RegenerateRequest {
        workspace_id: workspace_id.into(),
        access_token: token.map(str::to_owned),
    }
}

#[tokio::test]
async fn regenerate_swaps_in_new_token() {
    let app = TestApp::spawn().await;
    let (_, before) = app.install_with_token("ws1", "US").await;
    let new_token = app.intercom.issue_token("ws1", "admin-1");

    let response = app
        .grpc
        .clone()
        .regenerate(regenerate_request("ws1", Some(&new_token)))
        .await
        .unwrap()
        .into_inner();

    app.assert_no_secrets_in(&format!("{response:?}"));
    let Some(regenerate_response::Result::Regenerated(regenerated)) = response.result else {
        panic!("expected a regenerated workspace");
    };
    assert_eq!(regenerated.outcome, ChangeOutcome::TokenReplaced as i32);
    let after = regenerated.workspace.unwrap();
    assert_ne!(after.token_fingerprint, before.token_fingerprint);
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(
        row.token_fingerprint.as_deref(),
        Some(after.token_fingerprint.as_str())
    );
    assert!(row.token_rotated_at.is_some());
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced"]
    );
    app.finish().await;
}

#[tokio::test]
async fn token_of_other_workspace_changes_nothing() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let row_before = app.installation("ws1").await.unwrap();
    app.intercom.add_workspace("ws2", "Other", "US");
    let other_token = app.intercom.issue_token("ws2", "admin-2");

    let status = app
        .grpc
        .clone()
        .regenerate(regenerate_request("ws1", Some(&other_token)))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "access_token: belongs to workspace ws2, not ws1; nothing was changed"
    );
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    assert!(app.installation("ws2").await.is_none());
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    app.finish().await;
}

#[tokio::test]
async fn regenerate_rejects_bad_requests() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.grpc
        .clone()
        .revoke(proto::RevokeRequest {
            workspace_id: "ws1".into(),
        })
        .await
        .unwrap();
    let token = app.intercom.issue_token("ws1", "admin-1");
    let cases = [
        (
            regenerate_request("", Some(&token)),
            Code::InvalidArgument,
            "workspace_id: is missing",
        ),
        (
            regenerate_request("ws/1", Some(&token)),
            Code::InvalidArgument,
            "workspace_id: character '/' at byte 2 is not allowed",
        ),
        (
            regenerate_request("ws1", Some("")),
            Code::InvalidArgument,
            "access_token: is empty",
        ),
        (
            regenerate_request("nope", Some(&token)),
            Code::NotFound,
            "workspace nope is not installed",
        ),
        (
            regenerate_request("nope", None),
            Code::NotFound,
            "workspace nope is not installed",
        ),
        (
            regenerate_request("ws1", Some(&token)),
            Code::FailedPrecondition,
            "workspace ws1 is revoked",
        ),
        (
            regenerate_request("ws1", None),
            Code::FailedPrecondition,
            "workspace ws1 is revoked",
        ),
    ];

    for (request, code, expected) in cases {
        let status = app.grpc.clone().regenerate(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
    }
    assert_eq!(app.event_kinds("ws1").await, ["installed", "revoked"]);
    app.finish().await;
}

async fn reauthorization_url(app: &TestApp, workspace_id: &str) -> url::Url {
    let response = app
        .grpc
        .clone()
        .regenerate(regenerate_request(workspace_id, None))
        .await
        .unwrap()
        .into_inner();
    let Some(regenerate_response::Result::Authorization(authorization)) = response.result else {
        panic!("expected an authorization");
    };
    let url = url::Url::parse(&authorization.authorize_url).unwrap();
    app.seen_states
        .lock()
        .unwrap()
        .push(query_value(&url, "state").unwrap());
    url
}

#[tokio::test]
async fn reauthorization_replaces_token() {
    let app = TestApp::spawn().await;
    let (_, before) = app.install_with_token("ws1", "US").await;
    app.intercom.sign_in("ws1", "admin-5");
    let url = reauthorization_url(&app, "ws1").await;
    assert!(
        url.as_str()
            .starts_with(&format!("{}/install?state=", app.http_url))
    );

    let mut browser = app.browser();
    let landing = app.walk_install(&mut browser, url.as_str()).await;

    assert_app_store_success(&app, &landing);
    let row = app.installation("ws1").await.unwrap();
    assert_ne!(
        row.token_fingerprint.as_deref(),
        Some(before.token_fingerprint.as_str())
    );
    assert_eq!(row.installed_by_admin_id.as_deref(), Some("admin-5"));
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced"]
    );
    assert_eq!(app.events("ws1").await[1].actor, "admin:admin-5");
    app.finish().await;
}

#[tokio::test]
async fn reauthorization_for_other_workspace_fails() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let row_before = app.installation("ws1").await.unwrap();
    app.intercom.add_workspace("ws2", "Other", "US");
    app.intercom.sign_in("ws2", "admin-2");
    let url = reauthorization_url(&app, "ws1").await;

    let mut browser = app.browser();
    let landing = app.walk_install(&mut browser, url.as_str()).await;

    let message = app_store_failure_message(&app, &landing);
    assert!(
        message.contains("You authorized workspace ws2, but this link was for workspace ws1"),
        "{message}"
    );
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    // The admin did install the app on ws2, so that token is tracked there.
    assert_eq!(app.installation("ws2").await.unwrap().status, "active");
    app.assert_no_untracked_tokens().await;
    app.finish().await;
}
