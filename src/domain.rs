//! Validated values that the rest of the service works with. Requests are
//! parsed into these at the boundary, so inner code never gets an empty
//! workspace id or a token with whitespace in it.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// Maximum workspace id length accepted. Intercom's `id_code` values are 8
/// characters; the margin allows for other formats without storing junk.
pub const MAX_WORKSPACE_ID_LEN: usize = 64;

/// Maximum access token length accepted. Intercom tokens are about 60 characters.
pub const MAX_TOKEN_LEN: usize = 1024;

/// An Intercom workspace id (`app.id_code` in `GET /me`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    /// Parses a workspace id: 1 to 64 ASCII letters, digits, `_` or `-`.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, Error> {
        if value.is_empty() {
            return Err(Error::invalid(
                field,
                "is missing; pass an Intercom workspace id such as \"ecahpwf5\"",
            ));
        }
        if value.len() > MAX_WORKSPACE_ID_LEN {
            return Err(Error::invalid(
                field,
                format!(
                    "is {} characters long; the maximum is {MAX_WORKSPACE_ID_LEN}",
                    value.len()
                ),
            ));
        }
        // The error names the first bad character, not the whole value: a
        // caller who pastes a token into this field must not get it echoed.
        let invalid = value.char_indices().find(|(_, character)| {
            !(character.is_ascii_alphanumeric() || matches!(character, '_' | '-'))
        });
        if let Some((position, character)) = invalid {
            return Err(Error::invalid(
                field,
                format!(
                    "character {character:?} at byte {position} is not allowed; use only ASCII letters, digits, '_' and '-'"
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// An Intercom access token. Its `Debug` output is redacted, and the only
/// way to read it is `expose`, which the Intercom client and the cipher call.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    /// Parses a token: 1 to 1024 visible ASCII characters. The error names the
    /// field and the rule but never repeats the value.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, Error> {
        if value.is_empty() {
            return Err(Error::invalid(
                field,
                "is missing; pass the access token from the Developer Hub",
            ));
        }
        if value.len() > MAX_TOKEN_LEN {
            return Err(Error::invalid(
                field,
                format!(
                    "is {} characters long; the maximum is {MAX_TOKEN_LEN}",
                    value.len()
                ),
            ));
        }
        if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(Error::invalid(
                field,
                "contains whitespace or characters outside visible ASCII; paste the token exactly as the Developer Hub shows it",
            ));
        }
        Ok(Self(SecretString::from(value.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// First 12 hex digits of the token's SHA-256: enough for support to tell
    /// tokens apart, too short and too one-way to recover the token.
    pub fn fingerprint(&self) -> String {
        crate::crypto::fingerprint(self.expose().as_bytes())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AccessToken({})", self.fingerprint())
    }
}

/// The Intercom data hosting region of a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    Us,
    Eu,
    Au,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Us => "US",
            Region::Eu => "EU",
            Region::Au => "AU",
        }
    }

    /// Parses Intercom's region code (`US`, `EU`, `AU`, any case).
    pub fn from_intercom(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "US" => Some(Region::Us),
            "EU" => Some(Region::Eu),
            "AU" => Some(Region::Au),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    /// Revoked through this service.
    Revoked,
    /// Uninstalled by an admin in Intercom.
    Uninstalled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Uninstalled => "uninstalled",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Status::Active),
            "revoked" => Some(Status::Revoked),
            "uninstalled" => Some(Status::Uninstalled),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMethod {
    /// A token copied from the Developer Hub of a workspace we belong to.
    DeveloperHub,
    OAuth,
}

impl InstallMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallMethod::DeveloperHub => "developer_hub",
            InstallMethod::OAuth => "oauth",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "developer_hub" => Some(InstallMethod::DeveloperHub),
            "oauth" => Some(InstallMethod::OAuth),
            _ => None,
        }
    }
}

/// An installation as callers see it: everything but the token.
#[derive(Clone, Debug, PartialEq)]
pub struct Installation {
    pub workspace_id: String,
    pub name: String,
    pub region: Region,
    pub status: Status,
    pub install_method: InstallMethod,
    pub installed_by_admin_id: Option<String>,
    pub token_fingerprint: Option<String>,
    pub installed_at: DateTime<Utc>,
    pub token_rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub uninstalled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Effect of storing a token on the installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    Installed,
    Reactivated,
    TokenReplaced,
    Unchanged,
}

/// The workspace an Intercom token belongs to, as `GET /me` reports it.
#[derive(Clone, Debug)]
pub struct TokenOwner {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub region: Region,
    pub admin_id: Option<String>,
    /// When the `/me` request that confirmed the token was sent. A revoke
    /// after this moment may have killed the token since.
    pub checked_at: DateTime<Utc>,
}

/// Author of a change, recorded in the audit history: `grpc:<peer address>`,
/// `admin:<intercom admin id>` or `intercom:uninstall-notification`.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// Current time at the microsecond precision that PostgreSQL stores, so a
/// value reads back equal on every backend.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
