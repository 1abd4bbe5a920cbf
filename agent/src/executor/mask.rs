//! Secret masking: the values of a job's secret params are replaced with
//! [`SECRET_MASK`](shared_protocol::protocol::SECRET_MASK) in everything the script writes,
//! before a byte of it leaves the host (result, live output) or reaches memory we keep.
//!
//! Output arrives in arbitrary pipe reads, so a secret can be split across two of them:
//! the masker holds back the few trailing bytes that could still be the start of a
//! secret (at most the longest secret's length minus one) until the next read decides.

use shared_protocol::protocol::SECRET_MASK;

/// A streaming search-and-replace of secret values in one byte stream.
pub struct SecretMasker {
    /// Longest first, so that at each position the longest matching secret wins.
    secrets: Vec<Vec<u8>>,
    /// `starts[b]`: some secret starts with byte `b`. Lets plain output skip the search.
    starts: [bool; 256],
    /// Bytes not yet emitted: a possible beginning of a secret.
    held: Vec<u8>,
}

impl std::fmt::Debug for SecretMasker {
    // Never the values: a masker in a log line must not undo its own work.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMasker")
            .field("secrets", &self.secrets.len())
            .field("held_bytes", &self.held.len())
            .finish()
    }
}

impl SecretMasker {
    /// Empty values are ignored (they would match everywhere); duplicates are merged.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> SecretMasker {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|secret| secret.as_ref().to_vec())
            .filter(|secret| !secret.is_empty())
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut starts = [false; 256];
        for secret in &secrets {
            starts[usize::from(secret[0])] = true;
        }
        SecretMasker {
            secrets,
            starts,
            held: Vec::new(),
        }
    }

    /// True when there is nothing to mask: output passes through untouched.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// How many bytes are held back waiting for the next read.
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// Feeds the next bytes of the stream; returns what is certainly final (masked).
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return input.to_vec();
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(input);
        let mut out = Vec::with_capacity(data.len());
        let mut position = 0;
        while position < data.len() {
            // Fast path: copy the run of bytes no secret can start with.
            let run = data[position..]
                .iter()
                .position(|byte| self.starts[usize::from(*byte)])
                .unwrap_or(data.len() - position);
            out.extend_from_slice(&data[position..position + run]);
            position += run;
            if position == data.len() {
                break;
            }
            match self.match_at(&data[position..]) {
                Match::Secret(length) => {
                    out.extend_from_slice(SECRET_MASK.as_bytes());
                    position += length;
                }
                Match::Undecided => {
                    // Shorter than the longest secret, since it is a proper prefix of one.
                    self.held = data[position..].to_vec();
                    return out;
                }
                Match::None => {
                    out.push(data[position]);
                    position += 1;
                }
            }
        }
        out
    }

    /// The stream ended: what was held back is final now (it completed no secret).
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(held.len());
        // A held tail can still contain a complete shorter secret behind an unfinished
        // longer one (secrets "abcd" and "bc", tail "abc"): mask it as if no more came.
        let mut position = 0;
        while position < held.len() {
            match self.match_at(&held[position..]) {
                Match::Secret(length) => {
                    out.extend_from_slice(SECRET_MASK.as_bytes());
                    position += length;
                }
                Match::Undecided | Match::None => {
                    out.push(held[position]);
                    position += 1;
                }
            }
        }
        out
    }

    /// Masks a complete text (a reason line the agent itself writes, say).
    pub fn mask_text(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_owned();
        }
        let mut masker = SecretMasker {
            secrets: self.secrets.clone(),
            starts: self.starts,
            held: Vec::new(),
        };
        let mut bytes = masker.push(text.as_bytes());
        bytes.extend(masker.finish());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// At the start of `rest`: the longest complete secret, or the news that a longer
    /// secret than any complete one might still match once more bytes arrive.
    fn match_at(&self, rest: &[u8]) -> Match {
        for secret in &self.secrets {
            if rest.len() >= secret.len() {
                if rest.starts_with(secret) {
                    return Match::Secret(secret.len());
                }
            } else if secret.starts_with(rest) {
                return Match::Undecided;
            }
        }
        Match::None
    }
}

