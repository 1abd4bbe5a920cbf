//! The event bus: domain events published by tenant supervisors (job.succeeded, job.failed,
//! job.completed, agent.online, agent.offline, ...) are written to the event log, from which
//! integrations, webhooks and metrics are fed.

use crate::db::{self, models::Event, Db};
use actix::prelude::*;
use serde_json::Value;

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

pub struct EventBus {
    db: Db,
}

impl EventBus {
    pub fn new(db: Db) -> EventBus {
        EventBus { db }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, event: Publish, ctx: &mut Context<Self>) {
        tracing::info!(tenant = %event.tenant_id, event = event.event_type.as_str(), "event");
        let row = Event {
            id: db::new_id("evt"),
            tenant_id: event.tenant_id,
            event_type: event.event_type.as_str().to_owned(),
            payload: event.payload.to_string(),
            created_at: db::now_ms(),
        };
        let db = self.db.clone();
        ctx.spawn(
            async move {
                if let Err(error) = db::events::insert(&db, &row).await {
                    tracing::error!(%error, event = %row.event_type, "could not record an event");
                }
            }
            .into_actor(self),
        );
    }
}
