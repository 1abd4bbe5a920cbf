//! The local whitelist: reads `script_manifest.json` and keeps only the entries whose
//! path resolves to a regular file inside SCRIPTS_DIR. Only those are reported to the
//! orchestrator and only those can ever run.

use crate::error::AgentError;
use shared_protocol::{Manifest, ManifestEntry};
use std::path::{Component, Path, PathBuf};

/// A manifest entry that passed the path checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnableScript {
    /// The entry as written in the manifest (what the orchestrator is told).
    pub entry: ManifestEntry,
    /// The canonical path it resolved to when the manifest was loaded.
    pub resolved_path: PathBuf,
}

/// The validated manifest: the scripts this agent is willing to run right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedManifest {
    scripts: Vec<RunnableScript>,
    /// Why entries (or the whole file) were left out, for [`LoadedManifest::log_problems`].
    problems: Vec<String>,
}

impl LoadedManifest {
    /// Exact name match, as the spec requires.
    pub fn find(&self, name: &str) -> Option<&RunnableScript> {
        self.scripts.iter().find(|script| script.entry.name == name)
    }

    /// The entries to report to the orchestrator.
    pub fn entries(&self) -> Vec<ManifestEntry> {
        self.scripts.iter().map(|script| script.entry.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Loading does not log, because the manifest is re-read every heartbeat; whoever
    /// sees a changed manifest calls this, so each problem is logged once, not forever.
    pub fn log_problems(&self) {
        for problem in &self.problems {
            tracing::warn!(%problem, "manifest entry not runnable");
        }
    }
}

/// Reads and validates the manifest file. Invalid entries are dropped with a warning;
/// an unreadable or malformed file is an error.
pub fn read(manifest_path: &Path, scripts_dir: &Path) -> Result<LoadedManifest, AgentError> {
    let text = std::fs::read_to_string(manifest_path).map_err(|error| AgentError::Manifest {
        path: manifest_path.to_owned(),
        message: format!("cannot be read: {error}"),
    })?;
    parse(&text, manifest_path, scripts_dir)
}

/// Like [`read`], but a missing or broken file yields an empty manifest (with the error
/// as its problem). Failing closed is deliberate: deleting or corrupting the manifest
/// must disable scripts, not keep an older whitelist alive.
pub fn load_or_empty(manifest_path: &Path, scripts_dir: &Path) -> LoadedManifest {
    match read(manifest_path, scripts_dir) {
        Ok(manifest) => manifest,
        Err(error) => LoadedManifest {
            scripts: Vec::new(),
            problems: vec![format!("{error}; no scripts are runnable until it is fixed")],
        },
    }
}

pub fn parse(text: &str, manifest_path: &Path, scripts_dir: &Path) -> Result<LoadedManifest, AgentError> {
    let manifest: Manifest = serde_json::from_str(text).map_err(|error| AgentError::Manifest {
        path: manifest_path.to_owned(),
        message: format!(
            "is not valid manifest JSON ({error}); expected {{\"scripts\":[{{\"name\",\"path\",\"description\"}}]}}"
        ),
    })?;

    let mut scripts: Vec<RunnableScript> = Vec::with_capacity(manifest.scripts.len());
    let mut problems = Vec::new();
    for entry in manifest.scripts {
        if scripts.iter().any(|known| known.entry.name == entry.name) {
            problems.push(format!("{:?}: duplicate entry ignored; the first one wins", entry.name));
            continue;
        }
        if entry.name.trim().is_empty() || entry.name.chars().any(char::is_control) {
            problems.push(format!("{:?}: the name is empty or has control characters", entry.name));
            continue;
        }
        match resolve_script_path(&entry.path, scripts_dir) {
            Ok(resolved_path) => scripts.push(RunnableScript { entry, resolved_path }),
            Err(reason) => {
                problems.push(format!("{:?}: {reason}", entry.name));
            }
        }
    }
    Ok(LoadedManifest { scripts, problems })
}

/// Where a manifest path points, if it is allowed to run: no `..` component, and once
/// every symlink is resolved, a regular file inside the canonical SCRIPTS_DIR.
/// Called at load time and again right before each run, because the file system can
/// change between the two.
pub fn resolve_script_path(path: &str, scripts_dir: &Path) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    let raw = Path::new(path);
    if raw.components().any(|component| component == Component::ParentDir) {
        return Err(format!("the path {path:?} contains '..'"));
    }
    let canonical_dir = scripts_dir
        .canonicalize()
        .map_err(|error| format!("SCRIPTS_DIR {} cannot be resolved: {error}", scripts_dir.display()))?;
    let joined = if raw.is_absolute() {
        raw.to_owned()
    } else {
        scripts_dir.join(raw)
    };
    let canonical = joined
        .canonicalize()
        .map_err(|error| format!("{} cannot be resolved: {error}", joined.display()))?;
    if !canonical.starts_with(&canonical_dir) || canonical == canonical_dir {
        return Err(format!(
            "{} resolves to {}, outside SCRIPTS_DIR {}",
            joined.display(),
            canonical.display(),
            canonical_dir.display()
        ));
    }
    let metadata =
        std::fs::metadata(&canonical).map_err(|error| format!("{} cannot be read: {error}", canonical.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", canonical.display()));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scripts_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ok.sh"), "#!/bin/sh\necho ok\n").expect("write");
        dir
    }

