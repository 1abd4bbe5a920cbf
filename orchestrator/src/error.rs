//! The orchestrator's one error type and its single mapping to HTTP: every error answer is
//! `{"error": {"code": "snake_case_code", "message": "..."}}` with the right status.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Clone: a group commit hands one failure to every write of the batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request could not be read at all (e.g. the body is not JSON).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 422: well-formed JSON of the wrong shape (missing field, wrong type).
    #[error("{0}")]
    InvalidRequest(String),
    /// 422: a value that is not acceptable.
    #[error("{0}")]
    Validation(String),
    /// 401.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: absent, or belonging to another tenant (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: the database cannot be reached.
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    /// 503: a part of the orchestrator cannot answer right now.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected database answer; the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, snake_case (e.g. `not_found`, `validation_failed`).
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// For people; may change.
    pub message: String,
}

impl Error {
    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::Unauthorized {
            code: "unauthorized",
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Error {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Error {
        Error::NotFound(format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Error {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Forbidden { code, .. }
            | Error::Conflict { code, .. } => code,
            Error::InvalidRequest(_) => "invalid_request",
            Error::Validation(_) => "validation_failed",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::DatabaseUnavailable(_) => "database_unavailable",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::InvalidRequest(_) | Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::DatabaseUnavailable(_) | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "something went wrong on our side; it has been logged".to_owned()
            }
            Error::DatabaseUnavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                "the database is unavailable; try again shortly".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Error::RateLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let Error::Unauthorized { .. } = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
            },
        })
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as DieselError};
        match error {
            DieselError::NotFound => Error::NotFound("not found".into()),
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Error::DatabaseUnavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Error::Conflict {
                code: "conflict",
                message: format!("already exists ({})", info.message()),
            },
            // PostgreSQL text cannot hold NUL, so a NUL anywhere in a request (a path, a
            // query parameter, a JSON string) fails the statement: that is bad input.
            DieselError::DatabaseError(_, info)
                if info.message().contains("invalid byte sequence") && info.message().contains("0x00") =>
            {
                Error::Validation("text values must not contain NUL (\\u0000) characters".into())
            }
            other => {
                let text = other.to_string();
                // SQLite answers "database is locked" under write contention past the busy timeout.
                if text.contains("database is locked") || text.contains("connection closed") {
                    Error::DatabaseUnavailable(text)
                } else {
                    Error::Internal(text)
                }
            }
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Error::DatabaseUnavailable(error.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Internal(format!("JSON: {error}"))
    }
}

impl From<actix::MailboxError> for Error {
    fn from(error: actix::MailboxError) -> Self {
        Error::Unavailable(format!("the tenant worker did not answer ({error}); try again"))
    }
}
