//! Checks on what agents and people send about agents: names, tags, manifests.

use crate::error::{Error, Result};
use shared_protocol::ids::validate_agent_name;
use shared_protocol::ManifestEntry;

pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_LEN: usize = 64;
pub const MAX_SCRIPTS: usize = 1000;

pub fn agent_name(name: &str) -> Result<()> {
    validate_agent_name(name).map_err(Error::Validation)
}

pub fn tags(tags: &[String]) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::Validation(format!("at most {MAX_TAGS} tags")));
    }
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.chars().any(|c| c.is_control() || c == ',') {
            return Err(Error::Validation(format!(
                "tag {:?} is invalid: 1 to {MAX_TAG_LEN} characters, no commas or control characters",
                tag.chars().take(70).collect::<String>()
            )));
        }
        if !clean.iter().any(|t| t == tag) {
            clean.push(tag.to_owned());
        }
    }
    Ok(clean)
}

pub fn scripts(scripts: &[ManifestEntry]) -> Result<()> {
    if scripts.len() > MAX_SCRIPTS {
        return Err(Error::Validation(format!(
            "a manifest may list at most {MAX_SCRIPTS} scripts"
        )));
    }
    for entry in scripts {
        if entry.name.is_empty() || entry.name.len() > 256 || entry.path.len() > 4096 || entry.description.len() > 2048
        {
            return Err(Error::Validation(
                "manifest entries need a name (1-256 bytes), a path (up to 4096) and a description (up to 2048)".into(),
            ));
        }
    }
    Ok(())
}

/// The script a trigger names: matched exactly against manifest names, so it must be a
/// possible one (an agent registered by hand has not reported a manifest to check yet).
pub fn script_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(Error::Validation(
            "run_script must be a script name from the agent's manifest: 1 to 256 bytes, no control characters".into(),
        ));
    }
    Ok(())
}

pub fn optional_text(field: &str, value: &Option<String>, max: usize) -> Result<()> {
    match value {
        Some(v) if v.len() > max || v.chars().any(char::is_control) => Err(Error::Validation(format!(
            "{field} must be at most {max} bytes of text"
        ))),
        _ => Ok(()),
    }
}

pub fn url(value: &Option<String>) -> Result<()> {
    if let Some(raw) = value {
        let parsed = url::Url::parse(raw).map_err(|_| Error::Validation("url must be an http(s) URL".into()))?;
        if !matches!(parsed.scheme(), "http" | "https") || raw.len() > 2048 {
            return Err(Error::Validation(
                "url must be an http(s) URL of at most 2048 characters".into(),
            ));
        }
    }
    Ok(())
}

pub fn heartbeat_interval(secs: u64) -> Result<i64> {
    if !(1..=3600).contains(&secs) {
        return Err(Error::Validation("heartbeat_interval must be 1 to 3600 seconds".into()));
    }
    Ok(secs as i64)
}

/// Job parameters: a JSON object of scalars; each value becomes an environment variable.
pub fn params(
    params: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<std::collections::BTreeMap<String, String>> {
    use serde_json::Value;
    use shared_protocol::params::{validate_param_name, validate_param_value, MAX_PARAMS};
    let params = params.unwrap_or_default();
    if params.len() > MAX_PARAMS {
        return Err(Error::Validation(format!("at most {MAX_PARAMS} params")));
    }
    let mut clean = std::collections::BTreeMap::new();
    for (name, value) in params {
        validate_param_name(&name).map_err(Error::Validation)?;
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(Error::Validation(format!(
                    "param {name:?} must be a string, number or boolean: it becomes an environment variable"
                )))
            }
        };
        validate_param_value(&name, &value).map_err(Error::Validation)?;
        clean.insert(name, value);
    }
    Ok(clean)
}

pub fn timeout(timeout: Option<u64>) -> Result<Option<i64>> {
    match timeout {
        Some(t) if !(1..=7 * 86_400).contains(&t) => {
            Err(Error::Validation("timeout must be 1 to 604800 seconds".into()))
        }
        other => Ok(other.map(|t| t as i64)),
    }
}

