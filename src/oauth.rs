//! The OAuth install flow: states in the database, browser binding, the
//! callback, and where the admin is sent afterwards.
//!
//! A state is stored only as its SHA-256, is single-use (consumed by one
//! conditional UPDATE, so two callbacks with one state install once),
//! expires, and is bound to the browser that opened `/install` through a
//! browser id cookie. The cookie is per browser, not per flow, so a second
//! tab does not break the first.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use secrecy::ExposeSecret;
use url::Url;

use crate::{
    config::{ServeSettings, endpoint_url},
    crypto::{random_token, sha256_hex},
    domain::{
        AccessToken, Actor, InstallMethod, Installation, Region, TokenOwner, WorkspaceId, now,
    },
    error::Error,
    installations::{Installations, StoreMode},
    intercom::IntercomError,
    persistence::entities::oauth_state,
};

/// Where an install started, which decides where the admin lands afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The App Store listing's direct installation URL.
    AppStore,
    /// Our own website.
    Website,
    /// A URL an internal service got from the gRPC API.
    Internal,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::AppStore => "app_store",
            Origin::Website => "website",
            Origin::Internal => "internal",
        }
    }

    fn from_db(value: &str) -> Self {
        match value {
            "website" => Origin::Website,
            "internal" => Origin::Internal,
            _ => Origin::AppStore,
        }
    }
}

/// Purpose of a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    Install,
    /// Re-authorizing one workspace; a token of any other workspace must not
    /// replace its token.
    Reauthorize(WorkspaceId),
}

/// The query of `GET /oauth/callback`.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// Reason a callback failed. Each variant has a message an admin can act
/// on, and none carries a code, state or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    NotConfigured,
    MissingState,
    UnknownState,
    UsedState,
    ExpiredState,
    OtherBrowser,
    AccessDenied,
    AuthorizeError(String),
    MissingCode,
    CodeRejected,
    IntercomUnavailable,
    WorkspaceMismatch { expected: String, actual: String },
    Internal,
}

impl FailureReason {
    /// Returns a short label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            FailureReason::NotConfigured => "not_configured",
            FailureReason::MissingState => "missing_state",
            FailureReason::UnknownState => "unknown_state",
            FailureReason::UsedState => "used_state",
            FailureReason::ExpiredState => "expired_state",
            FailureReason::OtherBrowser => "other_browser",
            FailureReason::AccessDenied => "access_denied",
            FailureReason::AuthorizeError(_) => "authorize_error",
            FailureReason::MissingCode => "missing_code",
            FailureReason::CodeRejected => "code_rejected",
            FailureReason::IntercomUnavailable => "intercom_unavailable",
            FailureReason::WorkspaceMismatch { .. } => "workspace_mismatch",
            FailureReason::Internal => "internal",
        }
    }

    pub fn admin_message(&self) -> String {
        match self {
            FailureReason::NotConfigured => {
                "This app's installation is not set up yet. Please contact the app's developer.".into()
            }
            FailureReason::MissingState | FailureReason::UnknownState => {
                "This install link is not valid. Please start the installation again.".into()
            }
            FailureReason::UsedState => {
                "This install link was already used. If the app is not installed, please start the installation again.".into()
            }
            FailureReason::ExpiredState => "This install link expired. Please start the installation again.".into(),
            FailureReason::OtherBrowser => {
                "This installation was started in another browser. Please finish it there, or start again in this browser.".into()
            }
            FailureReason::AccessDenied => {
                "The app was not installed because access was declined. Start the installation again to allow it.".into()
            }
            FailureReason::AuthorizeError(code) => {
                format!("Intercom could not authorize the app ({code}). Please start the installation again.")
            }
            FailureReason::MissingCode => {
                "Intercom did not send an authorization code. Please start the installation again.".into()
            }
            FailureReason::CodeRejected => {
                "Intercom did not accept the authorization, which may have expired. Please start the installation again.".into()
            }
            FailureReason::IntercomUnavailable => {
                "Intercom could not be reached to finish the installation. Please try again in a few minutes.".into()
            }
            FailureReason::WorkspaceMismatch { expected, actual } => format!(
                "You authorized workspace {actual}, but this link was for workspace {expected}. Switch to workspace {expected} in Intercom and open the link again."
            ),
            FailureReason::Internal => {
                "Something went wrong on our side. Please try again in a few minutes.".into()
            }
        }
    }
}

#[derive(Debug)]
pub struct CallbackFailure {
    pub origin: Origin,
    pub reason: FailureReason,
}

