//! The agent's one error type. Nothing here is shown to an HTTP caller except through
//! logs, so there is no status mapping: each variant says what failed and what to check.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration variable is missing or has a bad value; start-up stops.
    #[error("invalid configuration: {variable}: {message}")]
    Config { variable: &'static str, message: String },

    #[error("{context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The manifest file is missing, unreadable or not the documented JSON shape.
    #[error("script manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },

    /// A spooled result file could not be written, read or parsed.
    #[error("spooled result {path}: {message}")]
    Spool { path: PathBuf, message: String },

    /// No HTTP answer at all: connection refused, DNS, TLS, timeout.
    #[error("orchestrator unreachable at {endpoint}: {message}")]
    Unreachable { endpoint: &'static str, message: String },

    /// The orchestrator answered with a non-2xx status.
    #[error("orchestrator answered {status} at {endpoint}: {body}")]
    Status {
        endpoint: &'static str,
        status: u16,
        body: String,
    },

    /// A 2xx answer whose body is not what the protocol promises.
    #[error("orchestrator sent an unreadable answer at {endpoint}: {message}")]
    InvalidResponse { endpoint: &'static str, message: String },

    /// The health server could not bind its port.
    #[error("could not listen on {address} (AGENT_BIND_HOST/AGENT_PORT): {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },

    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    #[error("internal actor mailbox closed: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

impl AgentError {
    /// The HTTP status the orchestrator answered, when it answered at all.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            AgentError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// 401/403: the key is wrong or revoked; retrying fast will not help.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self.http_status(), Some(401 | 403))
    }

    /// True when the orchestrator could not be talked to at all (or is failing on its
    /// side), as opposed to answering "no" to this particular request.
    pub fn is_connectivity_problem(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } => true,
            AgentError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
