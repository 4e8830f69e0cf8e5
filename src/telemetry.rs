//! Log setup: `tracing` events as text for people or JSON for machines.
//!
//! Field names are stable because dashboards query them: `workspace_id`,
//! `rpc`, `outcome`, `duration_ms`, `token_fingerprint`, `error`. No event
//! carries a token, OAuth code, state value, client secret or key.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. An invalid filter falls back to `info`
/// with a warning, because a typo in `RUST_LOG` must not silence the service.
pub fn init(format: LogFormat, filter: &str) {
    let (env_filter, filter_error) = match EnvFilter::try_new(filter) {
        Ok(env_filter) => (env_filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    let registry = tracing_subscriber::registry().with(env_filter);
    match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .init(),
    }
    if let Some(error) = filter_error {
        tracing::warn!(filter, error = %error, "invalid RUST_LOG filter; logging at info instead");
    }
}
