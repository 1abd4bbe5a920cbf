//! One module per group of commands: each reads its arguments, makes its API calls through
//! the `Client`, prints a table or the JSON, and returns the exit status.

pub mod agents;
pub mod audit;
pub mod fanout;
pub mod integrations;
pub mod jobs;
pub mod keys;
pub mod members;
pub mod password;
pub mod run;
pub mod schedules;
pub mod session;

use crate::args::Param;
use serde_json::{Map, Value};

/// `--param k=v` flags as the API's `params` object (values are text: scripts get them as
/// environment variables).
fn params_object(params: &[Param]) -> Map<String, Value> {
    params
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect()
}
