//! Password hashing with bcrypt, on the blocking thread pool so workers keep serving.

use crate::error::{Error, Result};

/// bcrypt only reads the first 72 bytes; longer passwords are refused rather than cut.
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_CHARS: usize = 10;

pub fn validate(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Validation(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters long"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Validation(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

pub async fn hash(password: String, cost: u32) -> Result<String> {
    actix_web::web::block(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))?
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

/// Checks a password; with no stored hash it still spends the same time, so that answers
/// do not reveal whether an email is registered.
pub async fn verify(password: String, stored_hash: Option<String>, cost: u32) -> Result<bool> {
    actix_web::web::block(move || match stored_hash {
        Some(hash) => bcrypt::verify(password, &hash).unwrap_or(false),
        None => {
            let _ = bcrypt::hash(password, cost);
            false
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("password check: {e}")))
}
