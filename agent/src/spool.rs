//! Results waiting for delivery, kept on disk as `SPOOL_DIR/{job_id}.json` so that neither
//! an unreachable orchestrator nor an agent restart can lose one.

use crate::error::AgentError;
use crate::job_id::parse_job_id;
use serde::{Deserialize, Serialize};
use shared_protocol::protocol::JobResultReport;
use shared_protocol::JobId;
use std::io::Write;
use std::path::{Path, PathBuf};

const EXTENSION: &str = "json";
const TMP_SUFFIX: &str = ".tmp";

/// What one spool file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpooledResult {
    pub job_id: JobId,
    pub report: JobResultReport,
}

#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating if needed) the spool directory.
    pub fn open(dir: &Path) -> Result<Spool, AgentError> {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
            context: "SPOOL_DIR cannot be created",
            path: dir.to_owned(),
            source,
        })?;
        Ok(Spool { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, job_id: &JobId) -> Result<PathBuf, AgentError> {
        // Job ids were checked when the job arrived; checking again here keeps a file
        // name from ever escaping the spool directory, whatever the caller.
        parse_job_id(job_id.as_str()).map_err(|message| AgentError::Spool {
            path: self.dir.clone(),
            message,
        })?;
        Ok(self.dir.join(format!("{job_id}.{EXTENSION}")))
    }

    /// Writes atomically: a temporary file, flushed to disk, then renamed over the final
    /// name, so a crash leaves either the old state or the complete new file.
    pub fn write(&self, result: &SpooledResult) -> Result<(), AgentError> {
        let path = self.path_for(&result.job_id)?;
        let tmp_path = path.with_extension(format!("{EXTENSION}{TMP_SUFFIX}"));
        let spool_error = |message: String| AgentError::Spool {
            path: path.clone(),
            message,
        };
        let body = serde_json::to_vec(result).map_err(|error| spool_error(error.to_string()))?;
        let mut file = std::fs::File::create(&tmp_path)
            .map_err(|error| spool_error(format!("cannot create temporary file: {error}")))?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(|error| spool_error(format!("cannot write: {error}")))?;
        drop(file);
        std::fs::rename(&tmp_path, &path).map_err(|error| spool_error(format!("cannot rename into place: {error}")))?;
        Ok(())
    }

    /// Deletes a delivered (or permanently refused) result; already gone is fine.
    pub fn remove(&self, job_id: &JobId) -> Result<(), AgentError> {
        let path = self.path_for(job_id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(AgentError::Spool {
                path,
                message: format!("cannot delete: {error}"),
            }),
        }
    }

    pub fn read(&self, job_id: &JobId) -> Result<SpooledResult, AgentError> {
        let path = self.path_for(job_id)?;
        read_file(&path)
    }

    /// Every complete spooled result. Leftover temporary files (a crash mid-write; the
    /// result was never acknowledged nor spooled whole) are removed; files that cannot
    /// be parsed are renamed `*.corrupt` so they are kept for a human but not retried.
    pub fn read_all(&self) -> Result<Vec<SpooledResult>, AgentError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| AgentError::Io {
            context: "SPOOL_DIR cannot be listed",
            path: self.dir.clone(),
            source,
        })?;
        let mut results = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), %error, "cannot remove leftover temporary spool file");
                }
                continue;
            }
            if path.extension().and_then(|ext| ext.to_str()) != Some(EXTENSION) {
                continue;
            }
            match read_file(&path) {
                Ok(result) if self.path_for(&result.job_id).ok().as_deref() == Some(path.as_path()) => {
                    results.push(result)
                }
                Ok(result) => {
                    tracing::warn!(path = %path.display(), job_id = %result.job_id, "spool file name does not match its job id");
                    set_aside(&path);
                }
                Err(error) => {
                    tracing::error!(%error, "unreadable spooled result set aside");
                    set_aside(&path);
                }
            }
        }
        Ok(results)
    }
}

fn read_file(path: &Path) -> Result<SpooledResult, AgentError> {
    let bytes = std::fs::read(path).map_err(|error| AgentError::Spool {
        path: path.to_owned(),
        message: format!("cannot read: {error}"),
    })?;
    serde_json::from_slice(&bytes).map_err(|error| AgentError::Spool {
        path: path.to_owned(),
        message: format!("is not a spooled result: {error}"),
    })
}

fn set_aside(path: &Path) {
    let corrupt = path.with_extension("corrupt");
    if let Err(error) = std::fs::rename(path, &corrupt) {
        tracing::error!(path = %path.display(), %error, "cannot set spool file aside");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::protocol::RunOutcome;

    fn result(job_id: &str) -> SpooledResult {
        SpooledResult {
            job_id: JobId::from(job_id),
            report: JobResultReport {
                agent_name: "agent-1".into(),
                outcome: RunOutcome::Failed,
                exit_code: Some(3),
                stdout: "out".into(),
                stderr: "err".into(),
                stdout_truncated: false,
                stderr_truncated: true,
                duration_ms: 12,
                started_at_ms: 1_000,
                completed_at_ms: 1_012,
                reason: None,
            },
        }
    }

    #[test]
    fn write_read_delete_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(&dir.path().join("nested/spool")).expect("open creates the dir");
        spool.write(&result("job_1")).expect("write");
        spool.write(&result("job_2")).expect("write");
        assert!(spool.dir().join("job_1.json").is_file());

        let read = spool.read(&JobId::from("job_1")).expect("read");
        assert_eq!(read.report.exit_code, Some(3));
        assert_eq!(read.report.stderr, "err");
        assert!(read.report.stderr_truncated);

        let mut all: Vec<String> = spool
            .read_all()
            .expect("read_all")
            .into_iter()
            .map(|r| r.job_id.to_string())
            .collect();
        all.sort();
        assert_eq!(all, ["job_1", "job_2"]);

        spool.remove(&JobId::from("job_1")).expect("remove");
        spool.remove(&JobId::from("job_1")).expect("removing twice is fine");
        assert!(!spool.dir().join("job_1.json").exists());
        assert_eq!(spool.read_all().expect("read_all").len(), 1);
    }

    #[test]
    fn rewriting_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        spool.write(&result("job_1")).expect("write");
        let mut second = result("job_1");
        second.report.stdout = "second".into();
        spool.write(&second).expect("rewrite");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(spool.read(&JobId::from("job_1")).expect("read").report.stdout, "second");
    }

    #[test]
    fn cleans_temporaries_and_sets_corrupt_files_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("job_9.json.tmp"), "{partial").expect("write");
        std::fs::write(dir.path().join("job_8.json"), "garbage").expect("write");
        spool.write(&result("job_1")).expect("write");
        let all = spool.read_all().expect("read_all");
        assert_eq!(all.len(), 1);
        assert!(!dir.path().join("job_9.json.tmp").exists());
        assert!(dir.path().join("job_8.corrupt").exists());
    }

    #[test]
    fn refuses_ids_that_would_escape_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        assert!(spool.write(&result("../escape")).is_err());
        assert!(spool.remove(&JobId::from("../escape")).is_err());
    }
}
