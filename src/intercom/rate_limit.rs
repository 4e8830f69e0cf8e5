//! Intercom's rate limit windows, read from `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (Unix seconds). Limits differ by plan, so they are
//! never hard-coded: a call waits only while the last response reported the
//! window as used up.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use reqwest::{StatusCode, header::HeaderMap};

use super::IntercomError;

/// Wait assumed after a 429 that carries no `X-RateLimit-Reset`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Maximum wait accepted from `X-RateLimit-Reset`. A later reset time is
/// taken as this, so a bogus header cannot block calls until a restart.
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// Windows kept before expired ones are dropped.
const MAX_TRACKED_WINDOWS: usize = 10_000;

pub struct RateLimits {
    max_wait: Duration,
    /// Time at which each exhausted window resets, by limit key (a token
    /// fingerprint, since Intercom limits each app per workspace).
    exhausted_until: Mutex<HashMap<String, SystemTime>>,
}

impl RateLimits {
    pub fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            exhausted_until: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for an exhausted window to reset, or fails at once when that is
    /// further away than the configured maximum wait.
    pub async fn wait_for(&self, key: &str) -> Result<(), IntercomError> {
        let wait = self.retry_after(key);
        if wait.is_zero() {
            return Ok(());
        }
        if wait > self.max_wait {
            return Err(IntercomError::RateLimited { retry_after: wait });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Time until the window of `key` resets; zero when it is not exhausted.
    pub fn retry_after(&self, key: &str) -> Duration {
        let windows = self
            .exhausted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        windows
            .get(key)
            .and_then(|reset_at| reset_at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
    }

    pub fn record(&self, key: &str, status: StatusCode, headers: &HeaderMap) {
        let remaining = header_number(headers, "x-ratelimit-remaining");
        let now = SystemTime::now();
        let reset_at = header_number(headers, "x-ratelimit-reset")
            .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
            .map(|reset_at| reset_at.min(now + MAX_WINDOW));
        let exhausted = status == StatusCode::TOO_MANY_REQUESTS || remaining == Some(0);

        let mut windows = self
            .exhausted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !exhausted {
            windows.remove(key);
            return;
        }
        let reset_at = reset_at.unwrap_or(now + DEFAULT_RETRY_AFTER);
        if windows.len() >= MAX_TRACKED_WINDOWS {
            windows.retain(|_, reset| *reset > now);
        }
        windows.insert(key.to_owned(), reset_at);
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(remaining: &str, reset: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", remaining.parse().unwrap());
        headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        headers
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn exhausted_window_beyond_max_wait_fails_fast() {
        let limits = RateLimits::new(Duration::from_secs(1));
        limits.record("ws", StatusCode::OK, &headers("0", unix_now() + 60));

        let error = limits.wait_for("ws").await.unwrap_err();
        assert!(
            matches!(error, IntercomError::RateLimited { retry_after } if retry_after > Duration::from_secs(50))
        );
        assert!(limits.wait_for("other").await.is_ok());
    }

    #[test]
    fn far_reset_time_is_capped() {
        let limits = RateLimits::new(Duration::ZERO);
        limits.record(
            "ws",
            StatusCode::TOO_MANY_REQUESTS,
            &headers("0", 99_999_999_999),
        );

        let retry_after = limits.retry_after("ws");
        assert!(retry_after > Duration::from_secs(3500));
        assert!(retry_after <= MAX_WINDOW);
    }

    #[test]
    fn overflowing_reset_time_uses_default() {
        let limits = RateLimits::new(Duration::ZERO);
        limits.record("ws", StatusCode::TOO_MANY_REQUESTS, &headers("0", u64::MAX));

        let retry_after = limits.retry_after("ws");
        assert!(retry_after > Duration::ZERO);
        assert!(retry_after <= DEFAULT_RETRY_AFTER);
    }

    #[tokio::test]
    async fn remaining_calls_clear_the_window() {
        let limits = RateLimits::new(Duration::ZERO);
        limits.record("ws", StatusCode::OK, &headers("0", unix_now() + 60));
        limits.record("ws", StatusCode::OK, &headers("5", unix_now() + 60));

        assert!(limits.wait_for("ws").await.is_ok());
    }
}
