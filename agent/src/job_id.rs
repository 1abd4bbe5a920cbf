//! Job ids come from the orchestrator and end up in spool file names and URL paths, so
//! the agent only accepts a conservative alphabet (ids look like `job_a3f8c9d2`).

use shared_protocol::JobId;

const MAX_JOB_ID_LEN: usize = 128;

pub fn parse_job_id(raw: &str) -> Result<JobId, String> {
    let well_formed = !raw.is_empty()
        && raw.len() <= MAX_JOB_ID_LEN
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if well_formed {
        Ok(JobId::from(raw))
    } else {
        Err(format!(
            "job id {:?} is not of the form [A-Za-z0-9_-]{{1,{MAX_JOB_ID_LEN}}}",
            raw.chars().take(40).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_and_refuses_paths() {
        assert!(parse_job_id("job_a3f8c9d2").is_ok());
        assert!(parse_job_id("job_0190-ab").is_ok());
        for bad in ["", "../x", "job/1", "job 1", "job.json", "job%2f", &"j".repeat(129)] {
            assert!(parse_job_id(bad).is_err(), "{bad}");
        }
    }
}