/// A fan-out's checked `max_concurrency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Count(u32),
    Percent(u32),
}

impl Concurrency {
    /// How many of `targets` jobs may be queued or running at once: a percentage rounds
    /// up, so every rollout makes progress.
    pub fn resolve(self, targets: usize) -> i32 {
        let slots = match self {
            Concurrency::Count(count) => count as usize,
            Concurrency::Percent(percent) => (targets * percent as usize).div_ceil(100),
        };
        slots.clamp(1, i32::MAX as usize) as i32
    }
}

pub fn max_concurrency(value: Option<shared_protocol::api::MaxConcurrency>) -> Result<Option<Concurrency>> {
    use shared_protocol::api::MaxConcurrency;
    const WHAT: &str = "max_concurrency must be a number of agents from 1 to 100000 or a percentage \
        from \"1%\" to \"100%\"";
    let checked = match value {
        None => return Ok(None),
        Some(MaxConcurrency::Count(count)) => u32::try_from(count)
            .ok()
            .filter(|c| (1..=100_000).contains(c))
            .map(Concurrency::Count),
        Some(MaxConcurrency::Percent(text)) => text
            .strip_suffix('%')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok())
            .filter(|p| (1..=100).contains(p))
            .map(Concurrency::Percent),
    };
    checked.map(Some).ok_or_else(|| Error::Validation(WHAT.into()))
}

pub fn max_errors(value: Option<i64>) -> Result<Option<i32>> {
    match value {
        Some(n) if !(1..=100_000).contains(&n) => {
            Err(Error::Validation("max_errors must be 1 to 100000 failed jobs".into()))
        }
        other => Ok(other.map(|n| n as i32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared_protocol::api::MaxConcurrency;

    #[test]
    fn concurrency_is_a_count_or_a_percentage_rounded_up() {
        let percent = |p: &str| {
            max_concurrency(Some(MaxConcurrency::Percent(p.into())))
                .unwrap()
                .unwrap()
        };
        assert_eq!(percent("25%").resolve(10), 3);
        assert_eq!(percent("1%").resolve(3), 1);
        assert_eq!(percent("100%").resolve(7), 7);
        let count = max_concurrency(Some(MaxConcurrency::Count(2))).unwrap().unwrap();
        assert_eq!(count.resolve(10), 2);
        assert_eq!(max_concurrency(None).unwrap(), None);
        for bad in ["0%", "101%", "%", "25", "2.5%", "-5%", " 5%", "5 %"] {
            assert!(
                max_concurrency(Some(MaxConcurrency::Percent(bad.into()))).is_err(),
                "{bad}"
            );
        }
        for bad in [0, -1, 100_001, i64::MAX] {
            assert!(max_concurrency(Some(MaxConcurrency::Count(bad))).is_err(), "{bad}");
        }
        assert!(max_errors(Some(0)).is_err());
        assert_eq!(max_errors(Some(3)).unwrap(), Some(3));
    }

    #[test]
    fn params_become_strings_and_bad_ones_are_refused() {
        let ok = params(json!({"target": "s3://b", "n": 3, "dry": true}).as_object().cloned()).unwrap();
        assert_eq!(ok["n"], "3");
        assert_eq!(ok["dry"], "true");
        for bad in [
            json!({"a-b": "x"}),
            json!({"PATH": "/tmp"}),
            json!({"x": {"nested": 1}}),
            json!({"x": null}),
        ] {
            assert!(params(bad.as_object().cloned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated() {
        assert_eq!(
            tags(&[" prod ".into(), "prod".into(), "eu".into()]).unwrap(),
            vec!["prod", "eu"]
        );
        assert!(tags(&["".into()]).is_err());
        assert!(tags(&["a,b".into()]).is_err());
    }
}
