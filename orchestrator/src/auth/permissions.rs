//! Who may do what: the roles, the permissions they grant, and the one table that names
//! the access every endpoint needs ([`ENDPOINTS`]). `docs::Endpoint` looks each route up
//! here when the routes are built (a route with no entry stops start-up), and the `Caller`
//! extractor checks the caller's role against it on every request, before the handler runs.
//! Handlers only narrow further what a key's scope allows (its agents, tags and scripts).
//!
//! A leaf module: it imports nothing of the crate, so anything may use it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's role in a tenant, or an API key's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything an admin may do, and managing owners. A tenant always keeps one.
    Owner,
    /// Also manages API keys, integrations, members and agents, and reads the audit log.
    Admin,
    /// Also triggers, fans out, cancels, and manages schedules.
    Operator,
    /// Reads agents, jobs, outputs, fan-outs, schedules, deliveries and metrics.
    Viewer,
    /// API keys only: speaks the agent protocol for the agents its patterns name.
    Agent,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer, Role::Agent];
    /// Roles a person can hold in a tenant.
    pub const MEMBER_ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer];
    /// Roles an API key can carry.
    pub const KEY_ROLES: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The permission table, by role.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => permission != OwnersManage,
            Role::Operator => matches!(
                permission,
                AgentsRead
                    | JobsRead
                    | SchedulesRead
                    | DeliveriesRead
                    | MetricsRead
                    | Account
                    | JobsRun
                    | SchedulesWrite
            ),
            Role::Viewer => matches!(
                permission,
                AgentsRead | JobsRead | SchedulesRead | DeliveriesRead | MetricsRead | Account
            ),
            Role::Agent => matches!(permission, AgentProtocol | AgentsRead),
        }
    }

    /// Whether everything `self` grants, `other` grants too: a key never exceeds its
    /// creator's role, nor an invitation the inviter's.
    pub fn within(self, other: Role) -> bool {
        Permission::ALL
            .into_iter()
            .all(|permission| !self.grants(permission) || other.grants(permission))
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| self.grants(*p)).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum Permission {
    #[serde(rename = "agents.read")]
    AgentsRead,
    #[serde(rename = "jobs.read")]
    JobsRead,
    #[serde(rename = "schedules.read")]
    SchedulesRead,
    #[serde(rename = "deliveries.read")]
    DeliveriesRead,
    #[serde(rename = "metrics.read")]
    MetricsRead,
    /// Trigger, fan out, cancel.
    #[serde(rename = "jobs.run")]
    JobsRun,
    #[serde(rename = "schedules.write")]
    SchedulesWrite,
    /// Register agents by hand, remove agents.
    #[serde(rename = "agents.manage")]
    AgentsManage,
    /// Read and change integrations (their settings hold secrets).
    #[serde(rename = "integrations.manage")]
    IntegrationsManage,
    #[serde(rename = "keys.manage")]
    KeysManage,
    #[serde(rename = "members.manage")]
    MembersManage,
    #[serde(rename = "audit.read")]
    AuditRead,
    /// Make, change or remove owners.
    #[serde(rename = "owners.manage")]
    OwnersManage,
    /// Register, poll, heartbeat, start, report results and output, as an agent.
    #[serde(rename = "agent.protocol")]
    AgentProtocol,
    /// One's own account (change the password).
    #[serde(rename = "account")]
    Account,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::AgentsRead,
        Permission::JobsRead,
        Permission::SchedulesRead,
        Permission::DeliveriesRead,
        Permission::MetricsRead,
        Permission::JobsRun,
        Permission::SchedulesWrite,
        Permission::AgentsManage,
        Permission::IntegrationsManage,
        Permission::KeysManage,
        Permission::MembersManage,
        Permission::AuditRead,
        Permission::OwnersManage,
        Permission::AgentProtocol,
        Permission::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::AgentsRead => "agents.read",
            Permission::JobsRead => "jobs.read",
            Permission::SchedulesRead => "schedules.read",
            Permission::DeliveriesRead => "deliveries.read",
            Permission::MetricsRead => "metrics.read",
            Permission::JobsRun => "jobs.run",
            Permission::SchedulesWrite => "schedules.write",
            Permission::AgentsManage => "agents.manage",
            Permission::IntegrationsManage => "integrations.manage",
            Permission::KeysManage => "keys.manage",
            Permission::MembersManage => "members.manage",
            Permission::AuditRead => "audit.read",
            Permission::OwnersManage => "owners.manage",
            Permission::AgentProtocol => "agent.protocol",
            Permission::Account => "account",
        }
    }

    /// Permissions only a logged-in person uses, never an API key: a leaked key must not
    /// mint keys, invite members or change a password.
    pub fn person_only(self) -> bool {
        matches!(
            self,
            Permission::KeysManage | Permission::MembersManage | Permission::OwnersManage | Permission::Account
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an endpoint needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credential (sign-up, login, health; `/metrics` checks its own token).
    Public,
    /// Any valid credential of the tenant (`/auth/me`).
    Authenticated,
    Requires(Permission),
}

use Access::{Authenticated, Public, Requires};
use Permission::*;

/// Every endpoint of the API, by method and path as registered, with the access it needs.
/// The book's permission table is this table (`tests` check the two agree).
pub const ENDPOINTS: &[(&str, &str, Access)] = &[
    ("GET", "/health", Public),
    ("HEAD", "/health", Public),
    ("POST", "/auth/register", Public),
    ("POST", "/auth/verify-email", Public),
    ("POST", "/auth/resend-code", Public),
    ("POST", "/auth/login", Public),
    ("POST", "/auth/refresh", Public),
    ("POST", "/auth/logout", Public),
    ("POST", "/auth/accept-invite", Public),
    ("POST", "/auth/forgot-password", Public),
    ("POST", "/auth/reset-password", Public),
    ("GET", "/auth/me", Authenticated),
    ("POST", "/auth/change-password", Requires(Account)),
    ("GET", "/auth/api-keys", Requires(KeysManage)),
    ("POST", "/auth/api-keys", Requires(KeysManage)),
    ("DELETE", "/auth/api-keys/{id}", Requires(KeysManage)),
    ("GET", "/tenant/members", Requires(MembersManage)),
    ("POST", "/tenant/members", Requires(MembersManage)),
    ("PATCH", "/tenant/members/{id}", Requires(MembersManage)),
    ("DELETE", "/tenant/members/{id}", Requires(MembersManage)),
    ("GET", "/audit", Requires(AuditRead)),
    ("POST", "/register-agent", Requires(AgentProtocol)),
    ("GET", "/agents", Requires(AgentsRead)),
    ("GET", "/agents/{name}", Requires(AgentsRead)),
    ("DELETE", "/agents/{name}", Requires(AgentsManage)),
    ("GET", "/get-scripts", Requires(AgentsRead)),
    ("POST", "/agent/heartbeat", Requires(AgentProtocol)),
    ("GET", "/agent/poll", Requires(AgentProtocol)),
    ("POST", "/agent/poll", Requires(AgentProtocol)),
    ("POST", "/agent/jobs/{id}/start", Requires(AgentProtocol)),
    ("POST", "/agent/jobs/{id}/result", Requires(AgentProtocol)),
    ("POST", "/agent/results", Requires(AgentProtocol)),
    ("POST", "/agent/output", Requires(AgentProtocol)),
    ("POST", "/trigger-script", Requires(JobsRun)),
    ("GET", "/jobs", Requires(JobsRead)),
    ("GET", "/jobs/{job_id}", Requires(JobsRead)),
    ("POST", "/jobs/{job_id}/cancel", Requires(JobsRun)),
    ("GET", "/jobs/{id}/output", Requires(JobsRead)),
    ("POST", "/fan-out", Requires(JobsRun)),
    ("GET", "/fan-out/{id}", Requires(JobsRead)),
    ("GET", "/integrations", Requires(IntegrationsManage)),
    ("POST", "/integrations", Requires(IntegrationsManage)),
    ("GET", "/integrations/{id}", Requires(IntegrationsManage)),
    ("PATCH", "/integrations/{id}", Requires(IntegrationsManage)),
    ("DELETE", "/integrations/{id}", Requires(IntegrationsManage)),
    ("POST", "/integrations/{id}/test", Requires(IntegrationsManage)),
    ("GET", "/integrations/{id}/deliveries", Requires(DeliveriesRead)),
    ("GET", "/deliveries", Requires(DeliveriesRead)),
    ("GET", "/deliveries/{id}", Requires(DeliveriesRead)),
    ("GET", "/metrics", Public),
    ("GET", "/metrics/json", Requires(MetricsRead)),
    ("GET", "/schedules", Requires(SchedulesRead)),
    ("POST", "/schedules", Requires(SchedulesWrite)),
    ("GET", "/schedules/{id}", Requires(SchedulesRead)),
    ("PATCH", "/schedules/{id}", Requires(SchedulesWrite)),
    ("DELETE", "/schedules/{id}", Requires(SchedulesWrite)),
    ("POST", "/schedules/{id}/pause", Requires(SchedulesWrite)),
    ("POST", "/schedules/{id}/resume", Requires(SchedulesWrite)),
    ("GET", "/schedules/preview", Requires(SchedulesRead)),
    ("GET", "/schedules/{id}/runs", Requires(SchedulesRead)),
];

/// The access `method` on `path` needs, from [`ENDPOINTS`].
pub fn access(method: &str, path: &str) -> Option<Access> {
    ENDPOINTS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, access)| *access)
}

