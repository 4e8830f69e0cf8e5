//! The rules for installations: storing tokens, rotating, revoking,
//! uninstall notifications, listing. Every change writes an event row in the
//! same transaction, and no Intercom call happens inside a transaction.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait, sea_query::Expr,
};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::{
    crypto::TokenCipher,
    domain::{
        AccessToken, Actor, ChangeOutcome, InstallMethod, Installation, Region, Status, TokenOwner,
        WorkspaceId, now,
    },
    error::Error,
    intercom::{IntercomClient, IntercomError},
    persistence::{
        entities::{installation, installation_event},
        is_unique_violation,
    },
};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

pub struct Installations {
    db: DatabaseConnection,
    cipher: TokenCipher,
    intercom: IntercomClient,
}

/// Whether storing a token may bring back an inactive installation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// An install: creates, replaces or reactivates.
    Install(InstallMethod),
    /// A rotation: the installation must exist and be active.
    Rotate,
}

/// Result of an uninstall notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallOutcome {
    Uninstalled,
    UnknownWorkspace,
    AlreadyInactive,
    /// Intercom still accepts the stored token, so the app is installed: the
    /// notification is late or forged.
    StillInstalled,
}

/// Filters and position of one page of `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: u64,
    pub page_token: Option<String>,
    pub status: Option<Status>,
    pub region: Option<Region>,
    pub install_method: Option<InstallMethod>,
}

pub struct Page {
    pub installations: Vec<Installation>,
    pub next_page_token: Option<String>,
}

