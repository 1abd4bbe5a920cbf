//! The HTTP side of the agent protocol: one method per orchestrator endpoint, each
//! returning the typed answer or an [`AgentError`] that says whether the orchestrator
//! was unreachable or said no.

use crate::config::Config;
use crate::error::AgentError;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared_protocol::protocol::{
    HeartbeatRequest, HeartbeatResponse, JobResultReport, PollResponse, RegisterAgentRequest, RegisterAgentResponse,
    StartRequest,
};
use shared_protocol::{AgentName, JobId};
use std::rc::Rc;
use std::time::Duration;

/// Ordinary requests; the long-poll sets its own, longer timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Margin over the poll's `wait` before the agent gives up on an answer.
const POLL_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);
/// A poll response carries up to MAX_CONCURRENT_JOBS jobs with up to 100 params of up to
/// 64 KiB each; anything larger is not a real answer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How much of an error body to keep for the log line.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// Makes rustls' ring provider the process default. `cli_main` does this first thing;
/// doing it again here (a no-op when already installed) means embedding the agent
/// cannot panic on a missing provider.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Cheap to clone; lives on the agent's single actor thread (awc clients are not `Send`).
#[derive(Clone)]
pub struct OrchestratorClient {
    http: awc::Client,
    base_url: Rc<str>,
    authorization: Rc<str>,
    agent_name: AgentName,
}

impl OrchestratorClient {
    pub fn new(config: &Config) -> OrchestratorClient {
        install_crypto_provider();
        let http = awc::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .add_default_header((
                awc::http::header::USER_AGENT,
                concat!("scriptmesh-agent/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        OrchestratorClient {
            http,
            base_url: Rc::from(config.orchestrator_url.as_str()),
            authorization: Rc::from(format!("Bearer {}", config.api_key.expose())),
            agent_name: config.agent_name.clone(),
        }
    }

    pub async fn register(&self, body: &RegisterAgentRequest) -> Result<RegisterAgentResponse, AgentError> {
        let response = self.post("register-agent", "/register-agent".into(), body).await?;
        read_json("register-agent", response).await
    }

    pub async fn heartbeat(&self, body: &HeartbeatRequest) -> Result<HeartbeatResponse, AgentError> {
        let response = self.post("heartbeat", "/agent/heartbeat".into(), body).await?;
        read_json("heartbeat", response).await
    }

    /// Held open by the orchestrator for up to `wait`; the client waits a margin longer.
    pub async fn poll(&self, capacity: usize, wait: Duration) -> Result<PollResponse, AgentError> {
        let url = format!(
            "{}/agent/poll?agent={}&capacity={capacity}&wait={}",
            self.base_url,
            // Agent names are [A-Za-z0-9._-] (validated at start-up): safe in a query.
            self.agent_name,
            wait.as_secs()
        );
        let response = self
            .http
            .get(url)
            .insert_header((awc::http::header::AUTHORIZATION, &*self.authorization))
            .timeout(wait + POLL_TIMEOUT_MARGIN)
            .send()
            .await
            .map_err(|error| unreachable("poll", error))?;
        read_json("poll", response).await
    }

    /// Ok only for a 2xx: the orchestrator agrees this agent runs the job now.
    pub async fn start_job(&self, job_id: &JobId, body: &StartRequest) -> Result<(), AgentError> {
        let response = self.post("start", format!("/agent/jobs/{job_id}/start"), body).await?;
        check_status("start", response).await.map(drop)
    }

    pub async fn send_result(&self, job_id: &JobId, body: &JobResultReport) -> Result<(), AgentError> {
        let response = self
            .post("result", format!("/agent/jobs/{job_id}/result"), body)
            .await?;
        check_status("result", response).await.map(drop)
    }

    async fn post(
        &self,
        endpoint: &'static str,
        path: String,
        body: &impl Serialize,
    ) -> Result<awc::ClientResponse<impl Stream<Item = ResponseStreamItem>>, AgentError> {
        self.http
            .post(format!("{}{path}", self.base_url))
            .insert_header((awc::http::header::AUTHORIZATION, &*self.authorization))
            .send_json(body)
            .await
            .map_err(|error| unreachable(endpoint, error))
    }
}

/// Generic over the body stream because its concrete type depends on which awc
/// compression features the rest of the workspace switches on.
type ResponseStreamItem = Result<actix_web::web::Bytes, awc::error::PayloadError>;

fn unreachable(endpoint: &'static str, error: impl std::fmt::Display) -> AgentError {
    AgentError::Unreachable {
        endpoint,
        message: error.to_string(),
    }
}

async fn check_status<S: Stream<Item = ResponseStreamItem>>(
    endpoint: &'static str,
    mut response: awc::ClientResponse<S>,
) -> Result<awc::ClientResponse<S>, AgentError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = match response.body().limit(64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .chars()
            .take(MAX_ERROR_BODY_CHARS)
            .collect(),
        Err(_) => String::new(),
    };
    Err(AgentError::Status {
        endpoint,
        status: status.as_u16(),
        body,
    })
}

async fn read_json<T: DeserializeOwned, S: Stream<Item = ResponseStreamItem>>(
    endpoint: &'static str,
    response: awc::ClientResponse<S>,
) -> Result<T, AgentError> {
    let mut response = check_status(endpoint, response).await?;
    let bytes = response
        .body()
        .limit(MAX_RESPONSE_BYTES)
        .await
        .map_err(|error| unreachable(endpoint, error))?;
    serde_json::from_slice(&bytes).map_err(|error| AgentError::InvalidResponse {
        endpoint,
        message: error.to_string(),
    })
}
