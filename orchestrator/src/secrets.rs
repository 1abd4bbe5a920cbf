//! Params marked secret (`"secret_params": ["token"]`): their names are kept with the job
//! (a JSON array in `secret_params`), their values go to the agent as any param does, and
//! nothing the orchestrator shows (job and fan-out views, events, the dashboard) carries
//! them. The agent masks their values in the script's output before it leaves the host.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use shared_protocol::protocol::SECRET_MASK;
use std::collections::BTreeMap;

/// Checks the names a request marks secret: each must be one of its params, once.
pub fn validate(names: Option<Vec<String>>, params: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut names = names.unwrap_or_default();
    names.sort();
    names.dedup();
    if let Some(missing) = names.iter().find(|name| !params.contains_key(name.as_str())) {
        return Err(Error::Validation(format!(
            "secret_params names {missing:?}, which is not one of the params"
        )));
    }
    Ok(names)
}

/// The column's value: None when nothing is secret, so ordinary jobs store nothing.
pub fn encode(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| serde_json::to_string(names).unwrap_or_else(|_| "[]".into()))
}

pub fn decode(column: Option<&str>) -> Vec<String> {
    column
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// Params as stored (a JSON object), with every secret value replaced by the mask.
pub fn masked_params(params: &str, secret_params: Option<&str>) -> Map<String, Value> {
    let mut params: Map<String, Value> = serde_json::from_str(params).unwrap_or_default();
    for name in decode(secret_params) {
        if let Some(value) = params.get_mut(&name) {
            *value = Value::String(SECRET_MASK.to_owned());
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_given_params_can_be_secret() {
        let given = params(&[("TOKEN", "t0p"), ("HOST", "db1")]);
        assert_eq!(
            validate(Some(vec!["TOKEN".into(), "TOKEN".into()]), &given).unwrap(),
            vec!["TOKEN".to_owned()]
        );
        assert!(validate(Some(vec!["PASSWORD".into()]), &given).is_err());
        assert!(validate(None, &given).unwrap().is_empty());
    }

    #[test]
    fn views_never_carry_a_secret_value() {
        let stored = serde_json::to_string(&params(&[("TOKEN", "t0p"), ("HOST", "db1")])).unwrap();
        let column = encode(&["TOKEN".to_owned()]);
        let shown = masked_params(&stored, column.as_deref());
        assert_eq!(shown["TOKEN"], SECRET_MASK);
        assert_eq!(shown["HOST"], "db1");
        assert_eq!(masked_params(&stored, None)["TOKEN"], "t0p");
        assert_eq!(encode(&[]), None);
        assert_eq!(decode(column.as_deref()), vec!["TOKEN".to_owned()]);
    }
}
