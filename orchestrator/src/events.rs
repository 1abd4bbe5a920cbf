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
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobSucceeded => "job.succeeded",
            EventType::JobFailed => "job.failed",
            EventType::JobCompleted => "job.completed",
            EventType::JobCancelled => "job.cancelled",
            EventType::AgentOnline => "agent.online",
            EventType::AgentOffline => "agent.offline",
            EventType::AgentRegistered => "agent.registered",
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

/// Events are written in batches: one transaction per burst instead of one per event keeps
/// the write path of busy tenants short. A batch waits at most [`FLUSH_DELAY`].
const FLUSH_DELAY: Duration = Duration::from_millis(20);
const MAX_BATCH: usize = 500;

pub struct EventBus {
    db: Db,
    buffer: Vec<Event>,
    flush_scheduled: bool,
}

impl EventBus {
    pub fn new(db: Db) -> EventBus {
        EventBus {
            db,
            buffer: Vec::new(),
            flush_scheduled: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if self.buffer.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.buffer);
        let db = self.db.clone();
        ctx.spawn(
            async move {
                if let Err(error) = db::events::insert_many(&db, &batch).await {
                    tracing::error!(%error, events = batch.len(), "could not record events");
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
