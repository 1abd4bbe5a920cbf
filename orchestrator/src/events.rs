//! The event bus: domain events published by tenant supervisors (job.succeeded, job.failed,
//! job.completed, agent.online, agent.offline, ...) are written to the event log, from which
//! integrations, webhooks and metrics are fed.

use crate::db::{self, models::Event, Db};
use actix::prelude::*;
use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    JobSucceeded,
    JobFailed,
    JobCompleted,
    JobCancelled,
    AgentOnline,
    AgentOffline,
    AgentRegistered,
    /// A schedule's fire was missed (the orchestrator was not running at its time).
    ScheduleMissed,
}

impl EventType {
    /// Every event type, in the order the API lists them.
    pub const ALL: [EventType; 8] = [
        EventType::JobSucceeded,
        EventType::JobFailed,
        EventType::JobCompleted,
        EventType::JobCancelled,
        EventType::AgentOnline,
        EventType::AgentOffline,
        EventType::AgentRegistered,
        EventType::ScheduleMissed,
    ];

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobSucceeded => "job.succeeded",
            EventType::JobFailed => "job.failed",
            EventType::JobCompleted => "job.completed",
            EventType::JobCancelled => "job.cancelled",
            EventType::AgentOnline => "agent.online",
            EventType::AgentOffline => "agent.offline",
            EventType::AgentRegistered => "agent.registered",
            EventType::ScheduleMissed => "schedule.missed",
        }
    }
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub tenant_id: String,
    pub event_type: EventType,
    pub payload: Value,
}

/// The events of one written batch, handed to the listener (the integrations dispatcher)
/// once they are in the event log.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct Recorded(pub Vec<Event>);

/// Events are written in batches: one transaction per burst instead of one per event keeps
/// the write path of busy tenants short. A batch waits at most [`FLUSH_DELAY`].
const FLUSH_DELAY: Duration = Duration::from_millis(20);
const MAX_BATCH: usize = 500;

pub struct EventBus {
    db: Db,
    buffer: Vec<Event>,
    flush_scheduled: bool,
    listener: Option<Recipient<Recorded>>,
}

impl EventBus {
    pub fn new(db: Db) -> EventBus {
        EventBus {
            db,
            buffer: Vec::new(),
            flush_scheduled: false,
            listener: None,
        }
    }

    /// Recorded batches go on to `listener` (with `do_send`: the bus never waits for it).
    pub fn with_listener(mut self, listener: Recipient<Recorded>) -> EventBus {
        self.listener = Some(listener);
        self
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if self.buffer.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.buffer);
        let db = self.db.clone();
        let listener = self.listener.clone();
        ctx.spawn(
            async move {
                match db::events::insert_many(&db, &batch).await {
                    Ok(()) => {
                        if let Some(listener) = listener {
                            listener.do_send(Recorded(batch));
                        }
                    }
                    Err(error) => tracing::error!(%error, events = batch.len(), "could not record events"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        self.flush(ctx);
        Running::Stop
    }
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, event: Publish, ctx: &mut Context<Self>) {
        tracing::debug!(tenant = %event.tenant_id, event = event.event_type.as_str(), "event");
        self.buffer.push(Event {
            id: db::new_id("evt"),
            tenant_id: event.tenant_id,
            event_type: event.event_type.as_str().to_owned(),
            payload: event.payload.to_string(),
            created_at: db::now_ms(),
        });
        if self.buffer.len() >= MAX_BATCH {
            self.flush(ctx);
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(FLUSH_DELAY, |bus, ctx| bus.flush(ctx));
        }
    }
}
