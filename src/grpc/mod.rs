//! The gRPC API: `intercom.installs.v1.InstallationService`.
//!
//! Each handler parses its request into domain types, calls the domain, and
//! logs one event with `rpc`, `outcome`, `duration_ms` and `workspace_id`.
//! Errors become statuses through `From<Error> for tonic::Status`; server
//! faults are logged with their causes here, once.

mod convert;

use std::{sync::Arc, time::Instant};

use tonic::{Request, Response, Status};

use crate::{
    domain::{Actor, WorkspaceId},
    error::Error,
    installations::{Installations, ListQuery},
    metrics::Metrics,
    oauth::{OAuthFlows, Purpose},
    proto::{self, installation_service_server::InstallationService},
    tasks::RequestTasks,
};
use convert::{InstallCommand, RegenerateCommand};

pub use proto::installation_service_server::InstallationServiceServer;

pub struct InstallationApi {
    installations: Arc<Installations>,
    oauth: Arc<OAuthFlows>,
    metrics: Arc<Metrics>,
    tasks: RequestTasks,
}

impl InstallationApi {
    pub fn new(
        installations: Arc<Installations>,
        oauth: Arc<OAuthFlows>,
        metrics: Arc<Metrics>,
        tasks: RequestTasks,
    ) -> Self {
        Self {
            installations,
            oauth,
            metrics,
            tasks,
        }
    }

    /// Runs RPC work that calls Intercom and then records the result, on a
    /// task that finishes even if the caller goes away.
    async fn detached<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        self.tasks.run(work).await.unwrap_or_else(|panic| {
            Err(Error::internal(anyhow::anyhow!(
                "request task panicked: {panic}"
            )))
        })
    }

    /// Logs and counts the end of one RPC and turns the result into a tonic response.
    fn finish<T>(
        &self,
        rpc: &'static str,
        workspace_id: Option<&str>,
        started: Instant,
        result: Result<T, Error>,
    ) -> Result<Response<T>, Status> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        self.metrics
            .record_rpc(rpc, outcome, started.elapsed().as_secs_f64());
        log_rpc(rpc, workspace_id, started, result)
    }
}

fn actor<T>(request: &Request<T>) -> Actor {
    match request.remote_addr() {
        Some(peer) => Actor(format!("grpc:{peer}")),
        None => Actor("grpc:unknown".into()),
    }
}

/// Returns the workspace id of a request if it is valid, so it is safe to log.
fn loggable(workspace_id: &str) -> Option<&str> {
    WorkspaceId::parse("workspace_id", workspace_id)
        .ok()
        .map(|_| workspace_id)
}

/// Logs the end of one RPC and turns the result into a tonic response.
fn log_rpc<T>(
    rpc: &'static str,
    workspace_id: Option<&str>,
    started: Instant,
    result: Result<T, Error>,
) -> Result<Response<T>, Status> {
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(response) => {
            tracing::info!(
                rpc,
                workspace_id,
                outcome = "ok",
                duration_ms,
                "rpc finished"
            );
            Ok(Response::new(response))
        }
        Err(error) if error.is_server_fault() => {
            tracing::error!(
                rpc,
                workspace_id,
                outcome = error.kind(),
                duration_ms,
                error = error.with_causes(),
                "rpc failed"
            );
            Err(error.into())
        }
        Err(Error::InvalidArgument { field, message }) => {
            // The message may quote the rejected value, which could be a
            // token pasted into the wrong field, so only the field is logged.
            tracing::info!(
                rpc,
                workspace_id,
                outcome = "invalid_argument",
                duration_ms,
                field,
                "rpc rejected"
            );
            Err(Error::InvalidArgument { field, message }.into())
        }
        Err(error) => {
            tracing::info!(rpc, workspace_id, outcome = error.kind(), duration_ms, error = %error, "rpc rejected");
            Err(error.into())
        }
    }
}