impl Installations {
    pub fn new(db: DatabaseConnection, cipher: TokenCipher, intercom: IntercomClient) -> Self {
        Self {
            db,
            cipher,
            intercom,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn intercom(&self) -> &IntercomClient {
        &self.intercom
    }

    pub fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }

    /// Installs with a Developer Hub token: looks up its workspace with
    /// `GET /me` and stores the token there.
    pub async fn install_with_token(
        &self,
        token: &AccessToken,
        actor: &Actor,
    ) -> Result<(Installation, ChangeOutcome), Error> {
        let owner = self
            .intercom
            .me(token, Region::Us)
            .await
            .map_err(|error| token_check_error("access_token", error))?;
        self.store_token(
            &owner,
            token,
            StoreMode::Install(InstallMethod::DeveloperHub),
            actor,
        )
        .await
    }

    /// Swaps in a new token for `workspace_id` after `/me` confirms it belongs
    /// to that workspace. A token of another workspace changes nothing.
    pub async fn regenerate_with_token(
        &self,
        workspace_id: &WorkspaceId,
        token: &AccessToken,
        actor: &Actor,
    ) -> Result<(Installation, ChangeOutcome), Error> {
        let current = self.find_model(workspace_id).await?;
        ensure_active(&current, "regenerate its token")?;

        let region = parse_region(&current.region);
        let owner = self
            .intercom
            .me(token, region)
            .await
            .map_err(|error| token_check_error("access_token", error))?;
        if owner.workspace_id != *workspace_id {
            return Err(Error::invalid(
                "access_token",
                format!(
                    "belongs to workspace {}, not {workspace_id}; nothing was changed",
                    owner.workspace_id
                ),
            ));
        }
        self.store_token(&owner, token, StoreMode::Rotate, actor)
            .await
    }

    /// Stores `token` for the workspace `owner` describes, in one transaction
    /// with its event. A concurrent first insert of the same workspace makes
    /// one attempt fail on the unique key; it is retried once as an update.
    pub async fn store_token(
        &self,
        owner: &TokenOwner,
        token: &AccessToken,
        mode: StoreMode,
        actor: &Actor,
    ) -> Result<(Installation, ChangeOutcome), Error> {
        match self.try_store_token(owner, token, mode, actor).await {
            Err(StoreError::Db(error)) if is_unique_violation(&error) => self
                .try_store_token(owner, token, mode, actor)
                .await
                .map_err(Into::into),
            result => result.map_err(Into::into),
        }
    }

    async fn try_store_token(
        &self,
        owner: &TokenOwner,
        token: &AccessToken,
        mode: StoreMode,
        actor: &Actor,
    ) -> Result<(Installation, ChangeOutcome), StoreError> {
        let workspace_id = owner.workspace_id.as_str();
        let txn = self.db.begin().await?;
        let existing = installation::Entity::find()
            .filter(installation::Column::WorkspaceId.eq(workspace_id))
            .lock_exclusive()
            .one(&txn)
            .await?;

        let (model, outcome) = match existing {
            None => {
                let StoreMode::Install(method) = mode else {
                    return Err(Error::NotFound(workspace_id.to_owned()).into());
                };
                (
                    self.insert_installation(&txn, owner, token, method).await?,
                    ChangeOutcome::Installed,
                )
            }
            Some(current) => {
                if mode == StoreMode::Rotate {
                    ensure_active(&current, "regenerate its token")?;
                }
                ensure_not_deactivated_since(&current, owner.checked_at)?;
                if current.status == Status::Active.as_str()
                    && self.stored_token_equals(&current, token)
                {
                    txn.commit().await?;
                    return Ok((to_installation(&current), ChangeOutcome::Unchanged));
                }
                self.replace_token(&txn, current, owner, token, mode)
                    .await?
            }
        };

        record_event(
            &txn,
            workspace_id,
            event_kind(outcome),
            actor,
            model.token_fingerprint.as_deref(),
        )
        .await?;
        txn.commit().await?;
        tracing::info!(
            workspace_id,
            token_fingerprint = model.token_fingerprint.as_deref(),
            outcome = event_kind(outcome),
            "stored workspace token"
        );
        Ok((to_installation(&model), outcome))
    }

    async fn insert_installation(
        &self,
        txn: &DatabaseTransaction,
        owner: &TokenOwner,
        token: &AccessToken,
        method: InstallMethod,
    ) -> Result<installation::Model, sea_orm::DbErr> {
        let workspace_id = owner.workspace_id.as_str();
        let now = now();
        installation::ActiveModel {
            workspace_id: Set(workspace_id.to_owned()),
            name: Set(owner.workspace_name.clone()),
            region: Set(owner.region.as_str().to_owned()),
            status: Set(Status::Active.as_str().to_owned()),
            install_method: Set(method.as_str().to_owned()),
            installed_by_admin_id: Set(owner.admin_id.clone()),
            token_ciphertext: Set(Some(self.cipher.encrypt(workspace_id, token.expose()))),
            token_key_id: Set(Some(self.cipher.key_id().to_owned())),
            token_fingerprint: Set(Some(token.fingerprint())),
            installed_at: Set(now),
            token_rotated_at: Set(None),
            revoked_at: Set(None),
            uninstalled_at: Set(None),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(txn)
        .await
    }

    async fn replace_token(
        &self,
        txn: &DatabaseTransaction,
        current: installation::Model,
        owner: &TokenOwner,
        token: &AccessToken,
        mode: StoreMode,
    ) -> Result<(installation::Model, ChangeOutcome), sea_orm::DbErr> {
        let workspace_id = owner.workspace_id.as_str();
        let now = now();
        let reactivating = current.status != Status::Active.as_str();
        let admin_id = owner
            .admin_id
            .clone()
            .or_else(|| current.installed_by_admin_id.clone());

        // NOTE: the replaced token is not revoked at Intercom. Its only
        // revocation endpoint uninstalls the app from the workspace, which
        // would disable the new token as well.
        let mut active: installation::ActiveModel = current.into();
        active.name = Set(owner.workspace_name.clone());
        active.region = Set(owner.region.as_str().to_owned());
        active.status = Set(Status::Active.as_str().to_owned());
        if let StoreMode::Install(method) = mode {
            active.install_method = Set(method.as_str().to_owned());
        }
        active.installed_by_admin_id = Set(admin_id);
        active.token_ciphertext = Set(Some(self.cipher.encrypt(workspace_id, token.expose())));
        active.token_key_id = Set(Some(self.cipher.key_id().to_owned()));
        active.token_fingerprint = Set(Some(token.fingerprint()));
        active.updated_at = Set(now);
        let outcome = if reactivating {
            active.installed_at = Set(now);
            active.token_rotated_at = Set(None);
            active.revoked_at = Set(None);
            active.uninstalled_at = Set(None);
            ChangeOutcome::Reactivated
        } else {
            active.token_rotated_at = Set(Some(now));
            ChangeOutcome::TokenReplaced
        };
        Ok((active.update(txn).await?, outcome))
    }

    /// Revokes the app's access: `POST /auth/uninstall` with the workspace's
    /// token, then erases the token. Returns whether anything changed.
    pub async fn revoke(
        &self,
        workspace_id: &WorkspaceId,
        actor: &Actor,
    ) -> Result<(Installation, bool), Error> {
        let current = self.find_model(workspace_id).await?;
        if current.status != Status::Active.as_str() {
            return Ok((to_installation(&current), false));
        }
        let token = self.decrypt_token(&current)?;

        match self
            .intercom
            .uninstall(&token, parse_region(&current.region))
            .await
        {
            Ok(()) => {}
            Err(IntercomError::TokenRejected { code }) => tracing::info!(
                workspace_id = workspace_id.as_str(),
                code = code.as_deref(),
                "Intercom no longer accepts the token; marking the workspace revoked"
            ),
            Err(error) => return Err(intercom_call_error(error)),
        }

        let fingerprint = token.fingerprint();
        if self
            .deactivate(workspace_id, &fingerprint, Status::Revoked, actor)
            .await?
        {
            tracing::info!(
                workspace_id = workspace_id.as_str(),
                token_fingerprint = fingerprint,
                "revoked workspace"
            );
            return Ok((self.get(workspace_id).await?, true));
        }

        // Another request changed the row between the read and the update.
        let latest = self.find_model(workspace_id).await?;
        if latest.status != Status::Active.as_str() {
            return Ok((to_installation(&latest), false));
        }
        // A token checked with /me before the uninstall above is dead now,
        // although it was stored after it. Only a token Intercom still
        // accepts belongs to a genuine reinstall.
        let newer = self.decrypt_token(&latest)?;
        match self.intercom.me(&newer, parse_region(&latest.region)).await {
            Err(IntercomError::TokenRejected { .. }) => {
                if self
                    .deactivate(workspace_id, &newer.fingerprint(), Status::Revoked, actor)
                    .await?
                {
                    return Ok((self.get(workspace_id).await?, true));
                }
                Err(Error::Aborted(format!(
                    "workspace {workspace_id} changed again while it was being revoked; call Revoke again"
                )))
            }
            Ok(_) => Err(Error::Aborted(format!(
                "workspace {workspace_id} was reinstalled while it was being revoked; call Revoke again"
            ))),
            Err(error) => Err(intercom_call_error(error)),
        }
    }

    /// Handles Intercom's uninstall notification for `workspace_id`. The
    /// stored token decides: only when Intercom rejects it is the app gone,
    /// so a late or forged notification leaves a live installation alone.
    pub async fn handle_uninstall_notification(
        &self,
        workspace_id: &WorkspaceId,
        actor: &Actor,
    ) -> Result<UninstallOutcome, Error> {
        let Some(current) = self.find_optional(workspace_id).await? else {
            return Ok(UninstallOutcome::UnknownWorkspace);
        };
        if current.status != Status::Active.as_str() {
            return Ok(UninstallOutcome::AlreadyInactive);
        }
        let token = self.decrypt_token(&current)?;

        match self
            .intercom
            .me(&token, parse_region(&current.region))
            .await
        {
            Ok(_) => return Ok(UninstallOutcome::StillInstalled),
            Err(IntercomError::TokenRejected { .. }) => {}
            Err(error) => return Err(intercom_call_error(error)),
        }
        if self
            .deactivate(
                workspace_id,
                &token.fingerprint(),
                Status::Uninstalled,
                actor,
            )
            .await?
        {
            Ok(UninstallOutcome::Uninstalled)
        } else {
            // The token changed after the check: the workspace was reinstalled.
            Ok(UninstallOutcome::StillInstalled)
        }
    }

    /// Marks the workspace `status` and erases its token, but only while its
    /// stored token has `fingerprint`. Returns whether it did.
    async fn deactivate(
        &self,
        workspace_id: &WorkspaceId,
        fingerprint: &str,
        status: Status,
        actor: &Actor,
    ) -> Result<bool, Error> {
        let now = now();
        let timestamp_column = match status {
            Status::Revoked => installation::Column::RevokedAt,
            Status::Uninstalled => installation::Column::UninstalledAt,
            Status::Active => {
                return Err(Error::internal(anyhow::anyhow!(
                    "deactivate called with status active"
                )));
            }
        };

        let txn = self.db.begin().await?;
        let updated = installation::Entity::update_many()
            .col_expr(installation::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                installation::Column::TokenCiphertext,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(
                installation::Column::TokenKeyId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                installation::Column::TokenFingerprint,
                Expr::value(Option::<String>::None),
            )
            .col_expr(timestamp_column, Expr::value(now))
            .col_expr(installation::Column::UpdatedAt, Expr::value(now))
            .filter(installation::Column::WorkspaceId.eq(workspace_id.as_str()))
            .filter(installation::Column::Status.eq(Status::Active.as_str()))
            .filter(installation::Column::TokenFingerprint.eq(fingerprint))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        record_event(
            &txn,
            workspace_id.as_str(),
            status.as_str(),
            actor,
            Some(fingerprint),
        )
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Returns the installation, failing with `NotFound` or, when it is not
    /// active, `FailedPrecondition` naming `action`.
    pub async fn get_active(
        &self,
        workspace_id: &WorkspaceId,
        action: &str,
    ) -> Result<Installation, Error> {
        let current = self.find_model(workspace_id).await?;
        ensure_active(&current, action)?;
        Ok(to_installation(&current))
    }

    pub async fn get(&self, workspace_id: &WorkspaceId) -> Result<Installation, Error> {
        Ok(to_installation(&self.find_model(workspace_id).await?))
    }

    /// Returns one page of installations, oldest first. Pages are keyed by the row id,
    /// which only grows, so rows added while paging appear on a later page
    /// and never shift rows already returned.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, Error> {
        let page_size = match query.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size > MAX_PAGE_SIZE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("{size} is above the maximum of {MAX_PAGE_SIZE}"),
                ));
            }
            size => size,
        };
        let filters = FilterKey::of(query);
        let after_id = match &query.page_token {
            None => 0,
            Some(token) => decode_page_token(token, &filters)?,
        };

