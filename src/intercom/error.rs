//! Intercom's error responses and how this service classifies them.

use std::{fmt, time::Duration};

use reqwest::StatusCode;
use serde::Deserialize;

/// Error codes that mean the token no longer works for the workspace.
const DEAD_TOKEN_CODES: &[&str] = &[
    "unauthorized",
    "token_revoked",
    "token_not_found",
    "token_suspended",
    "token_blocked",
];

/// Maximum length of an Intercom error message kept for logs and callers.
const MAX_MESSAGE_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntercomError {
    /// Intercom rejected the token: a 401, or a dead-token error code.
    TokenRejected { code: Option<String> },
    /// Intercom rejected the OAuth code (401 from the token exchange).
    CodeRejected { code: Option<String> },
    /// Any other 4xx; `code` and `message` are Intercom's, when it sent them.
    Rejected {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// 429, or the rate limit window is used up and resets later than the
    /// configured wait.
    RateLimited { retry_after: Duration },
    /// A network failure, a timeout or a 5xx.
    Unreachable(String),
    /// A 2xx whose body is not the JSON Intercom documents.
    InvalidResponse(String),
}

impl IntercomError {
    /// Returns whether the same call may succeed if made again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IntercomError::RateLimited { .. }
                | IntercomError::Unreachable(_)
                | IntercomError::InvalidResponse(_)
        )
    }
}

impl fmt::Display for IntercomError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntercomError::TokenRejected { code } => {
                write!(
                    formatter,
                    "Intercom rejected the access token ({})",
                    code.as_deref().unwrap_or("401")
                )
            }
            IntercomError::CodeRejected { code } => {
                write!(
                    formatter,
                    "Intercom rejected the authorization code ({})",
                    code.as_deref().unwrap_or("401")
                )
            }
            IntercomError::Rejected {
                status,
                code,
                message,
            } => {
                write!(formatter, "Intercom returned {status}")?;
                if let Some(code) = code {
                    write!(formatter, " {code}")?;
                }
                if let Some(message) = message {
                    write!(formatter, ": {message}")?;
                }
                Ok(())
            }
            IntercomError::RateLimited { retry_after } => {
                write!(
                    formatter,
                    "Intercom's rate limit is reached for {} s",
                    retry_after.as_secs().max(1)
                )
            }
            IntercomError::Unreachable(reason) => {
                write!(formatter, "Intercom could not be reached: {reason}")
            }
            IntercomError::InvalidResponse(reason) => {
                write!(formatter, "Intercom sent an unexpected response: {reason}")
            }
        }
    }
}

/// The first error of an Intercom error body, read from any of its shapes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct RawErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    errors: Option<Vec<RawError>>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

impl ErrorBody {
    /// Reads `{"type":"error.list","errors":[{"code","message"}]}`, the older
    /// shape with the code under `type`, a bare `{"code","message"}`, and
    /// anything else (HTML pages, empty bodies) as no code and no message.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(raw) = serde_json::from_slice::<RawErrorBody>(body) else {
            return Self::default();
        };
        if let Some(first) = raw.errors.and_then(|errors| errors.into_iter().next()) {
            return Self {
                code: first.code.or(first.kind).map(normalize_code),
                message: first.message.map(truncate),
            };
        }
        let kind = raw.kind.filter(|kind| kind != "error.list");
        Self {
            code: raw.code.or(kind).map(normalize_code),
            message: raw.message.map(truncate),
        }
    }

    pub fn means_dead_token(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| DEAD_TOKEN_CODES.contains(&code))
    }
}

fn normalize_code(code: String) -> String {
    truncate(code.trim().to_ascii_lowercase())
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Classifies a non-2xx response to a call made with an access token.
pub fn classify_token_call(status: StatusCode, body: &ErrorBody) -> IntercomError {
    if status == StatusCode::UNAUTHORIZED || body.means_dead_token() {
        return IntercomError::TokenRejected {
            code: body.code.clone(),
        };
    }
    classify_other(status, body)
}

pub fn classify_other(status: StatusCode, body: &ErrorBody) -> IntercomError {
    if status.is_server_error() {
        return IntercomError::Unreachable(format!("Intercom returned {status}"));
    }
    IntercomError::Rejected {
        status: status.as_u16(),
        code: body.code.clone(),
        message: body.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_list() {
        let body = br#"{"type":"error.list","request_id":"r1","errors":[{"code":"token_revoked","message":"Token revoked"}]}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(parsed.code.as_deref(), Some("token_revoked"));
        assert_eq!(parsed.message.as_deref(), Some("Token revoked"));
        assert!(parsed.means_dead_token());
    }

    #[test]
    fn parses_code_under_type() {
        let parsed = ErrorBody::parse(br#"{"type":"error.list","errors":[{"type":"unauthorized","message":"Access Token Invalid"}]}"#);
        assert_eq!(parsed.code.as_deref(), Some("unauthorized"));
    }

    #[test]
    fn parses_error_without_code() {
        let parsed =
            ErrorBody::parse(br#"{"type":"error.list","errors":[{"message":"Unauthorized"}]}"#);
        assert_eq!(parsed.code, None);
        assert_eq!(parsed.message.as_deref(), Some("Unauthorized"));
    }

    #[test]
    fn html_page_has_no_code() {
        let parsed = ErrorBody::parse(b"<html><body>Bad gateway</body></html>");
        assert_eq!(parsed, ErrorBody::default());
    }

    #[test]
    fn long_message_is_truncated() {
        let long = format!(
            r#"{{"errors":[{{"code":"x","message":"{}"}}]}}"#,
            "é".repeat(300)
        );
        let parsed = ErrorBody::parse(long.as_bytes());
        assert!(parsed.message.unwrap().len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
    }

    #[test]
    fn classify_token_call_cases() {
        let no_body = ErrorBody::default();
        assert_eq!(
            classify_token_call(StatusCode::UNAUTHORIZED, &no_body),
            IntercomError::TokenRejected { code: None }
        );
        let suspended = ErrorBody {
            code: Some("token_suspended".into()),
            message: None,
        };
        assert!(matches!(
            classify_token_call(StatusCode::FORBIDDEN, &suspended),
            IntercomError::TokenRejected { .. }
        ));
        assert!(matches!(
            classify_token_call(StatusCode::BAD_GATEWAY, &no_body),
            IntercomError::Unreachable(_)
        ));
        assert!(matches!(
            classify_token_call(StatusCode::NOT_FOUND, &no_body),
            IntercomError::Rejected { status: 404, .. }
        ));
    }
}