#[tonic::async_trait]
impl InstallationService for InstallationApi {
    async fn install(
        &self,
        request: Request<proto::InstallRequest>,
    ) -> Result<Response<proto::InstallResponse>, Status> {
        let started = Instant::now();
        let actor = actor(&request);
        let (installations, oauth) = (self.installations.clone(), self.oauth.clone());
        let result = self
            .detached(async move {
                match InstallCommand::try_from(request.into_inner())? {
                    InstallCommand::WithToken(token) => {
                        let (installation, outcome) =
                            installations.install_with_token(&token, &actor).await?;
                        Ok(proto::install_response::Result::Installed(
                            convert::installed(&installation, outcome),
                        ))
                    }
                    InstallCommand::StartOAuth => {
                        let handoff = oauth.start_handoff(Purpose::Install).await?;
                        Ok(proto::install_response::Result::Authorization(
                            convert::authorization(&handoff),
                        ))
                    }
                }
            })
            .await;

        let workspace_id = match &result {
            Ok(proto::install_response::Result::Installed(installed)) => installed
                .workspace
                .as_ref()
                .map(|workspace| workspace.workspace_id.clone()),
            _ => None,
        };
        let response = result.map(|result| proto::InstallResponse {
            result: Some(result),
        });
        self.finish("Install", workspace_id.as_deref(), started, response)
    }

    async fn regenerate(
        &self,
        request: Request<proto::RegenerateRequest>,
    ) -> Result<Response<proto::RegenerateResponse>, Status> {
        let started = Instant::now();
        let actor = actor(&request);
        let request = request.into_inner();
        let workspace_id = request.workspace_id.clone();
        let (installations, oauth) = (self.installations.clone(), self.oauth.clone());
        let result = self
            .detached(async move {
                let command = RegenerateCommand::try_from(request)?;
                let result = match command.token {
                    Some(token) => {
                        let (installation, outcome) = installations
                            .regenerate_with_token(&command.workspace_id, &token, &actor)
                            .await?;
                        proto::regenerate_response::Result::Regenerated(convert::installed(
                            &installation,
                            outcome,
                        ))
                    }
                    None => {
                        installations
                            .get_active(&command.workspace_id, "re-authorize it")
                            .await?;
                        let handoff = oauth
                            .start_handoff(Purpose::Reauthorize(command.workspace_id))
                            .await?;
                        proto::regenerate_response::Result::Authorization(convert::authorization(
                            &handoff,
                        ))
                    }
                };
                Ok(proto::RegenerateResponse {
                    result: Some(result),
                })
            })
            .await;
        self.finish("Regenerate", loggable(&workspace_id), started, result)
    }

    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let started = Instant::now();
        let actor = actor(&request);
        let requested_id = request.into_inner().workspace_id;
        let workspace_id = requested_id.clone();
        let installations = self.installations.clone();
        let result = self
            .detached(async move {
                let workspace_id = WorkspaceId::parse("workspace_id", &workspace_id)?;
                let (installation, changed) = installations.revoke(&workspace_id, &actor).await?;
                Ok(proto::RevokeResponse {
                    workspace: Some(convert::workspace(&installation)),
                    changed,
                })
            })
            .await;
        self.finish("Revoke", loggable(&requested_id), started, result)
    }

    async fn list_workspaces(
        &self,
        request: Request<proto::ListWorkspacesRequest>,
    ) -> Result<Response<proto::ListWorkspacesResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let query = ListQuery::try_from(request.into_inner())?;
            let page = self.installations.list(&query).await?;
            Ok(proto::ListWorkspacesResponse {
                workspaces: page.installations.iter().map(convert::workspace).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        }
        .await;
        self.finish("ListWorkspaces", None, started, result)
    }

    async fn get_workspace(
        &self,
        request: Request<proto::GetWorkspaceRequest>,
    ) -> Result<Response<proto::Workspace>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = async {
            let workspace_id = WorkspaceId::parse("workspace_id", &request.workspace_id)?;
            let installation = self.installations.get(&workspace_id).await?;
            Ok(convert::workspace(&installation))
        }
        .await;
        self.finish(
            "GetWorkspace",
            loggable(&request.workspace_id),
            started,
            result,
        )
    }
}
