//! `GET /install` and `GET /oauth/callback`.

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::{HttpState, parse_query, plain_text, redirect};
use crate::{
    crypto::random_token,
    oauth::{CallbackFailure, CallbackParams, FailureReason, Origin},
};

/// Cookie that identifies the admin's browser across an OAuth flow.
pub const BROWSER_COOKIE: &str = "intercom_installs_browser";

/// Length of a browser id from [`random_token`]: 32 bytes in unpadded base64url.
const BROWSER_ID_LEN: usize = 43;

/// `GET /install`: starts an install from the App Store (no parameters or
/// `from=app_store`) or our website (`from=website`), or resumes a flow that
/// the gRPC API handed out (`state=…`). Ends at Intercom's authorize page.
pub async fn install(
    State(state): State<HttpState>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_query(query.as_deref());
    let origin = match params.get("from").map(String::as_str) {
        None | Some("app_store") => Origin::AppStore,
        Some("website") => Origin::Website,
        Some(other) => {
            let truncated: String = other.chars().take(40).collect();
            return plain_text(
                StatusCode::BAD_REQUEST,
                format!("from: {truncated:?} is invalid; allowed values are app_store and website"),
            );
        }
    };
    let (jar, browser_id) = browser_id(jar, state.secure_cookies);

    if let Some(handed_off) = params.get("state").filter(|value| !value.is_empty()) {
        return match state.oauth.resume_handoff(handed_off, &browser_id).await {
            Ok(authorize_url) => (jar, redirect(&authorize_url)).into_response(),
            Err(failure) => {
                tracing::info!(
                    reason = failure.reason.label(),
                    "handed-off OAuth install could not start"
                );
                (
                    jar,
                    redirect(&state.oauth.failure_url(failure.origin, &failure.reason)),
                )
                    .into_response()
            }
        };
    }

    match state.oauth.start_in_browser(origin, &browser_id).await {
        Ok(authorize_url) => (jar, redirect(&authorize_url)).into_response(),
        Err(reason) => {
            tracing::warn!(reason = reason.label(), "OAuth install could not start");
            (jar, redirect(&state.oauth.failure_url(origin, &reason))).into_response()
        }
    }
}

/// `GET /oauth/callback`: where Intercom sends the admin back with `code`
/// and `state`, or `error`. Always ends in a redirect to a configured page.
pub async fn callback(
    State(state): State<HttpState>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let mut params = parse_query(query.as_deref());
    let callback = CallbackParams {
        state: params.remove("state"),
        code: params.remove("code"),
        error: params.remove("error"),
    };
    let browser_id = jar
        .get(BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_owned());

    // The flow runs on its own task: once the state is consumed and the code
    // exchanged, a browser that gives up must not stop it before the token
    // is stored or kept pending.
    let oauth = state.oauth.clone();
    let completed = state
        .tasks
        .run(async move { oauth.complete(callback, browser_id.as_deref()).await })
        .await
        .unwrap_or_else(|panic| {
            tracing::error!(error = %panic, "OAuth callback task panicked");
            Err(CallbackFailure {
                origin: Origin::AppStore,
                reason: FailureReason::Internal,
            })
        });
    match completed {
        Ok((installation, origin)) => {
            tracing::info!(
                workspace_id = installation.workspace_id,
                token_fingerprint = installation.token_fingerprint.as_deref(),
                outcome = "completed",
                "OAuth install completed"
            );
            state.metrics.record_oauth_callback("completed");
            redirect(&state.oauth.success_url(origin))
        }
        Err(failure) => {
            tracing::info!(outcome = failure.reason.label(), "OAuth install failed");
            state.metrics.record_oauth_callback(failure.reason.label());
            redirect(&state.oauth.failure_url(failure.origin, &failure.reason))
        }
    }
}

/// Returns the browser id from the cookie, or a new one set in the returned jar.
fn browser_id(jar: CookieJar, secure: bool) -> (CookieJar, String) {
    if let Some(cookie) = jar.get(BROWSER_COOKIE)
        && cookie.value().len() == BROWSER_ID_LEN
        && cookie
            .value()
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        let id = cookie.value().to_owned();
        return (jar, id);
    }
    let id = random_token();
    // Lax, because Intercom's redirect back is a top-level cross-site GET,
    // which carries Lax cookies but not Strict ones.
    let cookie = Cookie::build((BROWSER_COOKIE, id.clone()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build();
    (jar.add(cookie), id)
}