    fn manifest_json(entries: &[(&str, &str)]) -> String {
        let scripts: Vec<serde_json::Value> = entries
            .iter()
            .map(|(name, path)| serde_json::json!({"name": name, "path": path, "description": ""}))
            .collect();
        serde_json::json!({ "scripts": scripts }).to_string()
    }

    #[test]
    fn keeps_relative_and_absolute_paths_inside_scripts_dir() {
        let dir = scripts_dir();
        let absolute = dir.path().join("ok.sh");
        let text = manifest_json(&[("rel", "ok.sh"), ("abs", absolute.to_str().expect("utf8"))]);
        let manifest = parse(&text, Path::new("m.json"), dir.path()).expect("parses");
        assert_eq!(manifest.len(), 2);
        let canonical = absolute.canonicalize().expect("canonical");
        assert_eq!(manifest.find("rel").expect("rel").resolved_path, canonical);
        assert_eq!(manifest.find("abs").expect("abs").resolved_path, canonical);
        assert!(manifest.find("REL").is_none(), "names match exactly");
    }

    #[test]
    fn refuses_parent_dir_components() {
        let dir = scripts_dir();
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        // Even a `..` that would land back inside SCRIPTS_DIR is refused outright.
        let text = manifest_json(&[("dotdot", "sub/../ok.sh"), ("escape", "../etc/passwd")]);
        let manifest = parse(&text, Path::new("m.json"), dir.path()).expect("parses");
        assert!(manifest.is_empty(), "{manifest:?}");
        assert_eq!(manifest.problems().len(), 2);
        let reason = resolve_script_path("sub/../ok.sh", dir.path()).expect_err("refused");
        assert!(reason.contains(".."), "{reason}");
    }

    #[test]
    fn refuses_symlink_escaping_scripts_dir() {
        let dir = scripts_dir();
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("evil.sh");
        std::fs::write(&target, "#!/bin/sh\necho evil\n").expect("write");
        symlink(&target, dir.path().join("link.sh")).expect("symlink");
        symlink(outside.path(), dir.path().join("linkdir")).expect("symlink");

        let text = manifest_json(&[("link", "link.sh"), ("viadir", "linkdir/evil.sh"), ("ok", "ok.sh")]);
        let manifest = parse(&text, Path::new("m.json"), dir.path()).expect("parses");
        assert_eq!(
            manifest.entries().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["ok"]
        );
        let reason = resolve_script_path("link.sh", dir.path()).expect_err("refused");
        assert!(reason.contains("outside SCRIPTS_DIR"), "{reason}");
    }

    #[test]
    fn symlink_inside_scripts_dir_is_fine() {
        let dir = scripts_dir();
        symlink(dir.path().join("ok.sh"), dir.path().join("alias.sh")).expect("symlink");
        assert!(resolve_script_path("alias.sh", dir.path()).is_ok());
    }

    #[test]
    fn refuses_directories_missing_files_and_absolute_paths_elsewhere() {
        let dir = scripts_dir();
        std::fs::create_dir(dir.path().join("subdir")).expect("mkdir");
        assert!(resolve_script_path("subdir", dir.path()).is_err());
        assert!(resolve_script_path("missing.sh", dir.path()).is_err());
        assert!(resolve_script_path("/bin/sh", dir.path()).is_err());
        assert!(resolve_script_path("", dir.path()).is_err());
        assert!(resolve_script_path(".", dir.path()).is_err());
    }

    #[test]
    fn malformed_or_missing_file_is_an_error_and_loads_empty() {
        let dir = scripts_dir();
        assert!(parse("{not json", Path::new("m.json"), dir.path()).is_err());
        let missing = dir.path().join("nope.json");
        assert!(read(&missing, dir.path()).is_err());
        let loaded = load_or_empty(&missing, dir.path());
        assert!(loaded.is_empty());
        assert!(loaded.problems()[0].contains("nope.json"), "{:?}", loaded.problems());
    }

    #[test]
    fn duplicates_keep_the_first_entry() {
        let dir = scripts_dir();
        std::fs::write(dir.path().join("other.sh"), "#!/bin/sh\n").expect("write");
        let text = manifest_json(&[("job", "ok.sh"), ("job", "other.sh")]);
        let manifest = parse(&text, Path::new("m.json"), dir.path()).expect("parses");
        assert_eq!(manifest.len(), 1);
        assert_eq!(manifest.find("job").expect("job").entry.path, "ok.sh");
    }
}