/// A flow waiting for an admin, handed to an internal caller.
pub struct Handoff {
    pub url: Url,
    pub expires_at: DateTime<Utc>,
}

pub struct OAuthFlows {
    installations: Arc<Installations>,
    public_url: Url,
    redirect_uri: Url,
    app_store_url: Url,
    website_success_url: Option<Url>,
    website_failure_url: Option<Url>,
    state_ttl: Duration,
}

impl OAuthFlows {
    pub fn new(installations: Arc<Installations>, settings: &ServeSettings) -> Self {
        Self {
            installations,
            redirect_uri: endpoint_url(&settings.public_url, "oauth/callback"),
            public_url: settings.public_url.clone(),
            app_store_url: settings.intercom_app_store_url.clone(),
            website_success_url: settings.website_success_url.clone(),
            website_failure_url: settings.website_failure_url.clone(),
            state_ttl: settings.oauth_state_ttl(),
        }
    }

    fn db(&self) -> &DatabaseConnection {
        self.installations.db()
    }

    pub fn is_configured(&self) -> bool {
        self.installations.intercom().credentials().is_some()
    }

    /// Starts a flow in the browser with id `browser_id` and returns
    /// Intercom's authorize URL for it.
    pub async fn start_in_browser(
        &self,
        origin: Origin,
        browser_id: &str,
    ) -> Result<Url, FailureReason> {
        if !self.is_configured() {
            return Err(FailureReason::NotConfigured);
        }
        let state = random_token();
        self.insert_state(&state, &Purpose::Install, origin, Some(browser_id))
            .await
            .map_err(|error| log_internal(&error))?;
        self.authorize_url(&state)
    }

    /// Starts a flow for an internal caller. The returned URL opens our
    /// `/install` page, which binds the first browser that opens it.
    pub async fn start_handoff(&self, purpose: Purpose) -> Result<Handoff, Error> {
        if !self.is_configured() {
            return Err(Error::FailedPrecondition(
                "OAuth is not configured; set INTERCOM_CLIENT_ID and INTERCOM_CLIENT_SECRET".into(),
            ));
        }
        let state = random_token();
        let expires_at = self
            .insert_state(&state, &purpose, Origin::Internal, None)
            .await?;
        let mut url = endpoint_url(&self.public_url, "install");
        url.query_pairs_mut().append_pair("state", &state);
        Ok(Handoff { url, expires_at })
    }

    /// Binds a handed-off flow to the browser opening it and returns Intercom's
    /// authorize URL. The same browser may open the link again.
    pub async fn resume_handoff(
        &self,
        state: &str,
        browser_id: &str,
    ) -> Result<Url, CallbackFailure> {
        let row = self.find_state(state).await?;
        let origin = Origin::from_db(&row.origin);
        let fail = |reason| CallbackFailure { origin, reason };
        if !self.is_configured() {
            return Err(fail(FailureReason::NotConfigured));
        }
        check_unconsumed(&row).map_err(fail)?;

        let browser_hash = sha256_hex(browser_id);
        if row.browser_hash.as_deref() != Some(browser_hash.as_str()) {
            let bound = oauth_state::Entity::update_many()
                .col_expr(oauth_state::Column::BrowserHash, Expr::value(browser_hash))
                .filter(oauth_state::Column::Id.eq(row.id))
                .filter(oauth_state::Column::BrowserHash.is_null())
                .exec(self.db())
                .await
                .map_err(|error| fail(log_internal(&error.into())))?;
            if bound.rows_affected != 1 {
                return Err(fail(FailureReason::OtherBrowser));
            }
        }
        self.authorize_url(state).map_err(fail)
    }

