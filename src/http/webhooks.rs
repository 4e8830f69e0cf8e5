//! `POST /webhooks/uninstall`: Intercom's notification that an admin
//! uninstalled the app, `{"app_id": "<workspace id>"}`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{HttpState, plain_text};
use crate::{
    crypto::{verify_body_signature, verify_hub_signature},
    domain::{Actor, WorkspaceId},
    error::Error,
    installations::UninstallOutcome,
};

#[derive(Deserialize)]
struct Notification {
    app_id: Option<serde_json::Value>,
}

pub async fn uninstall(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = check_signature(&state, &headers, &body) {
        tracing::warn!(
            reason,
            "rejected uninstall notification with a bad signature"
        );
        state.metrics.record_uninstall_notification("bad_signature");
        return plain_text(
            StatusCode::UNAUTHORIZED,
            format!("signature is invalid: {reason}"),
        );
    }

    let notification: Notification = match serde_json::from_slice(&body) {
        Ok(notification) => notification,
        Err(_) => {
            return plain_text(
                StatusCode::BAD_REQUEST,
                r#"body is not valid JSON; expected {"app_id": "<workspace id>"}"#,
            );
        }
    };
    // Unknown and missing ids get 200 as well: Intercom only needs to know
    // the notification arrived.
    let Some(serde_json::Value::String(app_id)) = notification.app_id else {
        tracing::info!(
            outcome = "missing_app_id",
            "ignored uninstall notification without app_id"
        );
        state
            .metrics
            .record_uninstall_notification("missing_app_id");
        return plain_text(StatusCode::OK, "ignored: no app_id");
    };
    let Ok(workspace_id) = WorkspaceId::parse("app_id", &app_id) else {
        tracing::info!(
            outcome = "invalid_app_id",
            "ignored uninstall notification with an invalid app_id"
        );
        state
            .metrics
            .record_uninstall_notification("invalid_app_id");
        return plain_text(StatusCode::OK, "ignored: invalid app_id");
    };

    let actor = Actor("intercom:uninstall-notification".into());
    let installations = state.installations.clone();
    let task_workspace_id = workspace_id.clone();
    let handled = state
        .tasks
        .run(async move {
            installations
                .handle_uninstall_notification(&task_workspace_id, &actor)
                .await
        })
        .await
        .unwrap_or_else(|panic| {
            Err(Error::internal(anyhow::anyhow!(
                "notification task panicked: {panic}"
            )))
        });
    match handled {
        Ok(outcome) => {
            let label = outcome_label(outcome);
            state.metrics.record_uninstall_notification(label);
            tracing::info!(
                workspace_id = workspace_id.as_str(),
                outcome = label,
                "handled uninstall notification"
            );
            plain_text(StatusCode::OK, label)
        }
        Err(error) => {
            state.metrics.record_uninstall_notification(error.kind());
            // A 503 makes Intercom deliver the notification again later.
            tracing::warn!(
                workspace_id = workspace_id.as_str(),
                outcome = error.kind(),
                error = error.with_causes(),
                "failed to check an uninstall notification"
            );
            plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not confirm the uninstall; retry later",
            )
        }
    }
}

/// Verifies `X-Body-Signature` or `X-Hub-Signature` when present. Without
/// either, the notification is accepted: some deliveries carry none, and the
/// handler confirms with Intercom before it changes anything.
// NOTE: each unsigned notification for an active workspace costs one
// `GET /me` against that workspace's rate limit; nothing throttles them.
fn check_signature(
    state: &HttpState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let body_signature = headers.get("x-body-signature");
    let hub_signature = headers.get("x-hub-signature");
    if body_signature.is_none() && hub_signature.is_none() {
        return Ok(());
    }
    let Some(secret) = &state.client_secret else {
        tracing::warn!(
            "uninstall notification is signed but INTERCOM_CLIENT_SECRET is not set; not verified"
        );
        return Ok(());
    };
    if let Some(signature) = body_signature {
        let valid = signature
            .to_str()
            .is_ok_and(|signature| verify_body_signature(secret, body, signature));
        return if valid {
            Ok(())
        } else {
            Err("X-Body-Signature does not match the body")
        };
    }
    let valid = hub_signature
        .and_then(|signature| signature.to_str().ok())
        .is_some_and(|signature| verify_hub_signature(secret, body, signature));
    if valid {
        Ok(())
    } else {
        Err("X-Hub-Signature does not match the body")
    }
}

fn outcome_label(outcome: UninstallOutcome) -> &'static str {
    match outcome {
        UninstallOutcome::Uninstalled => "uninstalled",
        UninstallOutcome::UnknownWorkspace => "unknown_workspace",
        UninstallOutcome::AlreadyInactive => "already_inactive",
        UninstallOutcome::StillInstalled => "still_installed",
    }
}
