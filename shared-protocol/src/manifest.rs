//! The agent's `script_manifest.json`: the whitelist of scripts it may run.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    pub scripts: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestEntry {
    /// The name callers use in `run_script`; matched exactly.
    pub name: String,
    /// Where the script lives; relative paths are taken inside SCRIPTS_DIR.
    pub path: String,
    #[serde(default)]
    pub description: String,
}

impl Manifest {
    pub fn find(&self, name: &str) -> Option<&ManifestEntry> {
        self.scripts.iter().find(|entry| entry.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.scripts.iter().map(|entry| entry.name.clone()).collect()
    }
}
