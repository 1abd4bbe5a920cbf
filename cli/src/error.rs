//! The CLI's one error type: every failure says what happened and what to do about it.
//! Any of them makes the process exit with status 1 (usage errors exit 2, from clap).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not logged in: run `scriptmesh login` or set SCRIPTMESH_API_KEY")]
    NotLoggedIn,

    #[error(
        "the stored login is for {stored}, not {wanted}: run `scriptmesh --url {wanted} login` or set SCRIPTMESH_API_KEY"
    )]
    OtherOrchestrator { stored: String, wanted: String },

    #[error("the login session has ended ({0}): run `scriptmesh login` again")]
    SessionEnded(String),

    #[error("SCRIPTMESH_API_KEY was refused: {0}; check the key (it may be revoked or expired)")]
    KeyRefused(String),

    /// The orchestrator's JSON error, `{"error": {"code", "message"}}`.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },

    #[error("cannot reach the orchestrator at {url}: {detail}; check --url or SCRIPTMESH_URL")]
    Unreachable { url: String, detail: String },

    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    UnexpectedResponse { url: String, status: u16, detail: String },

    #[error("invalid orchestrator URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },

    #[error("could not {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the credentials file {} is damaged ({detail}): run `scriptmesh login` again", path.display())]
    DamagedCredentials { path: PathBuf, detail: String },

    /// Input the command cannot go on without (a password, an email).
    #[error("{0}")]
    Input(String),
}
