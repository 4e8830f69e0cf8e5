use intercom_installs::proto::{
    self, ChangeOutcome, InstallMethod, Region, WorkspaceStatus, install_response,
};
use intercom_stand_in::{Endpoint, Fault};
use tonic::Code;

use crate::helpers::{TestApp, install_request, query_value};

#[tokio::test]
async fn install_with_token_stores_workspace() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Acme", "EU");
    let token = app.intercom.issue_token("ws1", "admin-7");

    let response = app
        .grpc
        .clone()
        .install(install_request(&token))
        .await
        .unwrap()
        .into_inner();

    app.assert_no_secrets_in(&format!("{response:?}"));
    let Some(install_response::Result::Installed(installed)) = response.result else {
        panic!("expected an installed workspace");
    };
    assert_eq!(installed.outcome, ChangeOutcome::Installed as i32);
    let workspace = installed.workspace.unwrap();
    assert_eq!(workspace.workspace_id, "ws1");
    assert_eq!(workspace.name, "Acme");
    assert_eq!(workspace.region, Region::Eu as i32);
    assert_eq!(workspace.status, WorkspaceStatus::Active as i32);
    assert_eq!(workspace.install_method, InstallMethod::DeveloperHub as i32);
    assert_eq!(workspace.installed_by_admin_id, "admin-7");
    assert_eq!(workspace.token_fingerprint.len(), 12);
    assert!(workspace.installed_at.is_some());

    let row = app.installation("ws1").await.unwrap();
    let ciphertext = row.token_ciphertext.unwrap();
    assert!(
        !ciphertext
            .windows(token.len())
            .any(|window| window == token.as_bytes())
    );
    assert!(row.token_key_id.is_some());
    assert_eq!(
        row.token_fingerprint.as_deref(),
        Some(workspace.token_fingerprint.as_str())
    );
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    assert!(
        app.events("ws1").await[0]
            .actor
            .starts_with("grpc:127.0.0.1:")
    );
    let logs = crate::helpers::captured_logs();
    let fingerprint_field = format!(r#""token_fingerprint":"{}""#, workspace.token_fingerprint);
    assert!(
        logs.lines()
            .any(|line| line.contains(&fingerprint_field)
                && line.contains(r#""workspace_id":"ws1""#))
    );
    app.finish().await;
}

#[tokio::test]
async fn install_sends_version_and_bearer() {
    let app = TestApp::spawn().await;
    let (token, _) = app.install_with_token("ws1", "US").await;

    let me_requests: Vec<_> = app
        .intercom
        .requests()
        .into_iter()
        .filter(|request| request.path == "/me")
        .collect();
    assert_eq!(me_requests.len(), 1);
    assert_eq!(me_requests[0].intercom_version.as_deref(), Some("2.14"));
    assert_eq!(
        me_requests[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    app.finish().await;
}

#[tokio::test]
async fn same_token_twice_is_unchanged() {
    let app = TestApp::spawn().await;
    let (token, first) = app.install_with_token("ws1", "US").await;

    let response = app
        .grpc
        .clone()
        .install(install_request(&token))
        .await
        .unwrap()
        .into_inner();

    let Some(install_response::Result::Installed(installed)) = response.result else {
        panic!("expected an installed workspace");
    };
    assert_eq!(installed.outcome, ChangeOutcome::Unchanged as i32);
    assert_eq!(installed.workspace.unwrap().updated_at, first.updated_at);
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    app.finish().await;
}

#[tokio::test]
async fn new_token_replaces_old_in_place() {
    let app = TestApp::spawn().await;
    let (_, first) = app.install_with_token("ws1", "US").await;
    let row_before = app.installation("ws1").await.unwrap();
    let second_token = app.intercom.issue_token("ws1", "admin-2");

    let response = app
        .grpc
        .clone()
        .install(install_request(&second_token))
        .await
        .unwrap()
        .into_inner();

    let Some(install_response::Result::Installed(installed)) = response.result else {
        panic!("expected an installed workspace");
    };
    assert_eq!(installed.outcome, ChangeOutcome::TokenReplaced as i32);
    let workspace = installed.workspace.unwrap();
    assert_ne!(workspace.token_fingerprint, first.token_fingerprint);
    assert!(workspace.token_rotated_at.is_some());
    let row_after = app.installation("ws1").await.unwrap();
    assert_eq!(row_after.id, row_before.id);
    assert_eq!(app.installation_count().await, 1);
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced"]
    );
    app.finish().await;
}

#[tokio::test]
async fn rejected_token_is_invalid_argument() {
    let app = TestApp::spawn().await;

    let status = app
        .grpc
        .clone()
        .install(install_request("dG9rOjunknown="))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("access_token: Intercom rejected this token"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("dG9rOjunknown="));
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn malformed_requests_name_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (proto::InstallRequest { method: None }, "method: is missing"),
        (install_request(""), "access_token: is missing"),
        (
            install_request("has space"),
            "access_token: contains whitespace",
        ),
        (
            install_request(&"x".repeat(1025)),
            "access_token: is 1025 characters long; the maximum is 1024",
        ),
    ];

    for (request, expected) in cases {
        let status = app.grpc.clone().install(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
    }
    assert!(app.intercom.requests().is_empty());
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn intercom_outage_is_unavailable() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    let token = app.intercom.issue_token("ws1", "admin-1");

    for fault in [
        Fault::BadGateway,
        Fault::NotJson,
        Fault::Delay(std::time::Duration::from_secs(5)),
    ] {
        app.intercom.set_fault(Endpoint::Me, Some(fault));
        let status = app
            .grpc
            .clone()
            .install(install_request(&token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{fault:?}");
        assert!(
            status.message().starts_with("Intercom is unavailable"),
            "{}",
            status.message()
        );
    }
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn short_rate_limit_is_waited_out() {
    let app = TestApp::spawn().await;
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::RateLimited {
            reset_after_secs: 1,
            remaining_times: 1,
        }),
    );

    let (_, workspace) = app.install_with_token("ws1", "US").await;

    assert_eq!(workspace.workspace_id, "ws1");
    let me_calls = app
        .intercom
        .requests()
        .iter()
        .filter(|request| request.path == "/me")
        .count();
    assert_eq!(me_calls, 2);
    app.finish().await;
}

#[tokio::test]
async fn long_rate_limit_is_unavailable() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    let token = app.intercom.issue_token("ws1", "admin-1");
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::RateLimited {
            reset_after_secs: 60,
            remaining_times: 5,
        }),
    );

    let status = app
        .grpc
        .clone()
        .install(install_request(&token))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("rate limit"),
        "{}",
        status.message()
    );
    let me_calls = app
        .intercom
        .requests()
        .iter()
        .filter(|request| request.path == "/me")
        .count();
    assert_eq!(
        me_calls, 1,
        "a window that resets after the maximum wait is not retried"
    );
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

fn oauth_install_request() -> proto::InstallRequest {
    proto::InstallRequest {
        method: Some(proto::install_request::Method::Oauth(
            proto::OAuthInstall {},
        )),
    }
}

/// Starts an OAuth install through the gRPC API and returns its authorization.
async fn start_oauth_install(app: &TestApp) -> proto::Authorization {
    let response = app
        .grpc
        .clone()
        .install(oauth_install_request())
        .await
        .unwrap()
        .into_inner();
    let Some(install_response::Result::Authorization(authorization)) = response.result else {
        panic!("expected an authorization");
    };
    let url = url::Url::parse(&authorization.authorize_url).unwrap();
    app.seen_states
        .lock()
        .unwrap()
        .push(query_value(&url, "state").unwrap());
    authorization
}

#[tokio::test]
async fn oauth_install_returns_handoff_url() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws9", "Globex", "US");
    app.intercom.sign_in("ws9", "admin-9");

    let authorization = start_oauth_install(&app).await;

    assert!(authorization.expires_at.is_some());
    let url = url::Url::parse(&authorization.authorize_url).unwrap();
    assert!(
        url.as_str()
            .starts_with(&format!("{}/install?state=", app.http_url))
    );
    let mut browser = app.browser();
    let landing = app.walk_install(&mut browser, url.as_str()).await;
    crate::helpers::assert_app_store_success(&app, &landing);
    let row = app.installation("ws9").await.unwrap();
    assert_eq!(row.install_method, "oauth");
    assert_eq!(row.installed_by_admin_id.as_deref(), Some("admin-9"));
    app.finish().await;
}

