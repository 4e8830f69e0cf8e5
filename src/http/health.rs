use axum::{extract::State, http::StatusCode, response::Response};

use super::{HttpState, plain_text};
use crate::persistence;

/// `GET /healthz`: the process is up.
pub async fn alive() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the database answers a query.
pub async fn ready(State(state): State<HttpState>) -> Response {
    match persistence::ping(state.installations.db()).await {
        Ok(()) => plain_text(StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed: database unreachable");
            plain_text(StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
