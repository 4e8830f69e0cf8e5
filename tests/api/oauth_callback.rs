use std::time::Duration;

use chrono::Utc;
use intercom_installs::persistence::entities::oauth_state;
use intercom_stand_in::{Config, Decision, Endpoint, Fault, StandIn};
use reqwest::{StatusCode, header};
use sea_orm::{EntityTrait, sea_query::Expr};

use crate::helpers::{
    Browser, TestApp, app_store_failure_message, assert_app_store_success, eventually, query_value,
};

const BROWSER_COOKIE: &str = "intercom_installs_browser";

async fn app_with_admin() -> TestApp {
    let app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    app
}

/// Asserts the flow left no installation and no live token behind.
async fn assert_nothing_installed(app: &TestApp) {
    assert_eq!(app.installation_count().await, 0);
    assert!(
        app.intercom.live_tokens().is_empty(),
        "Intercom holds a live token nobody tracks"
    );
}

#[tokio::test]
async fn app_store_install_ends_on_success_page() {
    let app = app_with_admin().await;
    let mut browser = app.browser();

    let authorize = app.start_install(&mut browser, "/install").await;
    let callback = app.authorize(&mut browser, &authorize).await;
    let landing = browser.get_redirect(callback.as_str()).await;

    assert!(authorize.as_str().starts_with(&format!(
        "{}?client_id=stand-in-client&state=",
        app.intercom.oauth_url()
    )));
    assert_eq!(
        query_value(&authorize, "redirect_uri").as_deref(),
        Some(format!("{}/oauth/callback", app.http_url).as_str())
    );
    assert_app_store_success(&app, &landing);
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(row.status, "active");
    assert_eq!(row.install_method, "oauth");
    assert_eq!(row.name, "Acme");
    assert_eq!(row.installed_by_admin_id.as_deref(), Some("admin-3"));
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    assert_eq!(app.events("ws1").await[0].actor, "admin:admin-3");
    app.assert_no_untracked_tokens().await;
    app.finish().await;
}

#[tokio::test]
async fn install_sets_a_lax_http_only_cookie() {
    let app = app_with_admin().await;

    let response = Browser::new()
        .get(&format!("{}/install", app.http_url))
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with(&format!("{BROWSER_COOKIE}=")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
    app.finish().await;
}

#[tokio::test]
async fn website_install_returns_to_configured_pages() {
    let app = app_with_admin().await;
    let mut browser = app.browser();

    let success = app
        .walk_install(&mut browser, "/install?from=website&return_to=http://127.0.0.1:1/elsewhere&redirect_uri=http://127.0.0.1:1/x")
        .await;
    app.intercom.set_decision(Decision::Deny);
    let failure = app
        .walk_install(&mut browser, "/install?from=website")
        .await;

    assert_eq!(
        success.as_str(),
        format!("{}/website/installed", app.intercom.url())
    );
    assert!(failure.as_str().starts_with(&format!(
        "{}/website/install-failed?error_message=",
        app.intercom.url()
    )));
    assert!(
        query_value(&failure, "error_message")
            .unwrap()
            .contains("access was declined")
    );
    app.finish().await;
}

#[tokio::test]
async fn website_install_without_pages_uses_app_store() {
    let app = TestApp::spawn_with(|settings| {
        settings.website_success_url = None;
        settings.website_failure_url = None;
    })
    .await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    let mut browser = app.browser();

    let landing = app
        .walk_install(&mut browser, "/install?from=website")
        .await;

    assert_app_store_success(&app, &landing);
    app.finish().await;
}

#[tokio::test]
async fn install_with_unknown_origin_is_bad_request() {
    let app = app_with_admin().await;

    let response = Browser::new()
        .get(&format!("{}/install?from=partner", app.http_url))
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.text().await.unwrap().trim(),
        r#"from: "partner" is invalid; allowed values are app_store and website"#
    );
    assert!(app.oauth_states().await.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn raw_code_with_plus_and_equals_survives() {
    let intercom = StandIn::start(Config {
        encode_redirect_query: false,
        ..Config::default()
    })
    .await
    .unwrap();
    let app = TestApp::spawn_on(intercom, |_| {}).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    let mut browser = app.browser();

    let authorize = app.start_install(&mut browser, "/install").await;
    let callback = app.authorize(&mut browser, &authorize).await;
    let landing = browser.get_redirect(callback.as_str()).await;

    let raw_query = callback.query().unwrap();
    assert!(
        raw_query.contains('+') && raw_query.contains("==&"),
        "the stand-in sends the code raw"
    );
    assert_app_store_success(&app, &landing);
    assert!(app.installation("ws1").await.is_some());
    app.finish().await;
}

/// Starts a flow in `browser` and returns its callback URL, with the code
/// and state the stand-in issued.
async fn callback_url(app: &TestApp, browser: &mut Browser) -> url::Url {
    let authorize = app.start_install(browser, "/install").await;
    app.authorize(browser, &authorize).await
}

#[tokio::test]
async fn callback_state_failures() {
    let app = app_with_admin().await;
    let mut browser = app.browser();

    let missing_state = browser
        .get_redirect(&format!("{}/oauth/callback?code=abc", app.http_url))
        .await;
    let unknown_state = browser
        .get_redirect(&format!(
            "{}/oauth/callback?code=abc&state=not-a-state",
            app.http_url
        ))
        .await;

    assert!(app_store_failure_message(&app, &missing_state).contains("not valid"));
    assert!(app_store_failure_message(&app, &unknown_state).contains("not valid"));
    assert_nothing_installed(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn callback_replay_is_rejected() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;
    let first = browser.get_redirect(callback.as_str()).await;

    let second = browser.get_redirect(callback.as_str()).await;

    assert_app_store_success(&app, &first);
    let message = app_store_failure_message(&app, &second);
    assert!(message.contains("already used"), "{message}");
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    app.finish().await;
}

#[tokio::test]
async fn expired_state_says_expired() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;
    oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::seconds(1)),
        )
        .exec(&app.db)
        .await
        .unwrap();

    let landing = browser.get_redirect(callback.as_str()).await;

    let message = app_store_failure_message(&app, &landing);
    assert!(message.contains("expired"), "{message}");
    assert!(!message.contains("not valid"), "{message}");
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn state_from_other_browser_is_rejected() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;

    let mut other = Browser::new();
    let from_other = other.get_redirect(callback.as_str()).await;
    let mut forged = Browser::new();
    forged.set_cookie(BROWSER_COOKIE, &"A".repeat(43));
    let from_forged = forged.get_redirect(callback.as_str()).await;

    assert!(app_store_failure_message(&app, &from_other).contains("started in another browser"));
    assert!(app_store_failure_message(&app, &from_forged).contains("started in another browser"));
    assert_eq!(app.installation_count().await, 0);
    // The browser that started the flow can still finish it.
    let landing = browser.get_redirect(callback.as_str()).await;
    assert_app_store_success(&app, &landing);
    app.finish().await;
}