    /// Completes a flow: checks and consumes the state, exchanges the code,
    /// looks up the workspace with `GET /me`, and stores the installation.
    pub async fn complete(
        &self,
        params: CallbackParams,
        browser_id: Option<&str>,
    ) -> Result<(Installation, Origin), CallbackFailure> {
        let state = params
            .state
            .as_deref()
            .filter(|state| !state.is_empty())
            .ok_or(CallbackFailure {
                origin: Origin::AppStore,
                reason: FailureReason::MissingState,
            })?;
        let row = self.find_state(state).await?;
        let origin = Origin::from_db(&row.origin);
        let fail = |reason| CallbackFailure { origin, reason };

        let browser_hash = browser_id.map(sha256_hex);
        if row.browser_hash.is_none() || row.browser_hash != browser_hash {
            return Err(fail(FailureReason::OtherBrowser));
        }
        check_unconsumed(&row).map_err(fail)?;
        self.consume(&row).await.map_err(fail)?;

        if let Some(error) = params.error.filter(|error| !error.is_empty()) {
            return Err(fail(authorize_error(&error)));
        }
        let code = params
            .code
            .filter(|code| !code.is_empty())
            .ok_or(fail(FailureReason::MissingCode))?;
        if !self.is_configured() {
            return Err(fail(FailureReason::NotConfigured));
        }

        let purpose = match row.workspace_id {
            Some(workspace_id) => Purpose::Reauthorize(
                WorkspaceId::parse("workspace_id", &workspace_id)
                    .map_err(|error| fail(log_internal(&error)))?,
            ),
            None => Purpose::Install,
        };
        let installation = self
            .install_from_code(row.id, &code, &purpose)
            .await
            .map_err(fail)?;
        Ok((installation, origin))
    }

