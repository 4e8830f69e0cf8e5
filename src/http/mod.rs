//! The HTTP side: the OAuth install flow for admins' browsers, Intercom's
//! uninstall notification, health endpoints and metrics.

mod health;
mod oauth;
mod webhooks;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use percent_encoding::percent_decode_str;
use secrecy::SecretString;
use url::Url;

use crate::{
    installations::Installations, metrics::Metrics, oauth::OAuthFlows, tasks::RequestTasks,
};

/// Largest uninstall notification body accepted; Intercom's is about 30 bytes.
const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub installations: Arc<Installations>,
    pub oauth: Arc<OAuthFlows>,
    /// Key of uninstall notification signatures: the OAuth client secret.
    pub client_secret: Option<SecretString>,
    /// Whether cookies get the `Secure` attribute: true when `PUBLIC_URL` is https.
    pub secure_cookies: bool,
    pub metrics: Arc<Metrics>,
    pub tasks: RequestTasks,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/install", get(oauth::install))
        .route("/oauth/callback", get(oauth::callback))
        .route(
            "/webhooks/uninstall",
            post(webhooks::uninstall).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES)),
        )
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// Parses a query string. Unlike form decoding, `+` stays `+`: OAuth codes
/// may contain it and never contain spaces. A code ending in `=` keeps it,
/// because only the first `=` separates name and value. The first of
/// repeated names wins.
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode_str(name).decode_utf8_lossy().into_owned();
        let value = percent_decode_str(value).decode_utf8_lossy().into_owned();
        params.entry(name).or_insert(value);
    }
    params
}

/// A 303 redirect that keeps the URL out of caches and the next page's
/// `Referer`, because callback URLs carry OAuth codes.
pub fn redirect(to: &Url) -> Response {
    let Ok(location) = HeaderValue::from_str(to.as_str()) else {
        return plain_text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to build the redirect URL",
        );
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}

pub fn plain_text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        message.into() + "\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn query_keeps_trailing_equals_and_plus() {
        let params = parse_query(Some("code=abc+d/e==&state=s%3D1"));
        assert_eq!(params["code"], "abc+d/e==");
        assert_eq!(params["state"], "s=1");
    }

    #[test]
    fn query_first_repeated_name_wins() {
        let params = parse_query(Some("state=one&state=two&flag"));
        assert_eq!(params["state"], "one");
        assert_eq!(params["flag"], "");
    }
}
