//! Per-agent result diffing, without I/O: normalising outputs (masks, trailing white space),
//! grouping finished jobs by outcome, choosing the baseline, and bounded unified diffs.

use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};
use similar::{Algorithm, TextDiff};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// What a mask's matches are replaced with before comparing and diffing.
pub const MASK_TOKEN: &str = "<masked>";
/// At most this many masks per request.
pub const MAX_MASKS: usize = 10;
/// Longest mask, in characters.
pub const MAX_MASK_CHARS: usize = 512;
/// Bound on a compiled mask (the regex crate's program and lazy-DFA caches), so a short but
/// huge pattern (`\w{1000}{1000}`) is refused instead of eating memory.
const MASK_COMPILED_LIMIT: usize = 1 << 20;

/// A mask or option the caller got wrong, said for a person.
#[derive(Debug, PartialEq, Eq)]
pub struct MaskError(pub String);

/// How outputs are made comparable. Masks apply line by line (a match never spans lines),
/// after trailing white space is removed when that is asked for.
#[derive(Clone, Debug, Default)]
pub struct Normalisation {
    masks: Vec<Regex>,
    ignore_trailing_whitespace: bool,
}

impl Normalisation {
    pub fn new(masks: &[String], ignore_trailing_whitespace: bool) -> Result<Normalisation, MaskError> {
        if masks.len() > MAX_MASKS {
            return Err(MaskError(format!("mask may be given at most {MAX_MASKS} times")));
        }
        let masks = masks
            .iter()
            .enumerate()
            .map(|(index, pattern)| compile_mask(index + 1, pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Normalisation {
            masks,
            ignore_trailing_whitespace,
        })
    }

    /// The SHA-256 of the normalised text, computed without building it.
    pub fn digest(&self, text: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        self.each_piece(text, &mut |piece| hasher.update(piece.as_bytes()));
        hasher.finalize().into()
    }

    /// The normalised text itself (for diffing).
    pub fn apply(&self, text: &str) -> String {
        let mut normalised = String::with_capacity(text.len());
        self.each_piece(text, &mut |piece| normalised.push_str(piece));
        normalised
    }

    /// Hands the normalised text to `emit` in pieces, so that hashing needs no copy.
    fn each_piece(&self, text: &str, emit: &mut dyn FnMut(&str)) {
        if self.masks.is_empty() && !self.ignore_trailing_whitespace {
            emit(text);
            return;
        }
        // Blank lines are held back until a non-blank one follows: with trailing white space
        // ignored, blank lines at the end of the output are trailing white space too.
        let mut held_blank_lines = 0;
        for line in text.split_inclusive('\n') {
            let (content, ending) = match line.strip_suffix('\n') {
                Some(content) => (content, "\n"),
                None => (line, ""),
            };
            if self.ignore_trailing_whitespace {
                let content = content.trim_end();
                if content.is_empty() {
                    held_blank_lines += 1;
                    continue;
                }
                for _ in 0..held_blank_lines {
                    emit("\n");
                }
                held_blank_lines = 0;
                self.emit_masked(content, emit);
                emit("\n");
            } else {
                self.emit_masked(content, emit);
                emit(ending);
            }
        }
    }

    fn emit_masked(&self, line: &str, emit: &mut dyn FnMut(&str)) {
        let mut line = std::borrow::Cow::Borrowed(line);
        for mask in &self.masks {
            if let std::borrow::Cow::Owned(replaced) = mask.replace_all(&line, MASK_TOKEN) {
                line = std::borrow::Cow::Owned(replaced);
            }
        }
        emit(&line);
    }
}

fn compile_mask(number: usize, pattern: &str) -> Result<Regex, MaskError> {
    if pattern.is_empty() {
        return Err(MaskError(format!("mask {number} is empty")));
    }
    if pattern.chars().count() > MAX_MASK_CHARS {
        return Err(MaskError(format!(
            "mask {number} is longer than {MAX_MASK_CHARS} characters"
        )));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(MASK_COMPILED_LIMIT)
        .dfa_size_limit(MASK_COMPILED_LIMIT)
        .build()
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(_) => MaskError(format!(
                "mask {number} is too complex (its compiled form exceeds {} KiB)",
                MASK_COMPILED_LIMIT / 1024
            )),
            other => MaskError(format!(
                "mask {number} is not a valid regular expression: {}",
                other.to_string().lines().last().unwrap_or_default().trim()
            )),
        })?;
    if regex.is_match("") {
        return Err(MaskError(format!(
            "mask {number} matches empty text; it would mask between every character"
        )));
    }
    Ok(regex)
}

