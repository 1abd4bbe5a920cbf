//! Identifier newtypes shared by the orchestrator, the agent and API clients.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// A job's id, `job_` followed by a time-ordered suffix.
    JobId
);
string_id!(
    /// An agent's name, unique within its tenant.
    AgentName
);

/// Longest agent name accepted anywhere.
pub const MAX_AGENT_NAME_LEN: usize = 128;

/// Agent names are what people type in URLs and shells: letters, digits, `-`, `_`, `.`.
pub fn validate_agent_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_AGENT_NAME_LEN {
        return Err(format!("agent name must be 1 to {MAX_AGENT_NAME_LEN} characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("agent name may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}
