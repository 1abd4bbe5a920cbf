//! The agent's configuration: every environment variable is read here, once, at start-up,
//! into [`Config`]. A missing or bad value stops start-up with a message naming it.

use crate::error::AgentError;
use shared_protocol::ids::validate_agent_name;
use shared_protocol::AgentName;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the spec tells people to mount the manifest; used when it exists and
/// MANIFEST_PATH is not set.
pub const DOCKER_MANIFEST_PATH: &str = "/agent/script_manifest.json";
/// The PATH scripts get when the agent itself has none.
pub const FALLBACK_SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub const API_KEY_PREFIX: &str = "sm_live_";

/// The API key the agent authenticates with. Its `Debug` never shows the secret so that
/// logging a `Config` cannot leak it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// The raw key, for the Authorization header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({API_KEY_PREFIX}…)")
    }
}

/// The part of the agent's own environment that scripts inherit; everything else
/// (API_KEY above all) is withheld from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptBaseEnv {
    pub path: String,
    pub home: String,
    pub lang: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub agent_name: AgentName,
    /// One or more (comma-separated in ORCHESTRATOR_URL: replicas of one orchestrator),
    /// each without a trailing slash, so endpoint paths can be appended. The agent uses
    /// the first and moves to the next when one cannot be reached.
    pub orchestrator_urls: Vec<String>,
    pub api_key: ApiKey,
    pub bind_host: IpAddr,
    /// 0 lets the OS pick a free port.
    pub port: u16,
    pub heartbeat_interval: Duration,
    pub scripts_dir: PathBuf,
    pub manifest_path: PathBuf,
    pub tags: Vec<String>,
    pub max_concurrent_jobs: usize,
    pub spool_dir: PathBuf,
    pub default_job_timeout: Duration,
    /// Per stream: stdout and stderr are each capped at this many bytes.
    pub output_limit_bytes: usize,
    pub kill_grace: Duration,
    pub poll_wait: Duration,
    /// LIVE_OUTPUT: stream running jobs' output to the orchestrator as it is written.
    pub live_output: bool,
    pub script_env: ScriptBaseEnv,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, AgentError> {
        Config::from_lookup(lookup_env)
    }

    /// Reads variables from a map instead of the environment (tests, embedding).
    pub fn from_map(vars: &std::collections::HashMap<String, String>) -> Result<Config, AgentError> {
        Config::from_lookup(|name| Ok(vars.get(name).cloned()))
    }

    fn from_lookup(lookup: impl Fn(&str) -> Result<Option<String>, String>) -> Result<Config, AgentError> {
        let vars = Vars { lookup };

        let agent_name = vars.required("AGENT_NAME")?;
        validate_agent_name(&agent_name).map_err(|message| invalid("AGENT_NAME", message))?;

        let orchestrator_urls = parse_orchestrator_urls(&vars.required("ORCHESTRATOR_URL")?)?;

        let (api_key, key_variable) = match (vars.optional("API_KEY")?, vars.optional("API_KEY_FILE")?) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "API_KEY_FILE",
                    "is set together with API_KEY; set only one of them".to_owned(),
                ))
            }
            (Some(key), None) => (key, "API_KEY"),
            (None, Some(path)) => (read_api_key_file(&path)?, "API_KEY_FILE"),
            (None, None) => {
                return Err(invalid(
                    "API_KEY",
                    "is required but not set (or give API_KEY_FILE, a file holding the key)".to_owned(),
                ))
            }
        };
        if !api_key.starts_with(API_KEY_PREFIX) || api_key.len() == API_KEY_PREFIX.len() {
            // The value itself is never echoed: it may be a real secret with a typo.
            return Err(invalid(
                key_variable,
                format!("must be a ScriptMesh API key starting with {API_KEY_PREFIX}"),
            ));
        }

        let (bind_host, port) = health_bind(&vars)?;
        let heartbeat_interval = Duration::from_secs(vars.number("HEARTBEAT_INTERVAL", 60, 1, 3600)?);

        let scripts_dir = PathBuf::from(vars.optional("SCRIPTS_DIR")?.unwrap_or_else(|| "/scripts".into()));
        let manifest_path = match vars.optional("MANIFEST_PATH")? {
            Some(path) => PathBuf::from(path),
            None if Path::new(DOCKER_MANIFEST_PATH).is_file() => PathBuf::from(DOCKER_MANIFEST_PATH),
            None => scripts_dir.join("script_manifest.json"),
        };

        let tags = vars
            .optional("AGENT_TAGS")?
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();

        let max_concurrent_jobs = vars.number("MAX_CONCURRENT_JOBS", 4, 1, 256)? as usize;
        let spool_dir = PathBuf::from(
            vars.optional("SPOOL_DIR")?
                .unwrap_or_else(|| "./scriptmesh-agent-spool".into()),
        );
        // A week is far beyond any sane script; the cap catches unit mistakes (ms for s).
        let default_job_timeout = Duration::from_secs(vars.number("DEFAULT_JOB_TIMEOUT", 3600, 1, 7 * 24 * 3600)?);
        // Each running job holds two buffers of this size in memory, and the result must
        // fit the orchestrator's request limit (16 MiB) once JSON-escaped.
        let output_limit_bytes = vars.number("OUTPUT_LIMIT_BYTES", 1024 * 1024, 1, 8 * 1024 * 1024)? as usize;
        let kill_grace = Duration::from_secs(vars.number("KILL_GRACE_SECS", 5, 0, 600)?);
        let poll_wait = Duration::from_secs(vars.number("POLL_WAIT_SECS", 50, 1, 300)?);
        let live_output = vars.boolean("LIVE_OUTPUT", true)?;

        let script_env = ScriptBaseEnv {
            path: vars
                .optional("PATH")?
                .unwrap_or_else(|| FALLBACK_SCRIPT_PATH.to_owned()),
            home: vars.optional("HOME")?.unwrap_or_else(|| "/".to_owned()),
            lang: vars.optional("LANG")?,
        };

        Ok(Config {
            agent_name: AgentName::from(agent_name),
            orchestrator_urls,
            api_key: ApiKey(api_key),
            bind_host,
            port,
            heartbeat_interval,
            scripts_dir,
            manifest_path,
            tags,
            max_concurrent_jobs,
            spool_dir,
            default_job_timeout,
            output_limit_bytes,
            kill_grace,
            poll_wait,
            live_output,
            script_env,
        })
    }
}