#[tokio::test]
async fn second_tab_keeps_first_working() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let first_tab = callback_url(&app, &mut browser).await;
    let second_tab = callback_url(&app, &mut browser).await;

    let second = browser.get_redirect(second_tab.as_str()).await;
    let first = browser.get_redirect(first_tab.as_str()).await;

    assert_app_store_success(&app, &second);
    assert_app_store_success(&app, &first);
    assert_eq!(
        app.event_kinds("ws1").await,
        ["installed", "token_replaced"]
    );
    app.finish().await;
}

#[tokio::test]
async fn concurrent_callbacks_install_once() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;
    let cookie = browser.cookie(BROWSER_COOKIE).unwrap();
    let mut first_browser = Browser::new();
    first_browser.set_cookie(BROWSER_COOKIE, &cookie);
    let mut second_browser = Browser::new();
    second_browser.set_cookie(BROWSER_COOKIE, &cookie);

    let (first, second) = tokio::join!(
        first_browser.get_redirect(callback.as_str()),
        second_browser.get_redirect(callback.as_str())
    );

    let successes = [&first, &second]
        .iter()
        .filter(|landing| query_value(landing, "install_success").as_deref() == Some("true"))
        .count();
    assert_eq!(successes, 1, "{first} {second}");
    let failure =
        if successes == 1 && query_value(&first, "install_success").as_deref() == Some("true") {
            second
        } else {
            first
        };
    assert!(app_store_failure_message(&app, &failure).contains("already used"));
    assert_eq!(app.event_kinds("ws1").await, ["installed"]);
    let exchanges = app
        .intercom
        .requests()
        .iter()
        .filter(|request| request.path == "/auth/eagle/token")
        .count();
    assert_eq!(exchanges, 1);
    app.finish().await;
}

