//! Rollout controls of fan-outs: the database decides each step (see
//! `db::jobs::rollout`); this actor asks for a step when a fan-out job finishes here, one
//! at a time per fan-out, and hands released jobs to the agents' polls.

use super::TenantSupervisor;
use crate::db::{self};
use crate::tenant::messages::AdvanceRollout;
use actix::prelude::*;
use std::collections::HashMap;

/// Fan-outs with a step in flight, and whether news came meanwhile.
#[derive(Default)]
pub(super) struct Rollouts {
    in_flight: HashMap<String, bool>,
}

impl Rollouts {
    /// Whether to start a step now (none in flight); else one more is asked for after it.
    pub fn begin(&mut self, fanout_id: &str) -> bool {
        match self.in_flight.get_mut(fanout_id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                self.in_flight.insert(fanout_id.to_owned(), false);
                true
            }
        }
    }

    /// A step ended: whether to take another at once (news came during it).
    pub fn end(&mut self, fanout_id: &str) -> bool {
        self.in_flight.remove(fanout_id).unwrap_or(false)
    }
}

impl Handler<AdvanceRollout> for TenantSupervisor {
    type Result = ();

    /// One step at a time per fan-out; news meanwhile asks for one more after it.
    fn handle(&mut self, msg: AdvanceRollout, ctx: &mut Context<Self>) {
        let fanout_id = msg.fanout_id;
        if !self.rollouts.begin(&fanout_id) {
            return;
        }
        let (db, tenant, id) = (self.db.clone(), self.tenant_id.clone(), fanout_id.clone());
        let step = async move { db::jobs::rollout::advance(&db, &tenant, &id, db::now_ms()).await };
        ctx.spawn(step.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(step) => {
                    for agent in &step.released {
                        act.dispatch.queued(agent);
                        act.pump(agent, ctx);
                    }
                    for job in &step.cancelled {
                        act.job_finished(job);
                    }
                }
                Err(error) => tracing::warn!(%error, fanout = %fanout_id, "rollout step failed; the re-check retries"),
            }
            if act.rollouts.end(&fanout_id) {
                ctx.notify(AdvanceRollout { fanout_id });
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_at_a_time_and_one_more_for_news_meanwhile() {
        let mut rollouts = Rollouts::default();
        assert!(rollouts.begin("fan_a"));
        assert!(!rollouts.begin("fan_a"), "a step is in flight");
        assert!(!rollouts.begin("fan_a"), "news collapse into one more step");
        assert!(rollouts.begin("fan_b"), "fan-outs are independent");
        assert!(rollouts.end("fan_a"), "news came: one more");
        assert!(rollouts.begin("fan_a"));
        assert!(!rollouts.end("fan_a"), "no news: done");
        assert!(!rollouts.end("fan_b"));
    }
}
