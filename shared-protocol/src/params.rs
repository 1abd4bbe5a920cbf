//! Script parameters become environment variables of the script's process. The rules for
//! their names live here so that the orchestrator (422) and the agent (refusal) agree.

/// Longest parameter name accepted.
pub const MAX_PARAM_NAME_LEN: usize = 128;
/// Largest single parameter value, in bytes.
pub const MAX_PARAM_VALUE_LEN: usize = 64 * 1024;
/// Most parameters one job may carry.
pub const MAX_PARAMS: usize = 100;

/// Variables that would let a caller change which code runs (loader, interpreter and
/// shell start-up hooks) rather than pass data to the script.
const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "HOME",
    "SHELL",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "GCONV_PATH",
    "LOCPATH",
    "HOSTALIASES",
    "MALLOC_CHECK_",
];
const RESERVED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_", "SCRIPTMESH_", "GLIBC_"];

/// Checks a parameter name: `[A-Za-z_][A-Za-z0-9_]*`, not one of the reserved names.
pub fn validate_param_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_PARAM_NAME_LEN {
        return Err(format!(
            "parameter name {:?} is invalid: names match [A-Za-z_][A-Za-z0-9_]* (at most {MAX_PARAM_NAME_LEN} characters)",
            truncate(name)
        ));
    }
    let upper = name.to_ascii_uppercase();
    if RESERVED_NAMES.contains(&upper.as_str()) || RESERVED_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return Err(format!(
            "parameter name {name:?} is reserved: it would change how the script runs rather than pass it data"
        ));
    }
    Ok(())
}

/// Checks a parameter value: bounded size, no NUL byte (it cannot live in an environment).
pub fn validate_param_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_PARAM_VALUE_LEN {
        return Err(format!("parameter {name:?} is longer than {MAX_PARAM_VALUE_LEN} bytes"));
    }
    if value.contains('\0') {
        return Err(format!("parameter {name:?} contains a NUL byte"));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for name in ["target", "_x", "VERSION_2", "a"] {
            assert!(validate_param_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_bad_and_reserved_names() {
        for name in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x;y",
            "PATH",
            "LD_PRELOAD",
            "ld_preload",
            "BASH_ENV",
            "SCRIPTMESH_JOB_ID",
            "pythonpath",
        ] {
            assert!(validate_param_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn refuses_nul_and_huge_values() {
        assert!(validate_param_value("a", "x\0y").is_err());
        assert!(validate_param_value("a", &"x".repeat(MAX_PARAM_VALUE_LEN + 1)).is_err());
        assert!(validate_param_value("a", "x; touch /tmp/canary").is_ok());
    }
}