        let mut condition = Condition::all().add(installation::Column::Id.gt(after_id));
        if let Some(status) = query.status {
            condition = condition.add(installation::Column::Status.eq(status.as_str()));
        }
        if let Some(region) = query.region {
            condition = condition.add(installation::Column::Region.eq(region.as_str()));
        }
        if let Some(method) = query.install_method {
            condition = condition.add(installation::Column::InstallMethod.eq(method.as_str()));
        }
        let mut rows = installation::Entity::find()
            .filter(condition)
            .order_by_asc(installation::Column::Id)
            .limit(page_size + 1)
            .all(&self.db)
            .await?;

        let next_page_token = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|last| encode_page_token(last.id, &filters))
        } else {
            None
        };
        Ok(Page {
            installations: rows.iter().map(to_installation).collect(),
            next_page_token,
        })
    }

    async fn find_optional(
        &self,
        workspace_id: &WorkspaceId,
    ) -> Result<Option<installation::Model>, Error> {
        Ok(installation::Entity::find()
            .filter(installation::Column::WorkspaceId.eq(workspace_id.as_str()))
            .one(&self.db)
            .await?)
    }

    async fn find_model(&self, workspace_id: &WorkspaceId) -> Result<installation::Model, Error> {
        self.find_optional(workspace_id)
            .await?
            .ok_or_else(|| Error::NotFound(workspace_id.to_string()))
    }

    fn decrypt_token(&self, model: &installation::Model) -> Result<AccessToken, Error> {
        let (Some(ciphertext), Some(key_id)) = (&model.token_ciphertext, &model.token_key_id)
        else {
            return Err(Error::internal(anyhow::anyhow!(
                "active workspace {} has no stored token",
                model.workspace_id
            )));
        };
        let secret = self
            .cipher
            .decrypt(&model.workspace_id, key_id, ciphertext)
            .map_err(|error| {
                Error::internal(anyhow::Error::new(error).context(format!(
                    "failed to decrypt the token of workspace {}",
                    model.workspace_id
                )))
            })?;
        AccessToken::parse("stored token", secret.expose_secret()).map_err(|_| {
            Error::internal(anyhow::anyhow!(
                "stored token of workspace {} is malformed",
                model.workspace_id
            ))
        })
    }

    fn stored_token_equals(&self, model: &installation::Model, token: &AccessToken) -> bool {
        match self.decrypt_token(model) {
            Ok(stored) => bool::from(stored.expose().as_bytes().ct_eq(token.expose().as_bytes())),
            Err(error) => {
                tracing::warn!(
                    workspace_id = model.workspace_id,
                    error = format!("{error:#}"),
                    "failed to read the stored token; replacing it"
                );
                false
            }
        }
    }
}

