//! The executor actor: owns the running jobs (at most MAX_CONCURRENT_JOBS), the current
//! manifest they are checked against, and the means to stop them. Each finished job's
//! report goes to the reporter before its slot is freed, and after the rest of its live
//! output (if it streamed any) went to the orchestrator.

pub mod capture;
pub mod mask;
pub mod process;
pub mod run;

use crate::live::LiveOutputHandle;
use crate::manifest::LoadedManifest;
use crate::metrics::Metrics;
use crate::reporter::DeliverResult;
use actix::prelude::*;
use process::{NoLiveOutput, OutputSink, StopReason};
use run::ExecutionSettings;
use shared_protocol::protocol::{JobAssignment, JobResultReport, RunOutcome};
use shared_protocol::JobId;
use std::collections::{HashMap, VecDeque};
use tokio::sync::oneshot;

/// Run this job (its start was acknowledged by the orchestrator).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunJob(pub JobAssignment);

/// Kill these jobs if they run here; report them `cancelled`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelJobs(pub Vec<String>);

/// How many more jobs could start right now.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct FreeSlots;

/// Ids of the jobs running (or waiting for a slot) here.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct RunningJobIds;

/// The manifest was re-read from disk; later jobs are checked against this one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ManifestReloaded(pub LoadedManifest);

/// Sent to the listener (the poller) each time a job finishes.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct SlotFreed;

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSlotListener(pub Recipient<SlotFreed>);

/// Stop accepting jobs, kill the running ones and resolve once every report is spooled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

struct RunningJob {
    /// Taken when a stop was requested, so a job is only stopped once.
    stop: Option<oneshot::Sender<StopReason>>,
}

pub struct Executor {
    settings: ExecutionSettings,
    max_concurrent_jobs: usize,
    manifest: LoadedManifest,
    reporter: Recipient<DeliverResult>,
    /// None with LIVE_OUTPUT=false.
    live: Option<LiveOutputHandle>,
    slot_listener: Option<Recipient<SlotFreed>>,
    metrics: Metrics,
    running: HashMap<JobId, RunningJob>,
    /// Only used if the orchestrator hands over more jobs than asked for: they wait for
    /// a slot rather than break the concurrency limit.
    queued: VecDeque<JobAssignment>,
    shutting_down: bool,
    idle_waiters: Vec<oneshot::Sender<()>>,
}

impl Executor {
    pub fn new(
        settings: ExecutionSettings,
        max_concurrent_jobs: usize,
        manifest: LoadedManifest,
        reporter: Recipient<DeliverResult>,
        live: Option<LiveOutputHandle>,
        metrics: Metrics,
    ) -> Executor {
        Executor {
            settings,
            max_concurrent_jobs,
            manifest,
            reporter,
            live,
            slot_listener: None,
            metrics,
            running: HashMap::new(),
            queued: VecDeque::new(),
            shutting_down: false,
            idle_waiters: Vec::new(),
        }
    }

    fn occupancy(&self) -> usize {
        self.running.len() + self.queued.len()
    }

    fn update_gauge(&self) {
        self.metrics.running_jobs.set(self.occupancy() as i64);
    }

    fn is_known(&self, job_id: &str) -> bool {
        self.running.keys().any(|id| id.as_str() == job_id) || self.queued.iter().any(|job| job.job_id == job_id)
    }

    fn start(&mut self, job: JobAssignment, ctx: &mut Context<Self>) {
        let job_id = JobId::from(job.job_id.clone());
        let (stop_sender, stop_receiver) = oneshot::channel();
        self.running.insert(
            job_id.clone(),
            RunningJob {
                stop: Some(stop_sender),
            },
        );
        self.metrics.jobs_started.inc();
        self.update_gauge();

        let manifest = self.manifest.clone();
        let settings = self.settings.clone();
        let reporter = self.reporter.clone();
        let live = self.live.clone();
        let report_id = job_id.clone();
        let run = async move {
            let stop = async move {
                match stop_receiver.await {
                    Ok(reason) => reason,
                    // No sender any more means nobody can ask for a stop: wait forever.
                    Err(_) => std::future::pending().await,
                }
            };
            let tap = live.as_ref().map(|live| live.begin(&report_id));
            let sink: &dyn OutputSink = match &tap {
                Some(tap) => tap,
                None => &NoLiveOutput,
            };
            let report = run::execute(&job, &manifest, &settings, stop, sink).await;
            if let Some(live) = &live {
                // Followers see the output whole before the job turns terminal.
                live.finish(&report_id).await;
            }
            let outcome = report.outcome;
            deliver(reporter, report_id, report).await;
            outcome
        };
        ctx.spawn(
            run.into_actor(self)
                .map(move |outcome, act, ctx| act.finished(&job_id, outcome, ctx)),
        );
    }

