//! What the commands print: aligned tables and short lines for people, the API's JSON
//! (pretty) with `--json`. Writes ignore a closed pipe (`scriptmesh jobs | head`).

use serde_json::Value;
use std::io::Write;

#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// `--json`: print the API's JSON instead of tables.
    pub json: bool,
    /// Colour diffs: stdout is a terminal and NO_COLOR is not set.
    pub colour: bool,
}

impl Output {
    /// A line on stdout.
    pub fn line(&self, text: impl std::fmt::Display) {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    /// A note on stderr (progress, hints), so stdout stays clean for pipes.
    pub fn note(&self, text: impl std::fmt::Display) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// Bytes as they came (a script's output), without adding a newline.
    pub fn raw_stdout(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    pub fn raw_stderr(&self, text: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(text.as_bytes());
        let _ = stderr.flush();
    }

    /// A unified diff on stdout, coloured by line kind when `colour` is on.
    pub fn diff(&self, diff: &str) {
        let mut stdout = std::io::stdout().lock();
        for line in diff.lines() {
            let colour = match line.as_bytes().first() {
                _ if !self.colour => None,
                _ if line.starts_with("---") || line.starts_with("+++") => Some("1"),
                Some(b'+') => Some("32"),
                Some(b'-') => Some("31"),
                Some(b'@') => Some("36"),
                _ => None,
            };
            let _ = match colour {
                Some(code) => writeln!(stdout, "\x1b[{code}m{line}\x1b[0m"),
                None => writeln!(stdout, "{line}"),
            };
        }
    }

    pub fn json(&self, value: &Value) {
        // Serialising a Value cannot fail (its map keys are strings).
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.line(text);
    }

    /// Columns padded to their widest cell; the last column is not padded.
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>]) {
        self.line(render_table(headers, rows).trim_end_matches('\n'));
    }

    /// `key: value` lines with the keys aligned.
    pub fn fields(&self, fields: &[(&str, String)]) {
        // The widest key plus its colon.
        let width = fields.iter().map(|(key, _)| key.chars().count() + 1).max().unwrap_or(0);
        for (key, value) in fields {
            self.line(format!("{:width$}  {value}", format!("{key}:")).trim_end());
        }
    }
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths.get(index).copied().unwrap_or(0);
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A JSON value as a table cell: text as is, `null` as `-`, lists joined with commas.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) if text.is_empty() => "-".into(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// An API time (RFC 3339) as "12s ago" / "in 3h" (the time itself if it does not parse).
pub fn relative_time(value: &Value) -> String {
    let Some(text) = value.as_str() else {
        return "-".into();
    };
    let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) else {
        return text.to_owned();
    };
    let seconds = chrono::Utc::now().signed_duration_since(time).num_seconds();
    let span = |s: i64| match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    if seconds >= 0 {
        format!("{} ago", span(seconds))
    } else {
        format!("in {}", span(-seconds))
    }
}

/// Milliseconds as "850ms" / "3.2s" / "4m05s".
pub fn duration_ms(value: &Value) -> String {
    let Some(ms) = value.as_u64() else {
        return "-".into();
    };
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let text = render_table(
            &["NAME", "STATUS"],
            &[
                vec!["web-1".into(), "online".into()],
                vec!["a".into(), "offline".into()],
            ],
        );
        assert_eq!(text, "NAME   STATUS\nweb-1  online\na      offline\n");
    }

    #[test]
    fn cells_and_durations_read_well() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(duration_ms(&json!(850)), "850ms");
        assert_eq!(duration_ms(&json!(3200)), "3.2s");
        assert_eq!(duration_ms(&json!(245_000)), "4m05s");
        assert_eq!(relative_time(&json!("not a time")), "not a time");
    }
}
