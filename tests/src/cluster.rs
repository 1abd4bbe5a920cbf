//! Several orchestrator replicas on one PostgreSQL database, as behind a load balancer:
//! one account, one agent key, and a [`Fleet`] per replica (same user, same key), so
//! every fleet helper works against any replica. On SQLite, the embedded one-process
//! default, a second orchestrator is refused; [`Cluster::start`] checks that refusal and
//! answers `None`.

use crate::agent::{AgentSpec, TestAgent};
use crate::app::{TestApp, TestAppBuilder};
use crate::fleet::{Fleet, FLEET_WAIT};

/// What the orchestrator says when a second process opens the same SQLite file.
pub const SQLITE_REFUSAL: &str = "SQLite is the embedded one-process default";

pub struct Cluster {
    pub replicas: Vec<Fleet>,
}

impl Cluster {
    /// `count` replicas with the default test configuration.
    pub async fn start(count: usize) -> Option<Cluster> {
        Cluster::start_with(count, TestApp::builder()).await
    }

    /// `count` replicas sharing `builder`'s variables.
    pub async fn start_with(count: usize, builder: TestAppBuilder) -> Option<Cluster> {
        let first = Fleet::start_with(builder).await;
        let mut replicas = vec![];
        for _ in 1..count {
            match first.app.try_start_replica().await {
                Ok(app) => replicas.push(first.joined_by(app)),
                Err(failure) if first.app.backend() == "sqlite" => {
                    assert!(failure.stderr.contains(SQLITE_REFUSAL), "{failure}");
                    eprintln!(
                        "SQLite: a second orchestrator is refused, as it should be; the replica checks need PostgreSQL"
                    );
                    return None;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
        replicas.insert(0, first);
        Some(Cluster { replicas })
    }

    pub fn replica(&self, index: usize) -> &Fleet {
        &self.replicas[index]
    }

    pub fn replica_mut(&mut self, index: usize) -> &mut Fleet {
        &mut self.replicas[index]
    }

    /// The replicas' URLs in this order, comma-separated: an agent's ORCHESTRATOR_URL.
    pub fn urls(&self, order: &[usize]) -> String {
        order
            .iter()
            .map(|&index| self.replicas[index].app.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a real agent talking to these replicas (the first until it fails) and waits
    /// until every replica shows it online.
    pub async fn start_agent(&self, order: &[usize], spec: AgentSpec) -> TestAgent {
        let name = spec.name.clone();
        let spec = spec.env("ORCHESTRATOR_URL", &self.urls(order));
        let agent = self.replicas[order[0]].app.start_agent(spec).await;
        for replica in &self.replicas {
            replica
                .app
                .wait_for_agent_status(&replica.session.access_token, &name, "online", FLEET_WAIT)
                .await;
        }
        agent
    }
}
