use hmac::{Hmac, Mac};
use intercom_stand_in::{Endpoint, Fault};
use reqwest::StatusCode;
use sha2::Sha256;

use crate::helpers::TestApp;

fn body_signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn hub_signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn notify(app: &TestApp, body: &str, headers: &[(&str, String)]) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/uninstall", app.http_url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn signed_notification_uninstalls() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");
    let body = r#"{"app_id":"ws1"}"#;
    let signature = body_signature(&app.intercom.client_secret(), body);

    let (status, text) = notify(&app, body, &[("x-body-signature", signature)]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.trim(), "uninstalled");
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(row.status, "uninstalled");
    assert!(row.uninstalled_at.is_some());
    assert_eq!(row.token_ciphertext, None);
    assert_eq!(row.token_fingerprint, None);
    let events = app.events("ws1").await;
    assert_eq!(events.last().unwrap().kind, "uninstalled");
    assert_eq!(
        events.last().unwrap().actor,
        "intercom:uninstall-notification"
    );
    app.finish().await;
}

#[tokio::test]
async fn hub_signed_notification_uninstalls() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");
    let body = r#"{"app_id":"ws1"}"#;
    let signature = hub_signature(&app.intercom.client_secret(), body);

    let (status, _) = notify(&app, body, &[("x-hub-signature", signature)]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.installation("ws1").await.unwrap().status, "uninstalled");
    app.finish().await;
}

#[tokio::test]
async fn wrongly_signed_notification_is_rejected() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");
    let row_before = app.installation("ws1").await.unwrap();
    let body = r#"{"app_id":"ws1"}"#;
    let cases = [
        ("x-body-signature", body_signature("wrong-secret", body)),
        ("x-body-signature", "not hex".to_owned()),
        ("x-hub-signature", hub_signature("wrong-secret", body)),
        (
            "x-hub-signature",
            body_signature(&app.intercom.client_secret(), body),
        ),
    ];

    for (header, signature) in cases {
        let (status, text) = notify(&app, body, &[(header, signature)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}");
        assert!(text.starts_with("signature is invalid"), "{text}");
    }
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    app.finish().await;
}

#[tokio::test]
async fn unknown_missing_and_repeated_ids_get_200() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");
    let cases = [
        (r#"{"app_id":"nobody"}"#, "unknown_workspace"),
        (r#"{}"#, "ignored: no app_id"),
        (r#"{"app_id":42}"#, "ignored: no app_id"),
        (r#"{"app_id":"bad id!"}"#, "ignored: invalid app_id"),
        (r#"{"app_id":"ws1"}"#, "uninstalled"),
        (r#"{"app_id":"ws1"}"#, "already_inactive"),
    ];

    for (body, expected) in cases {
        let (status, text) = notify(&app, body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(text.trim(), expected, "{body}");
    }
    assert_eq!(app.event_kinds("ws1").await, ["installed", "uninstalled"]);
    app.finish().await;
}

#[tokio::test]
async fn notification_after_reinstall_is_ignored() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    // The admin uninstalls, reinstalls at once, and the notification of the
    // uninstall arrives after the new token is stored.
    app.intercom.uninstall_app("ws1");
    let new_token = app.intercom.issue_token("ws1", "admin-1");
    app.grpc
        .clone()
        .install(crate::helpers::install_request(&new_token))
        .await
        .unwrap();
    let row_before = app.installation("ws1").await.unwrap();
    let body = r#"{"app_id":"ws1"}"#;
    let signature = body_signature(&app.intercom.client_secret(), body);

    let (status, text) = notify(&app, body, &[("x-body-signature", signature)]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.trim(), "still_installed");
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced"]
    );
    app.finish().await;
}

#[tokio::test]
async fn forged_notification_is_harmless() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let row_before = app.installation("ws1").await.unwrap();

    let (status, text) = notify(&app, r#"{"app_id":"ws1"}"#, &[]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.trim(), "still_installed");
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    app.finish().await;
}

#[tokio::test]
async fn notification_during_outage_asks_for_retry() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    app.intercom.uninstall_app("ws1");
    app.intercom
        .set_fault(Endpoint::Me, Some(Fault::BadGateway));
    let row_before = app.installation("ws1").await.unwrap();

    let (status, _) = notify(&app, r#"{"app_id":"ws1"}"#, &[]).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.installation("ws1").await.unwrap(), row_before);
    app.finish().await;
}

#[tokio::test]
async fn malformed_notification_is_bad_request() {
    let app = TestApp::spawn().await;

    let (status, text) = notify(&app, "app_id=ws1", &[]).await;
    let (oversized, _) = notify(
        &app,
        &format!(r#"{{"app_id":"{}"}}"#, "a".repeat(70_000)),
        &[],
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("body is not valid JSON"), "{text}");
    assert_eq!(oversized, StatusCode::PAYLOAD_TOO_LARGE);
    app.finish().await;
}
