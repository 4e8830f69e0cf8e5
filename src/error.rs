//! The service's one error type and its mapping to gRPC status codes. The
//! HTTP side maps the same type in `http`.

use std::time::Duration;

use crate::intercom::IntercomError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request value broke a rule; the message names the field.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },

    #[error("workspace {0} is not installed")]
    NotFound(String),

    /// The request is valid but the installation is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),

    /// Another request changed the installation while this one ran.
    #[error("{0}")]
    Aborted(String),

    /// Intercom could not be reached or did not send a usable response.
    #[error("Intercom is unavailable: {0}")]
    IntercomUnavailable(IntercomError),

    #[error("Intercom's rate limit is reached; retry in {} s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },

    #[error("database is unavailable")]
    DatabaseUnavailable(#[source] sea_orm::DbErr),

    /// A fault of this service; the caller sees a generic message and the
    /// log gets the cause chain.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Error::Internal(error.into())
    }

    /// Returns a short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::Aborted(_) => "aborted",
            Error::IntercomUnavailable(_) => "intercom_unavailable",
            Error::RateLimited { .. } => "rate_limited",
            Error::DatabaseUnavailable(_) => "database_unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Renders the error with its chain of causes, for logs.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Returns whether the fault is ours rather than the caller's, so it is logged
    /// with its cause chain at error level.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Error::DatabaseUnavailable(_) | Error::Internal(_))
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::DatabaseUnavailable(error),
            // sqlx reports a dropped connection or refused socket as an I/O
            // error inside a query error.
            DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref sqlx_error))
            | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref sqlx_error))
                if is_connection_fault(sqlx_error) =>
            {
                Error::DatabaseUnavailable(error)
            }
            other => Error::Internal(other.into()),
        }
    }
}

fn is_connection_fault(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    matches!(
        error,
        SqlxError::Io(_)
            | SqlxError::PoolTimedOut
            | SqlxError::PoolClosed
            | SqlxError::Tls(_)
            | SqlxError::WorkerCrashed
    )
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        use tonic::Code;
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::IntercomUnavailable(_) => Code::Unavailable,
            Error::RateLimited { .. } => Code::Unavailable,
            Error::DatabaseUnavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        };
        tonic::Status::new(code, error.to_string())
    }
}
