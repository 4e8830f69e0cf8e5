//! Client for the Intercom endpoints this service calls: the OAuth token
//! exchange, `GET /me` and `POST /auth/uninstall`.
//!
//! Every call sends `Intercom-Version`, has a timeout, goes to the regional
//! API host of the workspace, and waits for or reports Intercom's rate limit.

mod error;
mod rate_limit;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

pub use error::{ErrorBody, IntercomError};
use rate_limit::RateLimits;

use crate::{
    config::{ServeSettings, endpoint_url},
    domain::{AccessToken, Region, TokenOwner, WorkspaceId},
    metrics::Metrics,
};

/// Maximum length, in characters, of a name or id kept from Intercom.
const MAX_TEXT_LEN: usize = 255;

/// Largest response body read from Intercom; a `/me` response is about 1 KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The app's OAuth client credentials from the Developer Hub.
pub struct OAuthCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

pub struct IntercomClient {
    http: reqwest::Client,
    api_us: Url,
    api_eu: Url,
    api_au: Url,
    oauth_url: Url,
    version: String,
    credentials: Option<OAuthCredentials>,
    rate_limits: RateLimits,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct MeResponse {
    id: Option<serde_json::Value>,
    app: Option<MeApp>,
}

#[derive(Deserialize)]
struct MeApp {
    id_code: Option<String>,
    name: Option<String>,
    region: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token: Option<String>,
}

impl IntercomClient {
    pub fn new(settings: &ServeSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.intercom_timeout())
            .connect_timeout(settings.intercom_timeout().min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("intercom-installs/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let credentials = match (
            &settings.intercom_client_id,
            &settings.intercom_client_secret,
        ) {
            (Some(client_id), Some(client_secret)) => Some(OAuthCredentials {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }),
            _ => None,
        };
        Ok(Self {
            http,
            api_us: settings.intercom_api_url.clone(),
            api_eu: settings.intercom_api_url_eu.clone(),
            api_au: settings.intercom_api_url_au.clone(),
            oauth_url: settings.intercom_oauth_url.clone(),
            version: settings.intercom_version.clone(),
            credentials,
            rate_limits: RateLimits::new(settings.rate_limit_max_wait()),
            metrics,
        })
    }

    pub fn credentials(&self) -> Option<&OAuthCredentials> {
        self.credentials.as_ref()
    }

    /// Intercom's authorize page for `state`, or `None` when OAuth is not configured.
    pub fn authorize_url(&self, state: &str, redirect_uri: &Url) -> Option<Url> {
        let credentials = self.credentials.as_ref()?;
        let mut url = self.oauth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &credentials.client_id)
            .append_pair("state", state)
            .append_pair("redirect_uri", redirect_uri.as_str());
        Some(url)
    }

