//! The reporter actor: delivers each job result to the orchestrator, spooling it to disk
//! first and retrying forever with backoff, so a result survives both an unreachable
//! orchestrator and an agent restart. The spool file is deleted only once the
//! orchestrator has answered for good.
//!
//! Results that finish while a delivery is under way go together in the next request
//! (`POST /agent/results`), like a group commit: a lone result goes at once, a burst of
//! quick jobs costs a few requests. A result the batch could not settle is retried on
//! its own.

use crate::backoff::Backoff;
use crate::client::OrchestratorClient;
use crate::metrics::Metrics;
use crate::registration::Registered;
use crate::spool::{Spool, SpooledResult};
use actix::prelude::*;
use shared_protocol::protocol::{BatchedAck, BatchedOutcome, BatchedResult, JobResultReport, ResultBatch};
use shared_protocol::JobId;
use std::collections::HashSet;

/// Deliver this result. Resolves once it is spooled (or spooling failed and was logged).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverResult {
    pub job_id: JobId,
    pub report: JobResultReport,
}

/// The ids of the results not yet accepted (for the heartbeat's `held_jobs`).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct HeldResults;

/// Most results in one batch, and most output bytes (a big result goes on its own).
const MAX_BATCH_RESULTS: usize = 100;
const MAX_BATCH_OUTPUT_BYTES: usize = 4 << 20;

pub struct Reporter {
    client: OrchestratorClient,
    spool: Spool,
    metrics: Metrics,
    /// Results being delivered (in a batch, on their own, or waiting for either).
    in_flight: HashSet<JobId>,
    /// New results waiting for the next batch.
    batch: Vec<SpooledResult>,
    batch_in_flight: bool,
    /// Found in the spool at start-up, re-sent once the agent is registered (so the
    /// orchestrator knows the agent before it hears about the agent's old jobs).
    parked: Vec<SpooledResult>,
}

/// How the orchestrator's answer to a result settles it.
enum Verdict {
    Delivered,
    /// 404/409/422: it will never accept this result; retrying is pointless.
    Refused,
    /// 413: the outputs are too big for the orchestrator; send a shortened copy.
    TooLarge,
    Retry,
}

/// What is kept of each stream when the orchestrator finds a result too large.
const SHRUNK_OUTPUT_BYTES: usize = 64 * 1024;

impl Reporter {
    pub fn new(client: OrchestratorClient, spool: Spool, metrics: Metrics) -> Reporter {
        Reporter {
            client,
            spool,
            metrics,
            in_flight: HashSet::new(),
            batch: Vec::new(),
            batch_in_flight: false,
            parked: Vec::new(),
        }
    }

