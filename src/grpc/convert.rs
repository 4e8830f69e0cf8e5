//! Conversions between protobuf messages and domain types. Requests are
//! parsed here, so handlers only see valid values.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{
    domain::{
        AccessToken, ChangeOutcome, InstallMethod, Installation, Region, Status, WorkspaceId,
    },
    error::Error,
    installations::ListQuery,
    oauth::Handoff,
    proto,
};

pub fn workspace(installation: &Installation) -> proto::Workspace {
    proto::Workspace {
        workspace_id: installation.workspace_id.clone(),
        name: installation.name.clone(),
        region: region(installation.region) as i32,
        status: status(installation.status) as i32,
        install_method: install_method(installation.install_method) as i32,
        installed_by_admin_id: installation
            .installed_by_admin_id
            .clone()
            .unwrap_or_default(),
        token_fingerprint: installation.token_fingerprint.clone().unwrap_or_default(),
        installed_at: Some(timestamp(installation.installed_at)),
        token_rotated_at: installation.token_rotated_at.map(timestamp),
        revoked_at: installation.revoked_at.map(timestamp),
        uninstalled_at: installation.uninstalled_at.map(timestamp),
        updated_at: Some(timestamp(installation.updated_at)),
    }
}

pub fn installed(installation: &Installation, outcome: ChangeOutcome) -> proto::InstalledWorkspace {
    let outcome = match outcome {
        ChangeOutcome::Installed => proto::ChangeOutcome::Installed,
        ChangeOutcome::Reactivated => proto::ChangeOutcome::Reactivated,
        ChangeOutcome::TokenReplaced => proto::ChangeOutcome::TokenReplaced,
        ChangeOutcome::Unchanged => proto::ChangeOutcome::Unchanged,
    };
    proto::InstalledWorkspace {
        workspace: Some(workspace(installation)),
        outcome: outcome as i32,
    }
}

pub fn authorization(handoff: &Handoff) -> proto::Authorization {
    proto::Authorization {
        authorize_url: handoff.url.to_string(),
        expires_at: Some(timestamp(handoff.expires_at)),
    }
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn region(region: Region) -> proto::Region {
    match region {
        Region::Us => proto::Region::Us,
        Region::Eu => proto::Region::Eu,
        Region::Au => proto::Region::Au,
    }
}

fn status(status: Status) -> proto::WorkspaceStatus {
    match status {
        Status::Active => proto::WorkspaceStatus::Active,
        Status::Revoked => proto::WorkspaceStatus::Revoked,
        Status::Uninstalled => proto::WorkspaceStatus::Uninstalled,
    }
}

fn install_method(method: InstallMethod) -> proto::InstallMethod {
    match method {
        InstallMethod::DeveloperHub => proto::InstallMethod::DeveloperHub,
        InstallMethod::OAuth => proto::InstallMethod::Oauth,
    }
}

/// Action requested by an `Install` request.
pub enum InstallCommand {
    WithToken(AccessToken),
    StartOAuth,
}

impl TryFrom<proto::InstallRequest> for InstallCommand {
    type Error = Error;

    fn try_from(request: proto::InstallRequest) -> Result<Self, Error> {
        match request.method {
            Some(proto::install_request::Method::AccessToken(token)) => Ok(
                InstallCommand::WithToken(AccessToken::parse("access_token", &token)?),
            ),
            Some(proto::install_request::Method::Oauth(_)) => Ok(InstallCommand::StartOAuth),
            None => Err(Error::invalid(
                "method",
                "is missing; set access_token (a Developer Hub token) or oauth (to start an OAuth install)",
            )),
        }
    }
}

/// Action requested by a `Regenerate` request.
pub struct RegenerateCommand {
    pub workspace_id: WorkspaceId,
    pub token: Option<AccessToken>,
}

impl TryFrom<proto::RegenerateRequest> for RegenerateCommand {
    type Error = Error;

    fn try_from(request: proto::RegenerateRequest) -> Result<Self, Error> {
        let workspace_id = WorkspaceId::parse("workspace_id", &request.workspace_id)?;
        let token = match request.access_token.as_deref() {
            None => None,
            Some("") => {
                return Err(Error::invalid(
                    "access_token",
                    "is empty; pass the new token, or leave the field unset to get a re-authorization URL",
                ));
            }
            Some(token) => Some(AccessToken::parse("access_token", token)?),
        };
        Ok(Self {
            workspace_id,
            token,
        })
    }
}

impl TryFrom<proto::ListWorkspacesRequest> for ListQuery {
    type Error = Error;

    fn try_from(request: proto::ListWorkspacesRequest) -> Result<Self, Error> {
        let page_size = u64::try_from(request.page_size).map_err(|_| {
            Error::invalid(
                "page_size",
                format!(
                    "{} is negative; pass 1 to 1000, or 0 for 50",
                    request.page_size
                ),
            )
        })?;
        let status = match proto::WorkspaceStatus::try_from(request.status) {
            Ok(proto::WorkspaceStatus::Unspecified) => None,
            Ok(proto::WorkspaceStatus::Active) => Some(Status::Active),
            Ok(proto::WorkspaceStatus::Revoked) => Some(Status::Revoked),
            Ok(proto::WorkspaceStatus::Uninstalled) => Some(Status::Uninstalled),
            Err(_) => return Err(unknown_enum("status", request.status, "0 to 3")),
        };
        let region = match proto::Region::try_from(request.region) {
            Ok(proto::Region::Unspecified) => None,
            Ok(proto::Region::Us) => Some(Region::Us),
            Ok(proto::Region::Eu) => Some(Region::Eu),
            Ok(proto::Region::Au) => Some(Region::Au),
            Err(_) => return Err(unknown_enum("region", request.region, "0 to 3")),
        };
        let install_method = match proto::InstallMethod::try_from(request.install_method) {
            Ok(proto::InstallMethod::Unspecified) => None,
            Ok(proto::InstallMethod::DeveloperHub) => Some(InstallMethod::DeveloperHub),
            Ok(proto::InstallMethod::Oauth) => Some(InstallMethod::OAuth),
            Err(_) => {
                return Err(unknown_enum(
                    "install_method",
                    request.install_method,
                    "0 to 2",
                ));
            }
        };
        let page_token = Some(request.page_token).filter(|token| !token.is_empty());
        Ok(Self {
            page_size,
            page_token,
            status,
            region,
            install_method,
        })
    }
}

fn unknown_enum(field: &'static str, value: i32, allowed: &str) -> Error {
    Error::invalid(
        field,
        format!("{value} is not a known value; allowed values are {allowed}"),
    )
}