#[tokio::test]
async fn handoff_url_binds_first_browser() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws9", "Globex", "US");
    app.intercom.sign_in("ws9", "admin-9");
    let authorization = start_oauth_install(&app).await;
    let url = url::Url::parse(&authorization.authorize_url).unwrap();

    let mut first = app.browser();
    let authorize = app.start_install(&mut first, url.as_str()).await;
    let mut second = app.browser();
    let landing = second.get_redirect(url.as_str()).await;

    assert!(authorize.as_str().starts_with(&app.intercom.oauth_url()));
    let message = crate::helpers::app_store_failure_message(&app, &landing);
    assert!(message.contains("started in another browser"), "{message}");
    app.finish().await;
}

#[tokio::test]
async fn oauth_install_without_credentials_fails() {
    let app = TestApp::spawn_with(|settings| {
        settings.intercom_client_id = None;
    })
    .await;
    let status = app
        .grpc
        .clone()
        .install(oauth_install_request())
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("INTERCOM_CLIENT_ID"),
        "{}",
        status.message()
    );
    app.finish().await;
}

#[tokio::test]
async fn control_characters_in_names_are_dropped() {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Ac\u{0}me\n", "US");
    let token = app.intercom.issue_token("ws1", "admin\u{0}-1");

    let response = app.grpc.clone().install(install_request(&token)).await;

    assert!(response.is_ok(), "{response:?}");
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(row.name, "Acme");
    assert_eq!(row.installed_by_admin_id.as_deref(), Some("admin-1"));
    app.finish().await;
}

#[tokio::test]
async fn install_racing_revoke_is_aborted() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let new_token = app.intercom.issue_token("ws1", "admin-1");
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::SlowResponse(std::time::Duration::from_millis(1000))),
    );
    let mut client = app.grpc.clone();
    let install = tokio::spawn(async move { client.install(install_request(&new_token)).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let revoke = app
        .grpc
        .clone()
        .revoke(proto::RevokeRequest {
            workspace_id: "ws1".into(),
        })
        .await
        .unwrap();
    let status = install.await.unwrap().unwrap_err();

    assert!(revoke.into_inner().changed);
    assert_eq!(status.code(), Code::Aborted, "{}", status.message());
    assert!(
        status
            .message()
            .starts_with("workspace ws1 was revoked while the token was being checked")
    );
    assert_eq!(app.installation("ws1").await.unwrap().status, "revoked");
    assert_eq!(app.event_kinds("ws1").await, ["installed", "revoked"]);
    app.finish().await;
}