enum Match {
    Secret(usize),
    Undecided,
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one by one, as separate pipe reads.
    fn stream(secrets: &[&str], pieces: &[&str]) -> String {
        let mut masker = SecretMasker::new(secrets);
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(masker.push(piece.as_bytes()));
        }
        out.extend(masker.finish());
        String::from_utf8(out).expect("utf-8 in, utf-8 out")
    }

    #[test]
    fn no_secrets_pass_everything_through_at_once() {
        let mut masker = SecretMasker::new(Vec::<String>::new());
        assert!(masker.is_empty());
        assert_eq!(masker.push(b"hello"), b"hello");
        assert_eq!(masker.held_bytes(), 0);
        assert!(masker.finish().is_empty());
        // Empty values are no secrets at all.
        assert!(SecretMasker::new([""]).is_empty());
    }

    #[test]
    fn every_occurrence_is_masked() {
        assert_eq!(
            stream(&["hunter2"], &["pw=hunter2 again hunter2hunter2\n"]),
            "pw=******** again ****************\n"
        );
    }

    #[test]
    fn a_secret_split_across_reads_is_masked() {
        assert_eq!(stream(&["hunter2"], &["pw=hun", "ter2!"]), "pw=********!");
        assert_eq!(stream(&["hunter2"], &["h", "u", "n", "t", "e", "r", "2"]), "********");
        // A false start is released once it cannot be a secret any more.
        assert_eq!(stream(&["hunter2"], &["hunt", "ing hunter2"]), "hunting ********");
        // ...or at the end of the stream.
        assert_eq!(stream(&["hunter2"], &["x hunte"]), "x hunte");
    }

    #[test]
    fn held_back_bytes_are_bounded_by_the_longest_secret() {
        let mut masker = SecretMasker::new(["abcdef", "xy"]);
        assert_eq!(masker.push(b"123abcde"), b"123");
        assert_eq!(masker.held_bytes(), 5);
        assert_eq!(masker.push(b"Z"), b"abcdeZ");
        assert_eq!(masker.held_bytes(), 0);
        for _ in 0..100 {
            masker.push(b"ab");
            masker.push(b"cde");
            assert!(masker.held_bytes() < 6);
        }
        let mut masker = SecretMasker::new(["aaaa"]);
        assert_eq!(masker.push(b"aaaaaaa"), b"********");
        assert_eq!(masker.held_bytes(), 3);
    }

    #[test]
    fn several_secrets_are_all_masked() {
        assert_eq!(
            stream(&["alpha", "beta"], &["alpha beta gam", "ma bet", "a alph"]),
            "******** ******** gamma ******** alph"
        );
    }

    #[test]
    fn overlapping_secrets_prefer_the_longest_match() {
        assert_eq!(stream(&["abc", "abcdef"], &["xabcdefx"]), "x********x");
        assert_eq!(stream(&["abc", "abcdef"], &["xabcdex"]), "x********dex");
        // Split where the shorter one is complete but the longer one still undecided.
        assert_eq!(stream(&["abc", "abcdef"], &["xabc", "def"]), "x********");
        assert_eq!(stream(&["abc", "abcdef"], &["xabc", "dx"]), "x********dx");
        // A nested secret inside an unfinished longer one at the end of the stream.
        assert_eq!(stream(&["abcd", "bc"], &["abc"]), "a********");
        assert_eq!(stream(&["secret", "secret"], &["a secret"]), "a ********");
    }

    #[test]
    fn non_utf8_bytes_are_masked_too() {
        let mut masker = SecretMasker::new([[0xffu8, 0x00, 0xfe]]);
        let mut out = masker.push(&[1, 0xff, 0x00]);
        out.extend(masker.push(&[0xfe, 2]));
        out.extend(masker.finish());
        assert_eq!(out, [&[1u8][..], SECRET_MASK.as_bytes(), &[2]].concat());
    }

    #[test]
    fn mask_text_masks_a_whole_string() {
        let masker = SecretMasker::new(["s3cr3t"]);
        assert_eq!(masker.mask_text("cannot open s3cr3t.txt"), "cannot open ********.txt");
        assert!(!format!("{masker:?}").contains("s3cr3t"));
    }
}