/// A finished job as the grouping sees it.
pub struct Outcome<'a> {
    pub agent: &'a str,
    pub job_id: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub stdout: &'a str,
    pub stderr: &'a str,
}

/// What makes two results the same: status, exit code and the normalised outputs. The
/// status counts: a run that timed out is not the same outcome as one that failed with the
/// same output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutcomeKey {
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: [u8; 32],
    pub stderr: [u8; 32],
}

impl OutcomeKey {
    /// 12 hex digits of a SHA-256 over the key: the same outcome under the same options has
    /// the same id in every request.
    pub fn id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.status.as_bytes());
        hasher.update([0]);
        hasher.update(self.exit_code.map(|code| code.to_string()).unwrap_or_default());
        hasher.update([0]);
        hasher.update(self.stdout);
        hasher.update(self.stderr);
        hex::encode(&hasher.finalize()[..6])
    }

    /// What differs from `other`: some of "status", "exit_code", "stdout", "stderr".
    pub fn differences(&self, other: &OutcomeKey) -> Vec<&'static str> {
        [
            ("status", self.status != other.status),
            ("exit_code", self.exit_code != other.exit_code),
            ("stdout", self.stdout != other.stdout),
            ("stderr", self.stderr != other.stderr),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub agent: String,
    pub job_id: String,
}

/// Agents with one outcome. `members` are sorted by agent name; the first is the group's
/// representative, whose output stands for the group in diffs.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub key: OutcomeKey,
    pub members: Vec<Member>,
}

impl Group {
    pub fn representative(&self) -> &Member {
        // A group is only created with its first member.
        &self.members[0]
    }

    /// "web-1, web-2 and 3 more", for diff headers.
    pub fn agents_label(&self) -> String {
        const SHOWN: usize = 3;
        let names: Vec<&str> = self.members.iter().take(SHOWN).map(|m| m.agent.as_str()).collect();
        match self.members.len().saturating_sub(SHOWN) {
            0 => names.join(", "),
            more => format!("{} and {more} more", names.join(", ")),
        }
    }
}

/// Collects outcomes one at a time, keeping only per-group metadata (never the outputs).
#[derive(Default)]
pub struct Grouper {
    normalisation: Normalisation,
    groups: HashMap<OutcomeKey, Vec<Member>>,
}

impl Grouper {
    pub fn new(normalisation: Normalisation) -> Grouper {
        Grouper {
            normalisation,
            groups: HashMap::new(),
        }
    }

    pub fn normalisation(&self) -> &Normalisation {
        &self.normalisation
    }

    pub fn key(&self, outcome: &Outcome<'_>) -> OutcomeKey {
        OutcomeKey {
            status: outcome.status.to_owned(),
            exit_code: outcome.exit_code,
            stdout: self.normalisation.digest(outcome.stdout),
            stderr: self.normalisation.digest(outcome.stderr),
        }
    }

    pub fn add(&mut self, outcome: &Outcome<'_>) {
        let key = self.key(outcome);
        self.groups.entry(key).or_default().push(Member {
            agent: outcome.agent.to_owned(),
            job_id: outcome.job_id.to_owned(),
        });
    }

    /// The groups, largest first; among equal sizes the one holding the alphabetically
    /// first agent comes first. The first group is the baseline.
    pub fn finish(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|(key, mut members)| {
                members.sort();
                Group {
                    id: key.id(),
                    key,
                    members,
                }
            })
            .collect();
        groups.sort_by(|a, b| {
            b.members
                .len()
                .cmp(&a.members.len())
                .then_with(|| a.representative().cmp(b.representative()))
        });
        groups
    }
}

/// Bounds on one diff.
#[derive(Clone, Copy, Debug)]
pub struct DiffLimits {
    /// Unchanged lines shown around each change.
    pub context: usize,
    /// Longest diff text, in bytes; the rest is cut at a line end and flagged.
    pub max_bytes: usize,
    /// After this the diff algorithm settles for a correct but possibly longer diff.
    pub timeout: Duration,
}

/// A unified diff's text, cut to `DiffLimits::max_bytes` if need be.
#[derive(Debug, PartialEq, Eq)]
pub struct DiffText {
    pub text: String,
    pub truncated: bool,
}