enum StoreError {
    Db(sea_orm::DbErr),
    Domain(Error),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(error: sea_orm::DbErr) -> Self {
        StoreError::Db(error)
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        StoreError::Domain(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Db(error) => error.into(),
            StoreError::Domain(error) => error,
        }
    }
}

/// Rejects storing a token checked before the workspace was revoked or
/// uninstalled: the revoke uninstalled the app, which may have killed the
/// token after `/me` accepted it.
fn ensure_not_deactivated_since(
    model: &installation::Model,
    checked_at: DateTime<Utc>,
) -> Result<(), Error> {
    let deactivated_at = model.revoked_at.max(model.uninstalled_at);
    match deactivated_at {
        Some(deactivated_at) if deactivated_at >= checked_at => Err(Error::Aborted(format!(
            "workspace {} was {} while the token was being checked; check that the token still works and retry",
            model.workspace_id, model.status
        ))),
        _ => Ok(()),
    }
}

fn ensure_active(model: &installation::Model, action: &str) -> Result<(), Error> {
    if model.status == Status::Active.as_str() {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "workspace {} is {}; install it again with Install before you {action}",
        model.workspace_id, model.status
    )))
}

async fn record_event(
    txn: &DatabaseTransaction,
    workspace_id: &str,
    kind: &str,
    actor: &Actor,
    token_fingerprint: Option<&str>,
) -> Result<(), sea_orm::DbErr> {
    installation_event::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        kind: Set(kind.to_owned()),
        actor: Set(actor.0.clone()),
        token_fingerprint: Set(token_fingerprint.map(str::to_owned)),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map(|_| ())
}