/// Where a probe on this host reaches the agent's `/health`: AGENT_BIND_HOST and AGENT_PORT
/// read as the agent reads them, a wildcard host meaning loopback. Reads nothing else, so
/// `scriptmesh-agent healthcheck` works where API_KEY is not in the environment (a container
/// HEALTHCHECK that does not see a key given through API_KEY_FILE's file, say).
pub fn health_probe_address_from_env() -> Result<SocketAddr, AgentError> {
    health_probe_address(lookup_env)
}

/// [`health_probe_address_from_env`] over a map instead of the environment (tests).
pub fn health_probe_address_from_map(
    vars: &std::collections::HashMap<String, String>,
) -> Result<SocketAddr, AgentError> {
    health_probe_address(|name| Ok(vars.get(name).cloned()))
}

fn health_probe_address(lookup: impl Fn(&str) -> Result<Option<String>, String>) -> Result<SocketAddr, AgentError> {
    let (host, port) = health_bind(&Vars { lookup })?;
    if port == 0 {
        return Err(invalid(
            "AGENT_PORT",
            "is 0 (a random port): there is no fixed port to probe".to_owned(),
        ));
    }
    let host = match host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(host, port))
}

fn lookup_env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err("is not valid UTF-8".to_owned()),
    }
}

/// AGENT_BIND_HOST and AGENT_PORT: where `/health` and `/metrics` listen.
fn health_bind<F: Fn(&str) -> Result<Option<String>, String>>(vars: &Vars<F>) -> Result<(IpAddr, u16), AgentError> {
    let bind_host = match vars.optional("AGENT_BIND_HOST")? {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(host) => host.parse().map_err(|_| {
            invalid(
                "AGENT_BIND_HOST",
                format!("{host:?} is not an IP address (for example 0.0.0.0 or 127.0.0.1)"),
            )
        })?,
    };
    let port = vars.number("AGENT_PORT", 8001, 0, u16::MAX as u64)? as u16;
    Ok((bind_host, port))
}

/// API_KEY_FILE (Docker and Kubernetes secrets, a file written by an init step): the key is
/// the file's content without surrounding whitespace.
fn read_api_key_file(path: &str) -> Result<String, AgentError> {
    let content = std::fs::read_to_string(path)
        .map_err(|error| invalid("API_KEY_FILE", format!("cannot read {path:?}: {error}")))?;
    let key = content.trim();
    if key.is_empty() {
        return Err(invalid("API_KEY_FILE", format!("{path:?} is empty")));
    }
    Ok(key.to_owned())
}