    /// Exchanges an OAuth code for the workspace's access token.
    pub async fn exchange_code(&self, code: &str) -> Result<AccessToken, IntercomError> {
        let Some(credentials) = &self.credentials else {
            return Err(IntercomError::InvalidResponse(
                "OAuth client credentials are not configured".into(),
            ));
        };
        let url = endpoint_url(&self.api_us, "auth/eagle/token");
        let form = [
            ("code", code),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.expose_secret()),
        ];
        let (status, body) = self
            .send("token_exchange", "oauth-exchange", || {
                self.http.post(url.clone()).form(&form)
            })
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(IntercomError::CodeRejected {
                code: ErrorBody::parse(&body).code,
            });
        }
        if !status.is_success() {
            return Err(error::classify_other(status, &ErrorBody::parse(&body)));
        }

        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            IntercomError::InvalidResponse("token exchange response is not JSON".into())
        })?;
        let token = parsed
            .access_token
            .or(parsed.token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                IntercomError::InvalidResponse("token exchange response has no access_token".into())
            })?;
        AccessToken::parse("access_token", &token).map_err(|_| {
            IntercomError::InvalidResponse(
                "token exchange response has a malformed access_token".into(),
            )
        })
    }

    /// Asks `GET /me` which workspace and admin the token belongs to.
    pub async fn me(
        &self,
        token: &AccessToken,
        region: Region,
    ) -> Result<TokenOwner, IntercomError> {
        let checked_at = crate::domain::now();
        let url = endpoint_url(self.api_for(region), "me");
        let (status, body) = self
            .send("me", &token.fingerprint(), || {
                self.http.get(url.clone()).bearer_auth(token.expose())
            })
            .await?;
        if !status.is_success() {
            return Err(error::classify_token_call(status, &ErrorBody::parse(&body)));
        }

        let parsed: MeResponse = serde_json::from_slice(&body)
            .map_err(|_| IntercomError::InvalidResponse("/me response is not JSON".into()))?;
        let app = parsed
            .app
            .ok_or_else(|| IntercomError::InvalidResponse("/me response has no app".into()))?;
        let workspace_id = app
            .id_code
            .as_deref()
            .and_then(|id| WorkspaceId::parse("app.id_code", id).ok())
            .ok_or_else(|| {
                IntercomError::InvalidResponse("/me response has no valid app.id_code".into())
            })?;
        let admin_id = parsed.id.and_then(|id| match id {
            serde_json::Value::String(id) => Some(clean_text(&id)),
            serde_json::Value::Number(id) => Some(id.to_string()),
            _ => None,
        });
        Ok(TokenOwner {
            workspace_id,
            workspace_name: clean_text(app.name.as_deref().unwrap_or_default()),
            region: app
                .region
                .as_deref()
                .and_then(Region::from_intercom)
                .unwrap_or(Region::Us),
            admin_id,
            checked_at,
        })
    }

    /// Uninstalls the app from the token's workspace with `POST /auth/uninstall`.
    /// A 401 or a dead-token code comes back as [`IntercomError::TokenRejected`],
    /// which callers treat as already uninstalled.
    pub async fn uninstall(
        &self,
        token: &AccessToken,
        region: Region,
    ) -> Result<(), IntercomError> {
        let url = endpoint_url(self.api_for(region), "auth/uninstall");
        let (status, body) = self
            .send("uninstall", &token.fingerprint(), || {
                self.http.post(url.clone()).bearer_auth(token.expose())
            })
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(error::classify_token_call(status, &ErrorBody::parse(&body)))
    }

    fn api_for(&self, region: Region) -> &Url {
        match region {
            Region::Us => &self.api_us,
            Region::Eu => &self.api_eu,
            Region::Au => &self.api_au,
        }
    }

    /// Sends a request to `endpoint` (a metrics label) built by `build`,
    /// honouring the rate limit window of `limit_key`. A 429 is retried once when its window resets within the
    /// configured wait.
    async fn send(
        &self,
        endpoint: &'static str,
        limit_key: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(StatusCode, Bytes), IntercomError> {
        let mut retried = false;
        loop {
            self.rate_limits.wait_for(limit_key).await?;
            let sent = build()
                .header("Intercom-Version", &self.version)
                .header(header::ACCEPT, "application/json")
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    self.metrics.record_intercom_request(endpoint, None);
                    return Err(describe_transport_error(error));
                }
            };
            let status = response.status();
            self.metrics
                .record_intercom_request(endpoint, Some(status.as_u16()));
            self.rate_limits
                .record(limit_key, status, response.headers());
            let body = read_body(response).await?;

            if status == StatusCode::TOO_MANY_REQUESTS && !retried {
                retried = true;
                tracing::warn!(
                    status = status.as_u16(),
                    "Intercom rate limit reached; waiting for the window to reset"
                );
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(IntercomError::RateLimited {
                    retry_after: self.rate_limits.retry_after(limit_key),
                });
            }
            return Ok((status, body));
        }
    }
}

/// Drops control characters, which PostgreSQL rejects in text when one is
/// NUL, and cuts the text to [`MAX_TEXT_LEN`] characters.
fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_control())
        .take(MAX_TEXT_LEN)
        .collect()
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, IntercomError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(IntercomError::InvalidResponse(format!(
                "response is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Describes a transport failure without the URL, which carries nothing
/// secret today but is no business of callers.
fn describe_transport_error(error: reqwest::Error) -> IntercomError {
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        error.without_url().to_string()
    };
    IntercomError::Unreachable(reason)
}
