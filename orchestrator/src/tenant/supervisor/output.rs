//! Live output: an agent's chunks of its running jobs are checked against the agent's key,
//! stored, and this process's followers are woken (other replicas' followers hear of it
//! from the database's notification).

use super::TenantSupervisor;
use crate::db;
use crate::error::Result;
use crate::tenant::messages::AppendOutput;
use actix::prelude::*;
use shared_protocol::protocol::OutputAck;
use std::collections::BTreeSet;

impl Handler<AppendOutput> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<OutputAck>>;

    fn handle(&mut self, msg: AppendOutput, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.agent.clone();
        self.with_agent_then(&agent, ctx, move |act, _| {
            let authorized = act.authorized_agent(&msg.agent, &msg.api_key_id).map(|_| ());
            let (db, tenant_id, watchers) = (act.db.clone(), act.tenant_id.clone(), act.watchers.clone());
            Box::pin(
                async move {
                    authorized?;
                    let ack = db::jobs::output::append(&db, &tenant_id, &msg.agent, &msg.chunks).await?;
                    let stopped: BTreeSet<&str> = ack.stop.iter().map(String::as_str).collect();
                    let touched: BTreeSet<&str> = msg.chunks.iter().map(|chunk| chunk.job_id.as_str()).collect();
                    for job_id in touched.difference(&stopped) {
                        watchers.touch(job_id);
                    }
                    Ok(ack)
                }
                .into_actor(act),
            )
        })
    }
}