struct Vars<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Result<Option<String>, String>> Vars<F> {
    /// An unset or blank variable counts as absent: container tooling often passes
    /// `NAME=` for "not set".
    fn optional(&self, name: &'static str) -> Result<Option<String>, AgentError> {
        let value = (self.lookup)(name).map_err(|message| invalid(name, message))?;
        Ok(value
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty()))
    }

    fn required(&self, name: &'static str) -> Result<String, AgentError> {
        self.optional(name)?
            .ok_or_else(|| invalid(name, "is required but not set".to_owned()))
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, AgentError> {
        let Some(raw) = self.optional(name)? else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(name, format!("{raw:?} is not true or false"))),
        }
    }

    fn number(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, AgentError> {
        let Some(raw) = self.optional(name)? else {
            return Ok(default);
        };
        let value: u64 = raw
            .parse()
            .map_err(|_| invalid(name, format!("{raw:?} is not a whole number")))?;
        if !(min..=max).contains(&value) {
            return Err(invalid(name, format!("{value} is out of range {min}..={max}")));
        }
        Ok(value)
    }
}

fn invalid(variable: &'static str, message: String) -> AgentError {
    AgentError::Config { variable, message }
}

/// `https://a.example.com` or, for replicas, `https://a.example.com,https://b.example.com`.
fn parse_orchestrator_urls(raw: &str) -> Result<Vec<String>, AgentError> {
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(parse_orchestrator_url)
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(invalid("ORCHESTRATOR_URL", format!("{raw:?} names no URL")));
    }
    Ok(urls)
}

