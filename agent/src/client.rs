//! The HTTP side of the agent protocol: one method per orchestrator endpoint, each
//! returning the typed answer or an [`AgentError`] that says whether the orchestrator
//! was unreachable or said no. With several ORCHESTRATOR_URLs (replicas of one
//! orchestrator on one database) every request goes to the current one; when it cannot
//! be reached (or fails on its side, a 5xx) the client moves on to the next, for everyone.

use crate::config::Config;
use crate::error::AgentError;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared_protocol::protocol::{
    HeartbeatRequest, HeartbeatResponse, JobResultReport, OutputAck, OutputBatch, PollResponse, RegisterAgentRequest,
    RegisterAgentResponse, ResultBatch, ResultBatchAck,
};
use shared_protocol::{AgentName, JobId};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Ordinary requests; the long-poll sets its own, longer timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Live output is only worth anything while it is fresh; a stuck request must not hold
/// the stream (one request at a time) for long.
const OUTPUT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
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
    base_urls: Rc<[Rc<str>]>,
    /// Index into `base_urls` of the orchestrator in use, shared by every clone.
    current: Rc<Cell<usize>>,
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
            base_urls: config
                .orchestrator_urls
                .iter()
                .map(|url| Rc::from(url.as_str()))
                .collect(),
            current: Rc::new(Cell::new(0)),
            authorization: Rc::from(format!("Bearer {}", config.api_key.expose())),
            agent_name: config.agent_name.clone(),
        }
    }

    /// How many orchestrator URLs there are to try.
    pub fn url_count(&self) -> usize {
        self.base_urls.len()
    }

    /// The orchestrator in use, and its index (for `fail_over`).
    fn base(&self) -> (usize, Rc<str>) {
        let index = self.current.get() % self.base_urls.len();
        (index, self.base_urls[index].clone())
    }

    /// The orchestrator at `index` failed: move to the next, unless another request
    /// already did.
    fn fail_over(&self, index: usize) {
        if self.base_urls.len() > 1 && self.current.get() == index {
            let next = (index + 1) % self.base_urls.len();
            self.current.set(next);
            tracing::warn!(
                failed = %self.base_urls[index],
                next = %self.base_urls[next],
                "orchestrator unreachable; switching to the next ORCHESTRATOR_URL"
            );
        }
    }

    /// Moves on when the outcome says the orchestrator is down or overloaded.
    fn note<T>(&self, index: usize, outcome: Result<T, AgentError>) -> Result<T, AgentError> {
        if let Err(error) = &outcome {
            if error.is_connectivity_problem() {
                self.fail_over(index);
            }
        }
        outcome
    }

    pub async fn register(&self, body: &RegisterAgentRequest) -> Result<RegisterAgentResponse, AgentError> {
        let (index, response) = self.post("register-agent", "/register-agent".into(), body).await?;
        self.note(index, read_json("register-agent", response).await)
    }

    pub async fn heartbeat(&self, body: &HeartbeatRequest) -> Result<HeartbeatResponse, AgentError> {
        let (index, response) = self.post("heartbeat", "/agent/heartbeat".into(), body).await?;
        self.note(index, read_json("heartbeat", response).await)
    }

    /// Held open by the orchestrator for up to `wait`; the client waits a margin longer.
    /// With a heartbeat it is a `POST` carrying it (only to an orchestrator that said, on
    /// registration, that it takes them so), otherwise a `GET`.
    pub async fn poll(
        &self,
        capacity: usize,
        wait: Duration,
        heartbeat: Option<&HeartbeatRequest>,
    ) -> Result<PollResponse, AgentError> {
        let (index, base) = self.base();
        let url = format!(
            "{base}/agent/poll?agent={}&capacity={capacity}&wait={}&start=implicit",
            // Agent names are [A-Za-z0-9._-] (validated at start-up): safe in a query.
            self.agent_name,
            wait.as_secs()
        );
        let request = match heartbeat {
            Some(_) => self.http.post(url),
            None => self.http.get(url),
        }
        .insert_header((awc::http::header::AUTHORIZATION, &*self.authorization))
        .timeout(wait + POLL_TIMEOUT_MARGIN);
        let response = match heartbeat {
            Some(heartbeat) => request.send_json(heartbeat).await,
            None => request.send().await,
        }
        .map_err(|error| unreachable("poll", error));
        let response = self.note(index, response)?;
        self.note(index, read_json("poll", response).await)
    }

    /// Several results at once; each is settled on its own in the answer.
    pub async fn send_results(&self, body: &ResultBatch) -> Result<ResultBatchAck, AgentError> {
        let (index, response) = self.post("results", "/agent/results".into(), body).await?;
        self.note(index, read_json("results", response).await)
    }

    /// Live output of running jobs; the answer names jobs to stop streaming.
    pub async fn send_output(&self, body: &OutputBatch) -> Result<OutputAck, AgentError> {
        let (index, response) = self
            .post_within("output", "/agent/output".into(), body, OUTPUT_REQUEST_TIMEOUT)
            .await?;
        self.note(index, read_json("output", response).await)
    }

    pub async fn send_result(&self, job_id: &JobId, body: &JobResultReport) -> Result<(), AgentError> {
        let (index, response) = self
            .post("result", format!("/agent/jobs/{job_id}/result"), body)
            .await?;
        self.note(index, check_status("result", response).await.map(drop))
    }

    async fn post(
        &self,
        endpoint: &'static str,
        path: String,
        body: &impl Serialize,
    ) -> Result<(usize, awc::ClientResponse<impl Stream<Item = ResponseStreamItem>>), AgentError> {
        self.post_within(endpoint, path, body, REQUEST_TIMEOUT).await
    }

    async fn post_within(
        &self,
        endpoint: &'static str,
        path: String,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<(usize, awc::ClientResponse<impl Stream<Item = ResponseStreamItem>>), AgentError> {
        let (index, base) = self.base();
        let sent = self
            .http
            .post(format!("{base}{path}"))
            .insert_header((awc::http::header::AUTHORIZATION, &*self.authorization))
            .timeout(timeout)
            .send_json(body)
            .await
            .map_err(|error| unreachable(endpoint, error));
        self.note(index, sent).map(|response| (index, response))
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
