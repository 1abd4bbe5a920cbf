//! Authentication: password hashing, JWT access and refresh tokens, `sm_live_` API keys,
//! the request extractor that turns a Bearer credential into a [`Caller`], and rate limits.

pub mod api_keys;
pub mod caller;
pub mod jwt;
pub mod key_cache;
pub mod key_use;
pub mod passwords;
pub mod permissions;
pub mod rate_limit;

pub use caller::{Caller, Credential};

use sha2::{Digest, Sha256};

/// Hex SHA-256: how high-entropy secrets (API keys, refresh tokens) are stored.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}