/// What an API key may touch beyond its role: the agents an `agent` key speaks for, the
/// tags and scripts an `operator` key is narrowed to. Empty lists narrow nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    /// Agent name patterns (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Agents carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// These scripts only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<String>,
}

impl KeyScope {
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.tags.is_empty() && self.scripts.is_empty()
    }

    /// Whether the key may act for (or see) the agent `name`.
    pub fn allows_agent(&self, name: &str) -> bool {
        self.agents.is_empty() || self.agents.iter().any(|pattern| matches_pattern(pattern, name))
    }

    /// Whether the key may run `script`.
    pub fn allows_script(&self, script: &str) -> bool {
        self.scripts.is_empty() || self.scripts.iter().any(|allowed| allowed == script)
    }

    /// Whether the key may run jobs on an agent carrying `agent_tags`.
    pub fn allows_tags(&self, agent_tags: &[String]) -> bool {
        self.tags.iter().all(|tag| agent_tags.contains(tag))
    }
}

/// Glob matching with `*` only (any run of characters, also none); everything else is
/// literal. Greedy with backtracking to the last star: linear for one star, and at worst
/// O(pattern × name), which the 128-character limits on both keep small.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The permission table as Markdown, one row per permission and a column per role: the
/// book's "Roles and permissions" section holds exactly this.
pub fn markdown_table() -> String {
    let mut out = String::from("| Permission | owner | admin | operator | viewer | agent key |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for permission in Permission::ALL {
        out.push_str(&format!("| `{permission}` |"));
        for role in Role::ALL {
            out.push_str(if role.grants(permission) { " ✓ |" } else { "   |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested_and_owner_is_on_top() {
        let chain = [Role::Viewer, Role::Operator, Role::Admin, Role::Owner];
        for pair in chain.windows(2) {
            assert!(pair[0].within(pair[1]), "{} within {}", pair[0], pair[1]);
            assert!(!pair[1].within(pair[0]), "{} not within {}", pair[1], pair[0]);
        }
        assert!(Role::Agent.within(Role::Admin));
        assert!(!Role::Agent.within(Role::Operator), "operators do not speak for agents");
        assert!(!Role::Viewer.within(Role::Agent));
    }

    #[test]
    fn the_table_says_what_the_issue_says() {
        assert!(Role::Viewer.grants(Permission::JobsRead));
        assert!(!Role::Viewer.grants(Permission::JobsRun));
        assert!(Role::Operator.grants(Permission::SchedulesWrite));
        assert!(!Role::Operator.grants(Permission::KeysManage));
        assert!(Role::Admin.grants(Permission::MembersManage));
        assert!(!Role::Admin.grants(Permission::OwnersManage));
        assert!(Role::Owner.grants(Permission::OwnersManage));
        assert!(!Role::Agent.grants(Permission::JobsRead));
        assert!(!Role::Agent.grants(Permission::JobsRun));
    }

    #[test]
    fn every_endpoint_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (method, path, _) in ENDPOINTS {
            assert!(seen.insert((method, path)), "{method} {path} is listed twice");
        }
        assert_eq!(
            access("POST", "/trigger-script"),
            Some(Access::Requires(Permission::JobsRun))
        );
        assert_eq!(access("PUT", "/trigger-script"), None);
    }

    #[test]
    fn patterns_match_with_stars_only() {
        for (pattern, name, expected) in [
            ("prod-*", "prod-web-1", true),
            ("prod-*", "prod-", true),
            ("prod-*", "staging-1", false),
            ("edge-1", "edge-1", true),
            ("edge-1", "edge-10", false),
            ("*", "anything", true),
            ("*-db", "eu-db", true),
            ("*-db", "eu-db-2", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("w?", "w1", false),
        ] {
            assert_eq!(matches_pattern(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn scopes_narrow_only_what_they_list() {
        let open = KeyScope::default();
        assert!(open.allows_agent("x") && open.allows_script("y") && open.allows_tags(&[]));
        let scope = KeyScope {
            agents: vec!["w1".into()],
            tags: vec!["web".into(), "eu".into()],
            scripts: vec!["deploy.sh".into()],
        };
        assert!(scope.allows_agent("w1") && !scope.allows_agent("w2"));
        assert!(scope.allows_script("deploy.sh") && !scope.allows_script("rm.sh"));
        assert!(scope.allows_tags(&["eu".into(), "web".into(), "x".into()]));
        assert!(!scope.allows_tags(&["web".into()]));
    }
}
