//! The news one replica's writes carry to the others: what changed, never the data itself
//! (the database holds that). PostgreSQL triggers (see the `replicas` migration) send
//! each one with `pg_notify('scriptmesh', payload)`, where the payload is space-separated
//! words: the sender's application name, the kind, then the ids. Ids never hold spaces
//! (tenant, job and schedule ids are prefixed hex; agent names are `[A-Za-z0-9._-]`).

/// The channel every replica LISTENs on.
pub const CHANNEL: &str = "scriptmesh";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A job of this agent became `pending` (created, or put back in the queue).
    JobQueued { tenant_id: String, agent: String },
    /// A job reached a terminal status (or a late result replaced `lost`).
    JobFinished {
        tenant_id: String,
        job_id: String,
        fanout_id: Option<String>,
    },
    /// A dispatched or running job is to be killed by its agent.
    CancelRequested {
        tenant_id: String,
        agent: String,
        job_id: String,
    },
    /// An agent's registration, status, tags or manifest changed, or it was deleted.
    AgentChanged { tenant_id: String, agent: String },
    /// An API key was revoked or deleted.
    KeyChanged { key_id: String },
    /// A schedule was created, changed, fired, paused or deleted.
    ScheduleChanged { tenant_id: String, schedule_id: String },
    /// A running job's output grew.
    OutputAppended { tenant_id: String, job_id: String },
}

/// A notification as received: who sent it, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub origin: String,
    pub signal: Signal,
}

impl Notice {
    /// Reads a payload; `None` for anything malformed or of an unknown kind (a newer
    /// replica may send kinds this one does not know).
    pub fn parse(payload: &str) -> Option<Notice> {
        let mut words = payload.split(' ');
        // Empty for a writer that set no application_name (psql, maintenance scripts).
        let origin = words.next()?.to_owned();
        let kind = words.next()?;
        let mut next = || words.next().filter(|w| !w.is_empty()).map(str::to_owned);
        let signal = match kind {
            "queued" => Signal::JobQueued {
                tenant_id: next()?,
                agent: next()?,
            },
            "finished" => Signal::JobFinished {
                tenant_id: next()?,
                job_id: next()?,
                fanout_id: next(),
            },
            "cancel" => Signal::CancelRequested {
                tenant_id: next()?,
                agent: next()?,
                job_id: next()?,
            },
            "agent" => Signal::AgentChanged {
                tenant_id: next()?,
                agent: next()?,
            },
            "key" => Signal::KeyChanged { key_id: next()? },
            "schedule" => Signal::ScheduleChanged {
                tenant_id: next()?,
                schedule_id: next()?,
            },
            "output" => Signal::OutputAppended {
                tenant_id: next()?,
                job_id: next()?,
            },
            _ => return None,
        };
        Some(Notice { origin, signal })
    }
}

impl Signal {
    /// The tenant whose supervisor should hear of it, if any.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Signal::JobQueued { tenant_id, .. }
            | Signal::JobFinished { tenant_id, .. }
            | Signal::CancelRequested { tenant_id, .. }
            | Signal::AgentChanged { tenant_id, .. }
            | Signal::ScheduleChanged { tenant_id, .. }
            | Signal::OutputAppended { tenant_id, .. } => Some(tenant_id),
            Signal::KeyChanged { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(payload: &str) -> Option<Signal> {
        Notice::parse(payload).map(|notice| notice.signal)
    }

    #[test]
    fn reads_every_kind() {
        assert_eq!(
            Notice::parse("scriptmesh-ab12 queued ten_1 web-1"),
            Some(Notice {
                origin: "scriptmesh-ab12".into(),
                signal: Signal::JobQueued {
                    tenant_id: "ten_1".into(),
                    agent: "web-1".into()
                }
            })
        );
        assert_eq!(
            parsed("o finished ten_1 job_9"),
            Some(Signal::JobFinished {
                tenant_id: "ten_1".into(),
                job_id: "job_9".into(),
                fanout_id: None
            })
        );
        assert_eq!(
            parsed("o finished ten_1 job_9 fan_3"),
            Some(Signal::JobFinished {
                tenant_id: "ten_1".into(),
                job_id: "job_9".into(),
                fanout_id: Some("fan_3".into())
            })
        );
        assert_eq!(
            parsed("o cancel ten_1 web-1 job_9"),
            Some(Signal::CancelRequested {
                tenant_id: "ten_1".into(),
                agent: "web-1".into(),
                job_id: "job_9".into()
            })
        );
        assert_eq!(
            parsed("o agent ten_1 db.2"),
            Some(Signal::AgentChanged {
                tenant_id: "ten_1".into(),
                agent: "db.2".into()
            })
        );
        assert_eq!(
            parsed("o key key_4"),
            Some(Signal::KeyChanged { key_id: "key_4".into() })
        );
        assert_eq!(
            parsed("o schedule ten_1 sched_5"),
            Some(Signal::ScheduleChanged {
                tenant_id: "ten_1".into(),
                schedule_id: "sched_5".into()
            })
        );
        assert_eq!(
            parsed("o output ten_1 job_9"),
            Some(Signal::OutputAppended {
                tenant_id: "ten_1".into(),
                job_id: "job_9".into()
            })
        );
    }

    #[test]
    fn a_writer_without_a_name_still_counts() {
        assert_eq!(
            Notice::parse(" queued ten_1 web-1").map(|n| n.origin),
            Some(String::new())
        );
    }

    #[test]
    fn ignores_what_it_cannot_read() {
        for payload in [
            "",
            "origin",
            "o queued",
            "o queued ten_1",
            "o cancel ten_1 web-1",
            "o teleported ten_1 x",
            "o key",
        ] {
            assert_eq!(Notice::parse(payload), None, "{payload:?}");
        }
    }
}