#[tokio::test]
async fn denied_access_fails_and_consumes_state() {
    let app = app_with_admin().await;
    app.intercom.set_decision(Decision::Deny);
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;

    let landing = browser.get_redirect(callback.as_str()).await;

    assert_eq!(
        query_value(&callback, "error").as_deref(),
        Some("access_denied")
    );
    assert!(app_store_failure_message(&app, &landing).contains("access was declined"));
    assert!(app.oauth_states().await[0].consumed_at.is_some());
    assert_nothing_installed(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn other_authorize_error_is_reported() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let authorize = app.start_install(&mut browser, "/install").await;
    let state = query_value(&authorize, "state").unwrap();

    let landing = browser
        .get_redirect(&format!(
            "{}/oauth/callback?error=server_error%3Cscript%3E&state={state}",
            app.http_url
        ))
        .await;

    let message = app_store_failure_message(&app, &landing);
    assert!(message.contains("(server_errorscript)"), "{message}");
    assert_nothing_installed(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn missing_code_fails() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let authorize = app.start_install(&mut browser, "/install").await;
    let state = query_value(&authorize, "state").unwrap();

    let landing = browser
        .get_redirect(&format!("{}/oauth/callback?state={state}", app.http_url))
        .await;

    assert!(
        app_store_failure_message(&app, &landing).contains("did not send an authorization code")
    );
    assert_nothing_installed(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn rejected_code_fails() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;
    app.intercom.expire_codes();

    let landing = browser.get_redirect(callback.as_str()).await;

    assert!(app_store_failure_message(&app, &landing).contains("did not accept the authorization"));
    assert_nothing_installed(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn exchange_outages_fail() {
    let app = app_with_admin().await;

    for fault in [
        Fault::BadGateway,
        Fault::NotJson,
        Fault::Delay(std::time::Duration::from_secs(5)),
    ] {
        app.intercom.set_fault(Endpoint::TokenExchange, Some(fault));
        let mut browser = app.browser();
        let callback = callback_url(&app, &mut browser).await;
        let landing = browser.get_redirect(callback.as_str()).await;
        let message = app_store_failure_message(&app, &landing);
        assert!(
            message.contains("could not be reached"),
            "{fault:?}: {message}"
        );
    }
    app.intercom.set_fault(Endpoint::TokenExchange, None);
    assert_eq!(app.installation_count().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn me_failure_keeps_token_pending() {
    let app = TestApp::spawn_with(|settings| settings.oauth_maintenance_interval_seconds = 1).await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    app.intercom.sign_in("ws1", "admin-3");
    app.intercom
        .set_fault(Endpoint::Me, Some(Fault::BadGateway));
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;

    let landing = browser.get_redirect(callback.as_str()).await;

    let message = app_store_failure_message(&app, &landing);
    assert!(message.contains("could not be reached"), "{message}");
    assert_eq!(app.installation_count().await, 0);
    let issued = app.intercom.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert!(
        app.intercom.is_live(&issued[0]),
        "the token is not uninstalled"
    );
    let fingerprint = intercom_installs::crypto::fingerprint(issued[0].as_bytes());
    let states = app.oauth_states().await;
    assert_eq!(
        states[0].pending_token_fingerprint.as_deref(),
        Some(fingerprint.as_str())
    );

    // Once /me works again, the maintenance task stores the token.
    app.intercom.set_fault(Endpoint::Me, None);
    let stored = eventually(Duration::from_secs(10), || async {
        app.installation("ws1").await.is_some()
    })
    .await;
    assert!(stored, "the pending token was not stored");
    let row = app.installation("ws1").await.unwrap();
    assert_eq!(row.token_fingerprint.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(row.install_method, "oauth");
    assert_eq!(app.oauth_states().await[0].pending_token_ciphertext, None);
    app.assert_no_untracked_tokens().await;
    app.finish().await;
}

#[tokio::test]
async fn reinstall_during_me_outage_keeps_live_token() {
    let app = TestApp::spawn().await;
    let (stored_token, _) = app.install_with_token("ws1", "US").await;
    app.intercom.sign_in("ws1", "admin-5");
    app.intercom
        .set_fault(Endpoint::Me, Some(Fault::BadGateway));
    let mut browser = app.browser();

    let landing = app.walk_install(&mut browser, "/install").await;

    assert!(app_store_failure_message(&app, &landing).contains("could not be reached"));
    assert_eq!(app.installation("ws1").await.unwrap().status, "active");
    assert!(
        app.intercom.is_live(&stored_token),
        "the stored token of an active workspace stays live"
    );
    app.finish().await;
}

#[tokio::test]
async fn oauth_without_credentials_explains() {
    let app = TestApp::spawn_with(|settings| {
        settings.intercom_client_secret = None;
    })
    .await;

    let landing = Browser::new()
        .get_redirect(&format!("{}/install", app.http_url))
        .await;

    assert!(app_store_failure_message(&app, &landing).contains("not set up yet"));
    app.finish().await;
}

#[tokio::test]
async fn abandoned_callback_still_completes() {
    let app = app_with_admin().await;
    let mut browser = app.browser();
    let callback = callback_url(&app, &mut browser).await;
    app.intercom.set_fault(
        Endpoint::Me,
        Some(Fault::Delay(std::time::Duration::from_millis(1000))),
    );
    let impatient = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let cookie = browser.cookie(BROWSER_COOKIE).unwrap();

    let sent = impatient
        .get(callback.as_str())
        .header(header::COOKIE, format!("{BROWSER_COOKIE}={cookie}"))
        .send()
        .await;

    assert!(
        sent.is_err(),
        "the browser gives up before the callback ends"
    );
    let stored = eventually(Duration::from_secs(4), || async {
        app.installation("ws1").await.is_some()
    })
    .await;
    assert!(stored, "the install finished after the browser left");
    app.assert_no_untracked_tokens().await;
    app.finish().await;
}
