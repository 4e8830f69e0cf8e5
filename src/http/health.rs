use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{HttpState, plain_text};
use crate::persistence;

/// `GET /healthz`: the process is up.
pub async fn alive() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 while a database query succeeds.
pub async fn ready(State(state): State<HttpState>) -> Response {
    match persistence::ping(state.installations.db()).await {
        Ok(()) => plain_text(StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed: database unreachable");
            plain_text(StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, "failed to render metrics");
            plain_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to render metrics",
            )
        }
    }
}
