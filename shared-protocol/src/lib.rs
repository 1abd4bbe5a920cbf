//! Wire types spoken by both sides of ScriptMesh: the agent protocol, the public API's
//! job shapes, identifiers and the script manifest.

pub mod api;
pub mod ids;
pub mod manifest;
pub mod params;
pub mod protocol;

pub use ids::{AgentName, JobId};
pub use manifest::{Manifest, ManifestEntry};
pub use protocol::JobStatus;

/// Version of the agent <-> orchestrator protocol spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
