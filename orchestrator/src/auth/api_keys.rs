//! `sm_live_` API keys: generated from the OS's randomness, shown once, stored as SHA-256.

use rand::distr::{Alphanumeric, SampleString};

pub const KEY_PREFIX: &str = "sm_live_";
/// Random base62 characters after the prefix (~238 bits).
pub const KEY_RANDOM_CHARS: usize = 40;
/// Characters of the key kept in clear to recognise it in lists.
pub const DISPLAY_PREFIX_CHARS: usize = KEY_PREFIX.len() + 4;

pub fn generate() -> String {
    format!(
        "{KEY_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::rng(), KEY_RANDOM_CHARS)
    )
}

pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_base62() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("sm_live_"));
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert!(a[KEY_PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(display_prefix(&a).len(), 12);
    }
}