    /// Sends the waiting results together, unless a batch is under way (the next one
    /// goes when it is done).
    fn send_batch(&mut self, ctx: &mut Context<Self>) {
        if self.batch_in_flight || self.batch.is_empty() {
            return;
        }
        let mut size = 0;
        let count = self
            .batch
            .iter()
            .take(MAX_BATCH_RESULTS)
            .take_while(|result| {
                size += result.report.stdout.len() + result.report.stderr.len();
                size <= MAX_BATCH_OUTPUT_BYTES
            })
            .count()
            .max(1);
        let results: Vec<SpooledResult> = self.batch.drain(..count).collect();
        self.batch_in_flight = true;
        let client = self.client.clone();
        let request = ResultBatch {
            agent_name: results[0].report.agent_name.clone(),
            results: results
                .iter()
                .map(|r| BatchedResult {
                    job_id: r.job_id.to_string(),
                    report: r.report.clone(),
                })
                .collect(),
        };
        let send = async move { client.send_results(&request).await };
        ctx.spawn(send.into_actor(self).map(move |answer, act, ctx| {
            act.batch_in_flight = false;
            let mut unsettled: Vec<SpooledResult> = Vec::new();
            match answer {
                Ok(ack) => {
                    act.metrics.set_connected(true);
                    let mut outcomes: std::collections::HashMap<String, BatchedAck> =
                        ack.results.into_iter().map(|a| (a.job_id.clone(), a)).collect();
                    for result in results {
                        match outcomes.remove(result.job_id.as_str()) {
                            Some(ack) if ack.outcome != BatchedOutcome::Refused => {
                                tracing::info!(job_id = %result.job_id, outcome = ?result.report.outcome, "result delivered");
                                act.settle(&result.job_id);
                            }
                            Some(ack) => {
                                tracing::error!(job_id = %result.job_id, reason = ack.message.as_deref().unwrap_or(""), "the orchestrator refused this result for good; dropping it");
                                act.settle(&result.job_id);
                            }
                            None => unsettled.push(result),
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, results = results.len(), "batched results not delivered; sending them one by one");
                    unsettled = results;
                }
            }
            for SpooledResult { job_id, report } in unsettled {
                act.attempt(job_id, report, Backoff::default(), ctx);
            }
            act.send_batch(ctx);
        }));
    }

    fn update_gauge(&self) {
        self.metrics
            .spooled_results
            .set((self.in_flight.len() + self.parked.len()) as i64);
    }

    fn attempt(&mut self, job_id: JobId, report: JobResultReport, mut backoff: Backoff, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let send_id = job_id.clone();
        let send = async move {
            let result = client.send_result(&send_id, &report).await;
            (result, report)
        };
        ctx.spawn(send.into_actor(self).map(move |(result, report), act, ctx| {
            let verdict = match &result {
                Ok(()) => Verdict::Delivered,
                Err(error) if matches!(error.http_status(), Some(404 | 409 | 422)) => Verdict::Refused,
                Err(error) if error.http_status() == Some(413) && !is_shrunk(&report) => Verdict::TooLarge,
                Err(_) => Verdict::Retry,
            };
            match verdict {
                Verdict::Delivered => {
                    act.metrics.set_connected(true);
                    tracing::info!(%job_id, outcome = ?report.outcome, "result delivered");
                    act.settle(&job_id);
                }
                Verdict::Refused => {
                    act.metrics.set_connected(true);
                    if let Err(error) = &result {
                        tracing::error!(%job_id, %error, "the orchestrator refused this result for good; dropping it");
                    }
                    act.settle(&job_id);
                }
                Verdict::TooLarge => {
                    tracing::warn!(%job_id, "result too large for the orchestrator; sending it with shortened output");
                    let report = shrink(report);
                    let spooled = SpooledResult { job_id, report };
                    if let Err(error) = act.spool.write(&spooled) {
                        tracing::error!(%error, "shortened result could not be spooled");
                    }
                    act.attempt(spooled.job_id, spooled.report, backoff, ctx);
                }
                Verdict::Retry => {
                    let Err(error) = result else { return };
                    let delay = if error.is_auth_failure() {
                        tracing::error!(%job_id, %error, "result not accepted: API_KEY is invalid or has been revoked; it stays spooled");
                        backoff.slow_delay()
                    } else {
                        act.metrics.set_connected(!error.is_connectivity_problem());
                        let delay = backoff.next_delay();
                        tracing::warn!(%job_id, %error, retry_in_ms = delay.as_millis() as u64, "result not delivered yet; it stays spooled");
                        delay
                    };
                    ctx.run_later(delay, move |act, ctx| act.attempt(job_id, report, backoff, ctx));
                }
            }
        }));
    }

    fn settle(&mut self, job_id: &JobId) {
        if let Err(error) = self.spool.remove(job_id) {
            tracing::error!(%error, "delivered result could not be removed from the spool");
        }
        self.in_flight.remove(job_id);
        self.update_gauge();
    }

    fn begin(&mut self, job_id: JobId, report: JobResultReport, ctx: &mut Context<Self>) {
        if !self.in_flight.insert(job_id.clone()) {
            // Already being delivered; the spool holds the newest copy for a restart.
            return;
        }
        self.update_gauge();
        self.batch.push(SpooledResult { job_id, report });
        self.send_batch(ctx);
    }
}

fn is_shrunk(report: &JobResultReport) -> bool {
    report.stdout.len() <= SHRUNK_OUTPUT_BYTES && report.stderr.len() <= SHRUNK_OUTPUT_BYTES
}

/// Keeps the start of each stream (flagged truncated) so the outcome still gets through.
fn shrink(mut report: JobResultReport) -> JobResultReport {
    for (text, truncated) in [
        (&mut report.stdout, &mut report.stdout_truncated),
        (&mut report.stderr, &mut report.stderr_truncated),
    ] {
        if text.len() > SHRUNK_OUTPUT_BYTES {
            let mut end = SHRUNK_OUTPUT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            *truncated = true;
        }
    }
    report
}

impl Actor for Reporter {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        match self.spool.read_all() {
            Ok(results) => {
                if !results.is_empty() {
                    tracing::info!(count = results.len(), spool = %self.spool.dir().display(), "undelivered results found; they are re-sent once registered");
                }
                self.parked = results;
            }
            Err(error) => tracing::error!(%error, "spooled results cannot be read"),
        }
        self.update_gauge();
    }
}

impl Handler<DeliverResult> for Reporter {
    type Result = ();

    fn handle(&mut self, DeliverResult { job_id, report }: DeliverResult, ctx: &mut Context<Self>) {
        let spooled = SpooledResult { job_id, report };
        if let Err(error) = self.spool.write(&spooled) {
            // Still delivered from memory; only a restart before delivery could lose it.
            tracing::error!(%error, "result could not be spooled to disk");
        }
        self.begin(spooled.job_id, spooled.report, ctx);
    }
}

impl Handler<HeldResults> for Reporter {
    type Result = Vec<String>;

    fn handle(&mut self, _: HeldResults, _: &mut Context<Self>) -> Vec<String> {
        self.in_flight
            .iter()
            .map(JobId::to_string)
            .chain(self.parked.iter().map(|result| result.job_id.to_string()))
            .collect()
    }
}

impl Handler<Registered> for Reporter {
    type Result = ();

    fn handle(&mut self, _: Registered, ctx: &mut Context<Self>) {
        for SpooledResult { job_id, report } in std::mem::take(&mut self.parked) {
            self.begin(job_id, report, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::protocol::RunOutcome;

    #[test]
    fn shrink_keeps_the_start_of_each_stream_on_a_char_boundary() {
        let report = JobResultReport {
            agent_name: "a".into(),
            outcome: RunOutcome::Success,
            exit_code: Some(0),
            stdout: "é".repeat(SHRUNK_OUTPUT_BYTES),
            stderr: "short".into(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: 1,
            started_at_ms: 0,
            completed_at_ms: 1,
            reason: None,
        };
        assert!(!is_shrunk(&report));
        let shrunk = shrink(report);
        assert!(is_shrunk(&shrunk));
        assert_eq!(shrunk.stdout.len(), SHRUNK_OUTPUT_BYTES);
        assert!(shrunk.stdout_truncated);
        assert_eq!(shrunk.stderr, "short");
        assert!(!shrunk.stderr_truncated);
    }
}
