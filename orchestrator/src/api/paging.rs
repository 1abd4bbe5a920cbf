//! The one paging rule of list endpoints: `limit` (1 to 500, 50 by default) and `cursor`,
//! the id of the last entry of the previous page. Ids are time-ordered (`db::new_id`), so
//! "older than the cursor" is "id below it"; a cursor that is not such an id is a 422, not
//! an empty page. Times in filters are RFC 3339.

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// The page size asked for.
pub fn limit(value: Option<i64>) -> Result<i64> {
    let limit = value.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::Validation(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    Ok(limit)
}

/// A cursor, which must be an id with `prefix` (`job`, `aud`, ...).
pub fn cursor(prefix: &str, value: Option<String>) -> Result<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let valid = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(Error::Validation(
            "cursor must be the next_cursor of a previous page".into(),
        ));
    }
    Ok(Some(value))
}

/// An optional RFC 3339 time, as milliseconds.
pub fn time(field: &str, value: &Option<String>) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|_| Error::Validation(format!("{field} must be an RFC 3339 time like 2026-03-10T14:32:11Z")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(limit(None).unwrap(), 50);
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        let id = crate::db::new_id("job");
        assert_eq!(cursor("job", Some(id.clone())).unwrap(), Some(id));
        for bad in ["garbage", "aud_0192f7c5e0a87b4c9d1e2f3a4b5c6d7e", "job_xyz", "job_"] {
            assert!(cursor("job", Some(bad.into())).is_err(), "{bad}");
        }
        assert!(time("since", &Some("yesterday".into())).is_err());
    }
}