fn parse_orchestrator_url(raw: &str) -> Result<String, AgentError> {
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| {
            invalid(
                "ORCHESTRATOR_URL",
                format!("{raw:?} must start with http:// or https://"),
            )
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid(
            "ORCHESTRATOR_URL",
            format!("{raw:?} is not a base URL like https://orchestrator.example.com"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<String, String> {
        [
            ("AGENT_NAME", "prod-server-1"),
            ("ORCHESTRATOR_URL", "http://127.0.0.1:9000/"),
            ("API_KEY", "sm_live_abc123"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn error_for(vars: &HashMap<String, String>) -> String {
        match Config::from_map(vars) {
            Ok(_) => panic!("expected a configuration error"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = Config::from_map(&base()).expect("valid config");
        assert_eq!(config.agent_name.as_str(), "prod-server-1");
        assert_eq!(config.orchestrator_urls, ["http://127.0.0.1:9000"]);
        assert_eq!(config.port, 8001);
        assert_eq!(config.bind_host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(60));
        assert_eq!(config.scripts_dir, PathBuf::from("/scripts"));
        assert_eq!(config.max_concurrent_jobs, 4);
        assert_eq!(config.default_job_timeout, Duration::from_secs(3600));
        assert_eq!(config.output_limit_bytes, 1024 * 1024);
        assert_eq!(config.kill_grace, Duration::from_secs(5));
        assert_eq!(config.poll_wait, Duration::from_secs(50));
        assert!(config.live_output);
        assert_eq!(config.script_env.path, FALLBACK_SCRIPT_PATH);
        assert!(config.tags.is_empty());
    }

    #[test]
    fn parses_overrides() {
        let mut vars = base();
        for (k, v) in [
            ("AGENT_PORT", "0"),
            ("AGENT_BIND_HOST", "127.0.0.1"),
            ("HEARTBEAT_INTERVAL", "5"),
            ("SCRIPTS_DIR", "/opt/scripts"),
            ("AGENT_TAGS", " production, ,backend ,"),
            ("MAX_CONCURRENT_JOBS", "16"),
            ("MANIFEST_PATH", "/etc/manifest.json"),
            ("PATH", "/bin"),
            ("LANG", "C.UTF-8"),
            ("LIVE_OUTPUT", "false"),
        ] {
            vars.insert(k.to_owned(), v.to_owned());
        }
        let config = Config::from_map(&vars).expect("valid config");
        assert_eq!(config.port, 0);
        assert_eq!(config.bind_host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(config.tags, vec!["production", "backend"]);
        assert_eq!(config.max_concurrent_jobs, 16);
        assert_eq!(config.manifest_path, PathBuf::from("/etc/manifest.json"));
        assert_eq!(config.script_env.path, "/bin");
        assert_eq!(config.script_env.lang.as_deref(), Some("C.UTF-8"));
        assert!(!config.live_output);
    }

    #[test]
    fn several_orchestrator_urls_are_replicas_in_order() {
        let mut vars = base();
        vars.insert(
            "ORCHESTRATOR_URL".into(),
            " http://10.0.0.1:8080/ , https://b.example.com,".into(),
        );
        let config = Config::from_map(&vars).expect("valid config");
        assert_eq!(
            config.orchestrator_urls,
            ["http://10.0.0.1:8080", "https://b.example.com"]
        );
    }

    #[test]
    fn manifest_defaults_to_scripts_dir() {
        let mut vars = base();
        vars.insert("SCRIPTS_DIR".into(), "/srv/scripts".into());
        let config = Config::from_map(&vars).expect("valid config");
        if !Path::new(DOCKER_MANIFEST_PATH).is_file() {
            assert_eq!(config.manifest_path, PathBuf::from("/srv/scripts/script_manifest.json"));
        }
    }

    #[test]
    fn errors_name_the_variable() {
        for (name, value) in [
            ("AGENT_NAME", ""),
            ("AGENT_NAME", "bad name!"),
            ("ORCHESTRATOR_URL", "ftp://x"),
            ("ORCHESTRATOR_URL", "http://"),
            ("ORCHESTRATOR_URL", ","),
            ("ORCHESTRATOR_URL", "http://a:8080,ftp://b"),
            ("API_KEY", "secret-without-prefix"),
            ("AGENT_PORT", "70000"),
            ("AGENT_PORT", "abc"),
            ("AGENT_BIND_HOST", "not-an-ip"),
            ("HEARTBEAT_INTERVAL", "0"),
            ("HEARTBEAT_INTERVAL", "3601"),
            ("MAX_CONCURRENT_JOBS", "0"),
            ("MAX_CONCURRENT_JOBS", "257"),
            ("DEFAULT_JOB_TIMEOUT", "-1"),
            ("OUTPUT_LIMIT_BYTES", "0"),
            ("POLL_WAIT_SECS", "0"),
            ("LIVE_OUTPUT", "maybe"),
        ] {
            let mut vars = base();
            vars.insert(name.to_owned(), value.to_owned());
            let message = error_for(&vars);
            assert!(message.contains(name), "{name}={value:?} gave {message}");
        }
    }

    #[test]
    fn missing_required_variables_are_named() {
        for name in ["AGENT_NAME", "ORCHESTRATOR_URL", "API_KEY"] {
            let mut vars = base();
            vars.remove(name);
            let message = error_for(&vars);
            assert!(message.contains(name), "{message}");
            assert!(message.contains("required"), "{message}");
        }
    }

    #[test]
    fn api_key_can_come_from_a_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key_file = dir.path().join("agent.key");
        std::fs::write(&key_file, "sm_live_fromafile\n").expect("write the key file");
        let mut vars = base();
        vars.remove("API_KEY");
        vars.insert("API_KEY_FILE".into(), key_file.display().to_string());
        let config = Config::from_map(&vars).expect("valid config");
        assert_eq!(config.api_key.expose(), "sm_live_fromafile");

        // Both at once is ambiguous: which one did the operator mean?
        vars.insert("API_KEY".into(), "sm_live_fromtheenv".into());
        assert!(error_for(&vars).contains("API_KEY_FILE"));
        vars.remove("API_KEY");

        std::fs::write(&key_file, "  \n").expect("write the key file");
        assert!(error_for(&vars).contains("is empty"));
        std::fs::write(&key_file, "wrong_topsecretvalue").expect("write the key file");
        let message = error_for(&vars);
        assert!(
            message.contains("API_KEY_FILE") && !message.contains("topsecretvalue"),
            "{message}"
        );
        vars.insert("API_KEY_FILE".into(), dir.path().join("missing").display().to_string());
        let message = error_for(&vars);
        assert!(
            message.contains("API_KEY_FILE") && message.contains("cannot read"),
            "{message}"
        );
    }

    #[test]
    fn the_health_probe_needs_only_the_bind_variables() {
        let probe = |pairs: &[(&str, &str)]| {
            let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            health_probe_address_from_map(&vars)
        };
        assert_eq!(
            probe(&[]).expect("defaults"),
            "127.0.0.1:8001".parse::<SocketAddr>().expect("literal")
        );
        assert_eq!(
            probe(&[("AGENT_PORT", "9100"), ("AGENT_BIND_HOST", "::")]).expect("valid"),
            "[::1]:9100".parse::<SocketAddr>().expect("literal")
        );
        assert_eq!(
            probe(&[("AGENT_BIND_HOST", "10.0.0.7")]).expect("valid"),
            "10.0.0.7:8001".parse::<SocketAddr>().expect("literal")
        );
        for bad in [("AGENT_PORT", "0"), ("AGENT_PORT", "x"), ("AGENT_BIND_HOST", "host")] {
            let error = probe(&[bad]).expect_err("refused").to_string();
            assert!(error.contains(bad.0), "{error}");
        }
    }

    #[test]
    fn api_key_is_never_shown() {
        let mut vars = base();
        vars.insert("API_KEY".into(), "sm_live_topsecretvalue".into());
        let config = Config::from_map(&vars).expect("valid config");
        assert!(!format!("{config:?}").contains("topsecretvalue"));

        vars.insert("API_KEY".into(), "wrong_topsecretvalue".into());
        assert!(!error_for(&vars).contains("topsecretvalue"));
    }
}