    async fn install_from_code(
        &self,
        state_id: i64,
        code: &str,
        purpose: &Purpose,
    ) -> Result<Installation, FailureReason> {
        let intercom = self.installations.intercom();
        let token = intercom.exchange_code(code).await.map_err(|error| {
            tracing::warn!(error = %error, "OAuth code exchange failed");
            match error {
                IntercomError::CodeRejected { .. } | IntercomError::Rejected { .. } => {
                    FailureReason::CodeRejected
                }
                _ => FailureReason::IntercomUnavailable,
            }
        })?;

        let owner = match intercom.me(&token, Region::Us).await {
            Ok(owner) => owner,
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    token_fingerprint = token.fingerprint(),
                    "GET /me failed after the OAuth code exchange; keeping the token pending"
                );
                self.keep_pending(state_id, &token).await;
                return Err(FailureReason::IntercomUnavailable);
            }
        };
        let installation = match self.store_for_owner(&owner, &token).await {
            Ok(installation) => installation,
            Err(error) => {
                log_internal(&error);
                self.keep_pending(state_id, &token).await;
                return Err(FailureReason::Internal);
            }
        };

        // The token belongs to the workspace /me named, so it was stored there
        // (it is a real install of that workspace). The workspace this flow
        // was for keeps its own token.
        if let Purpose::Reauthorize(expected) = purpose
            && *expected != owner.workspace_id
        {
            tracing::warn!(
                workspace_id = expected.as_str(),
                authorized_workspace_id = owner.workspace_id.as_str(),
                "re-authorization completed for another workspace"
            );
            return Err(FailureReason::WorkspaceMismatch {
                expected: expected.to_string(),
                actual: owner.workspace_id.to_string(),
            });
        }
        Ok(installation)
    }

    async fn store_for_owner(
        &self,
        owner: &TokenOwner,
        token: &AccessToken,
    ) -> Result<Installation, Error> {
        let actor = Actor(match &owner.admin_id {
            Some(admin_id) => format!("admin:{admin_id}"),
            None => "admin:unknown".into(),
        });
        let mode = StoreMode::Install(InstallMethod::OAuth);
        let (installation, _) = self
            .installations
            .store_token(owner, token, mode, &actor)
            .await?;
        Ok(installation)
    }

    /// Keeps a token whose workspace could not be stored yet on its state
    /// row, so no live token goes untracked. The token is not uninstalled at
    /// Intercom: that would also remove the app from a workspace that had it
    /// installed before this flow.
    async fn keep_pending(&self, state_id: i64, token: &AccessToken) {
        let cipher = self.installations.cipher();
        let sealed = cipher.encrypt(&pending_token_context(state_id), token.expose());
        let updated = oauth_state::Entity::update_many()
            .col_expr(
                oauth_state::Column::PendingTokenCiphertext,
                Expr::value(sealed),
            )
            .col_expr(
                oauth_state::Column::PendingTokenKeyId,
                Expr::value(cipher.key_id()),
            )
            .col_expr(
                oauth_state::Column::PendingTokenFingerprint,
                Expr::value(token.fingerprint()),
            )
            .filter(oauth_state::Column::Id.eq(state_id))
            .exec(self.db())
            .await;
        if let Err(error) = updated {
            // NOTE: with the database down the token cannot be kept, so it
            // stays live at Intercom until an admin installs again.
            tracing::error!(
                token_fingerprint = token.fingerprint(),
                error = %error,
                "failed to keep an OAuth token whose workspace is unknown; the token is untracked"
            );
        }
    }

    /// Retries `GET /me` for tokens kept by [`Self::keep_pending`], stores
    /// each one whose workspace Intercom names, and drops those Intercom
    /// rejects. Returns how many were resolved.
    pub async fn resolve_pending_tokens(&self) -> Result<u64, Error> {
        let pending = oauth_state::Entity::find()
            .filter(oauth_state::Column::PendingTokenCiphertext.is_not_null())
            .order_by_asc(oauth_state::Column::Id)
            .limit(100)
            .all(self.db())
            .await?;
        let mut resolved = 0;
        for row in pending {
            // One unreadable row must not keep the others from resolving.
            match self.resolve_pending_token(&row).await {
                Ok(true) => resolved += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    token_fingerprint = row.pending_token_fingerprint.as_deref(),
                    error = error.with_causes(),
                    "failed to resolve a pending OAuth token; will retry"
                ),
            }
        }
        Ok(resolved)
    }

    async fn resolve_pending_token(&self, row: &oauth_state::Model) -> Result<bool, Error> {
        let (Some(ciphertext), Some(key_id)) =
            (&row.pending_token_ciphertext, &row.pending_token_key_id)
        else {
            return Ok(false);
        };
        let secret = self
            .installations
            .cipher()
            .decrypt(&pending_token_context(row.id), key_id, ciphertext)
            .map_err(Error::internal)?;
        let token = AccessToken::parse("pending token", secret.expose_secret())?;

        match self.installations.intercom().me(&token, Region::Us).await {
            Ok(owner) if self.has_newer_token(&owner.workspace_id, row).await? => {
                // NOTE: the pending token stays live at Intercom, untracked;
                // revoking it would uninstall the app and kill the newer one.
                tracing::info!(
                    workspace_id = owner.workspace_id.as_str(),
                    token_fingerprint = token.fingerprint(),
                    "dropped a pending OAuth token: the workspace got a newer token since"
                );
            }
            Ok(owner) => {
                let installation = self.store_for_owner(&owner, &token).await?;
                tracing::info!(
                    workspace_id = installation.workspace_id,
                    token_fingerprint = token.fingerprint(),
                    "stored a pending OAuth token"
                );
            }
            Err(IntercomError::TokenRejected { .. }) => {
                tracing::info!(
                    token_fingerprint = token.fingerprint(),
                    "dropped a pending OAuth token Intercom rejects"
                );
            }
            Err(error) => {
                tracing::warn!(
                    token_fingerprint = token.fingerprint(),
                    error = %error,
                    "GET /me failed again for a pending OAuth token; will retry"
                );
                return Ok(false);
            }
        }
        oauth_state::Entity::update_many()
            .col_expr(
                oauth_state::Column::PendingTokenCiphertext,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(
                oauth_state::Column::PendingTokenKeyId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                oauth_state::Column::PendingTokenFingerprint,
                Expr::value(Option::<String>::None),
            )
            .filter(oauth_state::Column::Id.eq(row.id))
            .exec(self.db())
            .await?;
        Ok(true)
    }

    /// Returns whether `workspace_id` is active with a token stored after the
    /// flow of `row` obtained its pending token.
    async fn has_newer_token(
        &self,
        workspace_id: &WorkspaceId,
        row: &oauth_state::Model,
    ) -> Result<bool, Error> {
        let installation = match self.installations.get(workspace_id).await {
            Ok(installation) => installation,
            Err(Error::NotFound(_)) => return Ok(false),
            Err(error) => return Err(error),
        };
        let obtained_at = row.consumed_at.unwrap_or(row.created_at);
        let stored_at = installation
            .token_rotated_at
            .unwrap_or(installation.installed_at);
        Ok(installation.status == crate::domain::Status::Active && stored_at > obtained_at)
    }

    fn authorize_url(&self, state: &str) -> Result<Url, FailureReason> {
        self.installations
            .intercom()
            .authorize_url(state, &self.redirect_uri)
            .ok_or(FailureReason::NotConfigured)
    }

    pub fn success_url(&self, origin: Origin) -> Url {
        match (origin, &self.website_success_url) {
            (Origin::Website, Some(url)) => url.clone(),
            _ => {
                let mut url = self.app_store_url.clone();
                url.query_pairs_mut().append_pair("install_success", "true");
                url
            }
        }
    }

    pub fn failure_url(&self, origin: Origin, reason: &FailureReason) -> Url {
        let mut url = match (origin, &self.website_failure_url) {
            (Origin::Website, Some(url)) => url.clone(),
            _ => {
                let mut url = self.app_store_url.clone();
                url.query_pairs_mut()
                    .append_pair("install_success", "false");
                url
            }
        };
        url.query_pairs_mut()
            .append_pair("error_message", &reason.admin_message());
        url
    }

    async fn insert_state(
        &self,
        state: &str,
        purpose: &Purpose,
        origin: Origin,
        browser_id: Option<&str>,
    ) -> Result<DateTime<Utc>, Error> {
        let created_at = now();
        let ttl = chrono::Duration::from_std(self.state_ttl).map_err(Error::internal)?;
        let expires_at = created_at + ttl;
        let (purpose_name, workspace_id) = match purpose {
            Purpose::Install => ("install", None),
            Purpose::Reauthorize(workspace_id) => ("reauthorize", Some(workspace_id.to_string())),
        };
        oauth_state::ActiveModel {
            state_hash: Set(sha256_hex(state)),
            purpose: Set(purpose_name.to_owned()),
            workspace_id: Set(workspace_id),
            origin: Set(origin.as_str().to_owned()),
            browser_hash: Set(browser_id.map(sha256_hex)),
            created_at: Set(created_at),
            expires_at: Set(expires_at),
            consumed_at: Set(None),
            ..Default::default()
        }
        .insert(self.db())
        .await?;
        Ok(expires_at)
    }

    async fn find_state(&self, state: &str) -> Result<oauth_state::Model, CallbackFailure> {
        let found = oauth_state::Entity::find()
            .filter(oauth_state::Column::StateHash.eq(sha256_hex(state)))
            .one(self.db())
            .await;
        match found {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(CallbackFailure {
                origin: Origin::AppStore,
                reason: FailureReason::UnknownState,
            }),
            Err(error) => Err(CallbackFailure {
                origin: Origin::AppStore,
                reason: log_internal(&error.into()),
            }),
        }
    }

    /// Marks the state used with one conditional UPDATE, so of two concurrent
    /// callbacks only one changes a row.
    async fn consume(&self, row: &oauth_state::Model) -> Result<(), FailureReason> {
        let now = now();
        let consumed = oauth_state::Entity::update_many()
            .col_expr(oauth_state::Column::ConsumedAt, Expr::value(now))
            .filter(oauth_state::Column::Id.eq(row.id))
            .filter(oauth_state::Column::ConsumedAt.is_null())
            .filter(oauth_state::Column::ExpiresAt.gt(now))
            .exec(self.db())
            .await
            .map_err(|error| log_internal(&error.into()))?;
        if consumed.rows_affected == 1 {
            return Ok(());
        }
        if row.expires_at <= now {
            return Err(FailureReason::ExpiredState);
        }
        Err(FailureReason::UsedState)
    }

    /// Deletes states that expired more than a day ago, except those that
    /// keep a pending token. The day keeps recent ones around so a late
    /// callback still reads "expired", not "unknown".
    pub async fn delete_stale_states(&self) -> Result<u64, Error> {
        let cutoff = now() - chrono::Duration::days(1);
        let deleted = oauth_state::Entity::delete_many()
            .filter(oauth_state::Column::ExpiresAt.lt(cutoff))
            .filter(oauth_state::Column::PendingTokenCiphertext.is_null())
            .exec(self.db())
            .await?;
        Ok(deleted.rows_affected)
    }
}

/// Associated data that binds a pending token's ciphertext to its state row.
fn pending_token_context(state_id: i64) -> String {
    format!("oauth_state:{state_id}")
}

fn check_unconsumed(row: &oauth_state::Model) -> Result<(), FailureReason> {
    if row.consumed_at.is_some() {
        return Err(FailureReason::UsedState);
    }
    if row.expires_at <= now() {
        return Err(FailureReason::ExpiredState);
    }
    Ok(())
}

fn authorize_error(error: &str) -> FailureReason {
    if error == "access_denied" {
        return FailureReason::AccessDenied;
    }
    // Only a short, plain code is echoed back to the admin.
    let code: String = error
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || *character == '_')
        .take(40)
        .collect();
    FailureReason::AuthorizeError(if code.is_empty() {
        "unknown_error".into()
    } else {
        code
    })
}

fn log_internal(error: &Error) -> FailureReason {
    tracing::error!(error = error.with_causes(), "OAuth flow failed on our side");
    FailureReason::Internal
}