/// The unified diff from `old` to `new` with `--- old_label` / `+++ new_label` headers;
/// `None` when the texts are the same.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str, limits: DiffLimits) -> Option<DiffText> {
    if old == new {
        return None;
    }
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .timeout(limits.timeout)
        .diff_lines(old, new);
    let mut unified = diff.unified_diff();
    unified.context_radius(limits.context).header(old_label, new_label);
    let mut capped = CappedText::new(limits.max_bytes);
    // The only error is the cap being reached, which `CappedText` records.
    let _ = write!(capped, "{unified}");
    Some(capped.finish())
}

/// A `fmt::Write` that takes up to `limit` bytes and then refuses, so formatting stops early.
struct CappedText {
    text: String,
    limit: usize,
    truncated: bool,
}

impl CappedText {
    fn new(limit: usize) -> CappedText {
        CappedText {
            text: String::new(),
            limit,
            truncated: false,
        }
    }

    fn finish(mut self) -> DiffText {
        if self.truncated {
            // Whole lines only: a cut line would read as a different change.
            let keep = self.text.rfind('\n').map_or(0, |at| at + 1);
            self.text.truncate(keep);
        }
        DiffText {
            text: self.text,
            truncated: self.truncated,
        }
    }
}

impl std::fmt::Write for CappedText {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        let room = self.limit - self.text.len();
        if piece.len() <= room {
            self.text.push_str(piece);
            return Ok(());
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&piece[..end]);
        self.truncated = true;
        Err(std::fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DiffLimits = DiffLimits {
        context: 3,
        max_bytes: 256 * 1024,
        timeout: Duration::from_secs(1),
    };

    fn outcome<'a>(agent: &'a str, status: &'a str, exit_code: i32, stdout: &'a str) -> Outcome<'a> {
        Outcome {
            agent,
            job_id: agent,
            status,
            exit_code: Some(exit_code),
            stdout,
            stderr: "",
        }
    }

    fn group(normalisation: Normalisation, outcomes: &[Outcome<'_>]) -> Vec<Group> {
        let mut grouper = Grouper::new(normalisation);
        for outcome in outcomes {
            grouper.add(outcome);
        }
        grouper.finish()
    }

    fn agents(group: &Group) -> Vec<&str> {
        group.members.iter().map(|m| m.agent.as_str()).collect()
    }

    #[test]
    fn identical_results_form_one_group_and_the_largest_is_the_baseline() {
        let groups = group(
            Normalisation::default(),
            &[
                outcome("c", "success", 0, "ok\n"),
                outcome("a", "failed", 1, "ok\n"),
                outcome("b", "success", 0, "ok\n"),
            ],
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(agents(&groups[0]), ["b", "c"]);
        assert_eq!(agents(&groups[1]), ["a"]);
        assert_eq!(groups[1].key.differences(&groups[0].key), ["status", "exit_code"]);
        assert_eq!(groups[0].id.len(), 12);
        assert_ne!(groups[0].id, groups[1].id);
    }

    #[test]
    fn status_is_part_of_the_outcome() {
        let timed_out = Outcome {
            exit_code: None,
            ..outcome("a", "timeout", 0, "half\n")
        };
        let lost = Outcome {
            exit_code: None,
            ..outcome("b", "lost", 0, "half\n")
        };
        assert_eq!(group(Normalisation::default(), &[timed_out, lost]).len(), 2);
    }

    #[test]
    fn ties_go_to_the_group_with_the_alphabetically_first_agent() {
        for order in [["x", "m"], ["m", "x"]] {
            let groups = group(
                Normalisation::default(),
                &[
                    outcome(order[0], "success", 0, order[0]),
                    outcome(order[1], "success", 0, order[1]),
                ],
            );
            assert_eq!(agents(&groups[0]), ["m"], "{order:?}");
        }
    }

    #[test]
    fn group_ids_are_stable_across_runs() {
        let first = group(Normalisation::default(), &[outcome("a", "success", 0, "same")]);
        let second = group(Normalisation::default(), &[outcome("z", "success", 0, "same")]);
        assert_eq!(first[0].id, second[0].id);
    }

    #[test]
    fn masks_make_volatile_parts_equal() {
        let outputs = [
            outcome("a", "success", 0, "host web-1 at 2026-03-10T14:32:11Z\nok\n"),
            outcome("b", "success", 0, "host web-2 at 2026-03-10T14:32:12Z\nok\n"),
        ];
        assert_eq!(group(Normalisation::default(), &outputs).len(), 2);
        let masks = [r"web-\d+".to_owned(), r"\d{4}-\d\d-\d\dT[\d:]+Z".to_owned()];
        let masked = Normalisation::new(&masks, false).expect("valid masks");
        assert_eq!(group(masked.clone(), &outputs).len(), 1);
        assert_eq!(
            masked.apply("host web-1 at 2026-03-10T14:32:11Z\nok\n"),
            "host <masked> at <masked>\nok\n"
        );
    }

    #[test]
    fn masks_apply_line_by_line() {
        let masked = Normalisation::new(&["^id=.*$".to_owned()], false).expect("valid");
        assert_eq!(masked.apply("id=1\nkeep\nid=2"), "<masked>\nkeep\n<masked>");
    }

    #[test]
    fn trailing_whitespace_can_be_ignored() {
        let outputs = [
            outcome("a", "success", 0, "ok  \r\nsecond\t\n\n\n"),
            outcome("b", "success", 0, "ok\nsecond"),
        ];
        assert_eq!(group(Normalisation::default(), &outputs).len(), 2);
        let lenient = Normalisation::new(&[], true).expect("no masks");
        assert_eq!(group(lenient.clone(), &outputs).len(), 1);
        // Blank lines inside the output still count.
        assert_eq!(lenient.apply("a\n\n \nb \n\n"), "a\n\n\nb\n");
        assert_ne!(lenient.digest("a\n\nb\n"), lenient.digest("a\nb\n"));
    }

    #[test]
    fn digest_equals_the_digest_of_the_applied_text() {
        let normalisation = Normalisation::new(&["[0-9]+".to_owned()], true).expect("valid");
        let text = "a 1 \n\nb 22\n  \n";
        let applied = normalisation.apply(text);
        assert_eq!(normalisation.digest(text), Normalisation::default().digest(&applied));
    }

    #[test]
    fn bad_masks_are_refused_with_their_number() {
        let refuse = |masks: &[&str]| {
            let masks: Vec<String> = masks.iter().map(|m| (*m).to_owned()).collect();
            Normalisation::new(&masks, false).expect_err("refused").0
        };
        assert!(refuse(&["ok", "("]).starts_with("mask 2 is not a valid regular expression"));
        assert!(refuse(&[&"a".repeat(MAX_MASK_CHARS + 1)]).contains("longer than 512"));
        assert!(refuse(&[r"(\w{1000}){1000}"]).contains("too complex"));
        assert!(refuse(&["x*"]).contains("matches empty text"));
        assert!(refuse(&[""]).contains("empty"));
        assert!(refuse(&["a"; MAX_MASKS + 1]).contains("at most 10"));
    }

    #[test]
    fn diffs_are_unified_with_headers() {
        let diff = unified_diff("a\nb\nc\n", "a\nB\nc\n", "baseline", "group", LIMITS).expect("differs");
        assert_eq!(diff.text, "--- baseline\n+++ group\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
        assert!(!diff.truncated);
        assert_eq!(unified_diff("same", "same", "a", "b", LIMITS), None);
    }

    #[test]
    fn context_lines_are_bounded_by_the_option() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("10\n", "ten\n");
        let diff = unified_diff(&old, &new, "a", "b", DiffLimits { context: 1, ..LIMITS }).expect("differs");
        assert!(
            diff.text.contains("@@ -10,3 +10,3 @@\n 9\n-10\n+ten\n 11\n"),
            "{}",
            diff.text
        );
    }

    #[test]
    fn long_diffs_are_cut_at_a_line_end_and_flagged() {
        let old: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let new: String = (0..10_000).map(|i| format!("other {i}\n")).collect();
        let limits = DiffLimits {
            max_bytes: 1000,
            ..LIMITS
        };
        let diff = unified_diff(&old, &new, "a", "b", limits).expect("differs");
        assert!(diff.truncated);
        assert!(
            diff.text.len() <= 1000 && diff.text.ends_with('\n'),
            "{}",
            diff.text.len()
        );
        assert!(diff.text.starts_with("--- a\n+++ b\n@@"));
    }

    #[test]
    fn agent_labels_stay_short() {
        let members = |n: usize| {
            (0..n)
                .map(|i| Member {
                    agent: format!("web-{i}"),
                    job_id: format!("job_{i}"),
                })
                .collect()
        };
        let key = OutcomeKey {
            status: "success".into(),
            exit_code: Some(0),
            stdout: [0; 32],
            stderr: [0; 32],
        };
        let label = |n| {
            Group {
                id: key.id(),
                key: key.clone(),
                members: members(n),
            }
            .agents_label()
        };
        assert_eq!(label(2), "web-0, web-1");
        assert_eq!(label(5), "web-0, web-1, web-2 and 2 more");
    }
}