fn event_kind(outcome: ChangeOutcome) -> &'static str {
    match outcome {
        ChangeOutcome::Installed => "installed",
        ChangeOutcome::Reactivated => "reactivated",
        ChangeOutcome::TokenReplaced => "token_replaced",
        ChangeOutcome::Unchanged => "unchanged",
    }
}

/// Maps a failed `/me` check of a token a caller passed in `field`.
pub fn token_check_error(field: &'static str, error: IntercomError) -> Error {
    match error {
        IntercomError::TokenRejected { code } => Error::invalid(
            field,
            format!(
                "Intercom rejected this token ({}); copy a current token from the Developer Hub",
                code.as_deref().unwrap_or("401 Unauthorized")
            ),
        ),
        other => intercom_call_error(other),
    }
}

/// Maps an Intercom failure that is not about a caller's input.
pub fn intercom_call_error(error: IntercomError) -> Error {
    match error {
        IntercomError::RateLimited { retry_after } => Error::RateLimited { retry_after },
        IntercomError::Rejected { .. }
        | IntercomError::CodeRejected { .. }
        | IntercomError::TokenRejected { .. } => Error::FailedPrecondition(error.to_string()),
        IntercomError::Unreachable(_) | IntercomError::InvalidResponse(_) => {
            Error::IntercomUnavailable(error)
        }
    }
}

pub fn parse_region(value: &str) -> Region {
    Region::from_intercom(value).unwrap_or(Region::Us)
}

pub fn to_installation(model: &installation::Model) -> Installation {
    Installation {
        workspace_id: model.workspace_id.clone(),
        name: model.name.clone(),
        region: parse_region(&model.region),
        status: Status::from_db(&model.status).unwrap_or(Status::Active),
        install_method: InstallMethod::from_db(&model.install_method)
            .unwrap_or(InstallMethod::DeveloperHub),
        installed_by_admin_id: model.installed_by_admin_id.clone(),
        token_fingerprint: model.token_fingerprint.clone(),
        installed_at: model.installed_at,
        token_rotated_at: model.token_rotated_at,
        revoked_at: model.revoked_at,
        uninstalled_at: model.uninstalled_at,
        updated_at: model.updated_at,
    }
}

/// The filters a page token was issued for, so a token cannot be replayed
/// with other filters and silently skip rows.
#[derive(PartialEq, Eq)]
struct FilterKey(String);

impl FilterKey {
    fn of(query: &ListQuery) -> Self {
        Self(format!(
            "{}|{}|{}",
            query.status.map(Status::as_str).unwrap_or(""),
            query.region.map(Region::as_str).unwrap_or(""),
            query
                .install_method
                .map(InstallMethod::as_str)
                .unwrap_or("")
        ))
    }
}

fn encode_page_token(last_id: i64, filters: &FilterKey) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}:{}", filters.0))
}

fn decode_page_token(token: &str, filters: &FilterKey) -> Result<i64, Error> {
    let invalid = || {
        Error::invalid(
            "page_token",
            "is not a token this service issued; pass next_page_token from the previous response unchanged",
        )
    };
    let decoded = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let mut parts = decoded.splitn(3, ':');
    let (Some("v1"), Some(id), Some(filter_part)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let id: i64 = id.parse().map_err(|_| invalid())?;
    if id < 0 {
        return Err(invalid());
    }
    if filter_part != filters.0 {
        return Err(Error::invalid(
            "page_token",
            "was issued for other filters; send the same status, region and install_method as the first request",
        ));
    }
    Ok(id)
}
