//! The stored login: `credentials.json` in the CLI's configuration directory, readable by
//! its owner only (file 0600, directory 0700), replaced atomically on every token refresh.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

const FILE_NAME: &str = "credentials.json";
const LOCK_FILE_NAME: &str = "credentials.lock";
/// A token this close to its expiry is refreshed before use rather than sent to fail.
const EXPIRY_MARGIN_SECS: i64 = 10;

/// What `scriptmesh login` keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    /// The orchestrator these tokens belong to.
    pub url: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (from the login answer's `expires_in`).
    pub expires_at: DateTime<Utc>,
}

impl Credentials {
    pub fn access_token_expired(&self) -> bool {
        self.expires_at <= Utc::now() + chrono::Duration::seconds(EXPIRY_MARGIN_SECS)
    }
}

/// Held while a token refresh is under way (released when dropped). Commands started
/// together would otherwise each spend the same refresh token, and the server takes a second
/// use for a replay and ends the whole session.
pub struct RefreshLock {
    _file: fs::File,
}

/// Where the credentials live.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    pub fn new(dir: PathBuf) -> CredentialStore {
        CredentialStore { dir }
    }

    /// `SCRIPTMESH_CONFIG_DIR`, else `$XDG_CONFIG_HOME/scriptmesh`, else `~/.config/scriptmesh`.
    pub fn locate(
        config_dir: Option<PathBuf>,
        xdg_config_home: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Option<CredentialStore> {
        config_dir
            .or_else(|| xdg_config_home.map(|dir| dir.join("scriptmesh")))
            .or_else(|| home.map(|home| home.join(".config").join("scriptmesh")))
            .map(CredentialStore::new)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// `None` when nobody logged in.
    pub fn load(&self) -> Result<Option<Credentials>> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::File {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| Error::DamagedCredentials {
                path,
                detail: error.to_string(),
            })
    }

    /// Waits for the refresh lock (an advisory `flock` on a file beside the credentials).
    pub fn lock(&self) -> Result<RefreshLock> {
        self.create_dir()?;
        let path = self.dir.join(LOCK_FILE_NAME);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| Error::File {
                action: "open",
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor this File owns and keeps open while the lock is held.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::File {
                action: "lock",
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(RefreshLock { _file: file })
    }

    /// The directory, private to its owner.
    fn create_dir(&self) -> Result<()> {
        let error = |action| {
            let path = self.dir.clone();
            move |source| Error::File { action, path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(error("create"))?;
        // An existing directory keeps its mode with create(); tighten it.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(error("secure"))
    }

    /// Writes a new file with mode 0600 and renames it over the old one, so a reader never
    /// sees half a file and the secret is never readable by others, even for an instant.
    pub fn save(&self, credentials: &Credentials) -> Result<()> {
        self.create_dir()?;
        let path = self.path();
        let temporary = self.dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(credentials).map_err(|error| Error::Input(error.to_string()))?;
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            });
        if let Err(source) = written.and_then(|()| fs::rename(&temporary, &path)) {
            let _ = fs::remove_file(&temporary);
            return Err(Error::File {
                action: "write",
                path,
                source,
            });
        }
        Ok(())
    }

    /// Whether there was a file to delete.
    pub fn delete(&self) -> Result<bool> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::File {
                action: "delete",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            url: "http://127.0.0.1:8080".into(),
            email: "ops@example.com".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_at: Utc::now() + chrono::Duration::minutes(15),
        }
    }

    #[test]
    fn saved_credentials_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("nested").join("scriptmesh"));
        assert_eq!(store.load().unwrap(), None);
        let credentials = sample();
        store.save(&credentials).unwrap();
        assert_eq!(store.load().unwrap(), Some(credentials));
        let file_mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        let dir_mode = fs::metadata(&store.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!((file_mode, dir_mode), (0o600, 0o700));
        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
    }

    #[test]
    fn a_damaged_file_says_to_log_in_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().to_owned());
        fs::write(store.path(), "{not json").unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("scriptmesh login"), "{error}");
    }

    #[test]
    fn the_directory_follows_the_documented_precedence() {
        let locate = |a: Option<&str>, b: Option<&str>, c: Option<&str>| {
            CredentialStore::locate(a.map(PathBuf::from), b.map(PathBuf::from), c.map(PathBuf::from)).map(|s| s.path())
        };
        assert_eq!(
            locate(Some("/c"), Some("/x"), Some("/h")),
            Some(PathBuf::from("/c/credentials.json"))
        );
        assert_eq!(
            locate(None, Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/scriptmesh/credentials.json"))
        );
        assert_eq!(
            locate(None, None, Some("/h")),
            Some(PathBuf::from("/h/.config/scriptmesh/credentials.json"))
        );
        assert_eq!(locate(None, None, None), None);
    }

    #[test]
    fn tokens_near_their_expiry_count_as_expired() {
        let mut credentials = sample();
        assert!(!credentials.access_token_expired());
        credentials.expires_at = Utc::now() + chrono::Duration::seconds(2);
        assert!(credentials.access_token_expired());
    }
}