    fn finished(&mut self, job_id: &JobId, outcome: RunOutcome, ctx: &mut Context<Self>) {
        self.running.remove(job_id);
        self.metrics.job_finished(outcome);
        if !self.shutting_down && self.running.len() < self.max_concurrent_jobs {
            if let Some(next) = self.queued.pop_front() {
                self.start(next, ctx);
            }
        }
        self.update_gauge();
        if let Some(listener) = &self.slot_listener {
            listener.do_send(SlotFreed);
        }
        if self.occupancy() == 0 {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Reports a job that will not run without taking a slot for it.
    fn report_without_running(&self, job_id: JobId, report: JobResultReport, ctx: &mut Context<Self>) {
        self.metrics.job_finished(report.outcome);
        ctx.spawn(deliver(self.reporter.clone(), job_id, report).into_actor(self));
    }
}

async fn deliver(reporter: Recipient<DeliverResult>, job_id: JobId, report: JobResultReport) {
    // Awaited (not fire-and-forget) so the result is spooled before the slot is freed.
    if let Err(error) = reporter
        .send(DeliverResult {
            job_id: job_id.clone(),
            report,
        })
        .await
    {
        tracing::error!(%job_id, %error, "the reporter is gone; result lost");
    }
}

impl Actor for Executor {
    type Context = Context<Self>;
}

impl Handler<RunJob> for Executor {
    type Result = ();

    fn handle(&mut self, RunJob(job): RunJob, ctx: &mut Context<Self>) {
        if self.is_known(&job.job_id) {
            tracing::warn!(job_id = %job.job_id, "job handed over twice; the second copy is ignored");
            return;
        }
        if self.shutting_down {
            let report = run::rejected(&self.settings.agent_name, "the agent is shutting down", run::now_ms());
            self.report_without_running(JobId::from(job.job_id), report, ctx);
            return;
        }
        if self.running.len() >= self.max_concurrent_jobs {
            tracing::warn!(job_id = %job.job_id, "more jobs than free slots were handed over; this one waits for a slot");
            self.queued.push_back(job);
            self.update_gauge();
            return;
        }
        self.start(job, ctx);
    }
}

impl Handler<CancelJobs> for Executor {
    type Result = ();

    fn handle(&mut self, CancelJobs(job_ids): CancelJobs, ctx: &mut Context<Self>) {
        for job_id in job_ids {
            if let Some(job) = self.running.get_mut(&JobId::from(job_id.as_str())) {
                if let Some(stop) = job.stop.take() {
                    tracing::info!(%job_id, "cancelling job: stopping its process group");
                    let _ = stop.send(StopReason::Cancelled);
                }
            } else if let Some(index) = self.queued.iter().position(|job| job.job_id == job_id) {
                self.queued.remove(index);
                self.update_gauge();
                let report = run::cancelled_before_start(&self.settings.agent_name);
                self.report_without_running(JobId::from(job_id), report, ctx);
            } else {
                tracing::debug!(%job_id, "cancel for a job not running here ignored");
            }
        }
    }
}

impl Handler<FreeSlots> for Executor {
    type Result = usize;

    fn handle(&mut self, _: FreeSlots, _: &mut Context<Self>) -> usize {
        if self.shutting_down {
            return 0;
        }
        self.max_concurrent_jobs.saturating_sub(self.occupancy())
    }
}

impl Handler<RunningJobIds> for Executor {
    type Result = Vec<String>;

    fn handle(&mut self, _: RunningJobIds, _: &mut Context<Self>) -> Vec<String> {
        self.running
            .keys()
            .map(|id| id.to_string())
            .chain(self.queued.iter().map(|job| job.job_id.clone()))
            .collect()
    }
}

impl Handler<ManifestReloaded> for Executor {
    type Result = ();

    fn handle(&mut self, ManifestReloaded(manifest): ManifestReloaded, _: &mut Context<Self>) {
        if manifest != self.manifest {
            tracing::info!(scripts = ?manifest.entries().iter().map(|e| &e.name).collect::<Vec<_>>(), "manifest changed");
            manifest.log_problems();
        }
        self.metrics.manifest_scripts.set(manifest.len() as i64);
        self.manifest = manifest;
    }
}

impl Handler<SetSlotListener> for Executor {
    type Result = ();

    fn handle(&mut self, SetSlotListener(listener): SetSlotListener, _: &mut Context<Self>) {
        self.slot_listener = Some(listener);
    }
}

impl Handler<Shutdown> for Executor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        self.shutting_down = true;
        if let Some(live) = &self.live {
            // The results must reach the spool within the shutdown budget.
            live.shut_down();
        }
        for job in std::mem::take(&mut self.queued) {
            let report = run::rejected(
                &self.settings.agent_name,
                "the agent shut down before the script started",
                run::now_ms(),
            );
            self.report_without_running(JobId::from(job.job_id), report, ctx);
        }
        self.update_gauge();
        for (job_id, job) in &mut self.running {
            if let Some(stop) = job.stop.take() {
                tracing::warn!(%job_id, "agent shutting down: stopping the job");
                let _ = stop.send(StopReason::Shutdown);
            }
        }
        let (idle_sender, idle_receiver) = oneshot::channel();
        if self.running.is_empty() {
            let _ = idle_sender.send(());
        } else {
            self.idle_waiters.push(idle_sender);
        }
        Box::pin(async move {
            let _ = idle_receiver.await;
        })
    }
}
