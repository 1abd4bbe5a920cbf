//! Configuration: read once from the environment at start-up into a typed struct.
//! A bad value stops start-up with a message that names the variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Where email goes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailTransport {
    /// `SMTP_URL`: smtp://host:port (plain or STARTTLS when offered) or smtps://user:pass@host:port.
    Smtp(String),
    /// `RESEND_API_KEY`: Resend's HTTP API.
    Resend { api_key: String, base_url: String },
    /// Neither set: codes are written to the log (development mode).
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub bind_addr: SocketAddr,
    pub database_url: String,
    /// None: a random secret is made once and kept in the database.
    pub jwt_secret: Option<String>,
    pub email: EmailTransport,
    pub email_from: String,
    pub log_format: LogFormat,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Requests per minute per email (and per client address, times [`Config::RATE_LIMIT_ADDR_FACTOR`]) on
    /// login, verify-email and resend-code.
    pub auth_rate_limit_per_minute: u32,
    /// Connections in the database pool.
    pub database_pool_size: usize,
    /// Longest a long-poll is held open, in seconds (50 by default: an idle agent re-polls
    /// about once a minute, and the answer still comes before the 60 s idle timeout common
    /// to proxies and load balancers).
    pub max_poll_wait: u64,
    /// A dispatched job whose agent has not confirmed the start within this time goes back to the queue.
    pub dispatch_ack_timeout: Duration,
    /// HTTP worker threads.
    pub workers: usize,
    /// bcrypt work factor for passwords.
    pub bcrypt_cost: u32,
    /// `ALLOW_PRIVATE_WEBHOOKS`: let integrations and schedule webhooks reach loopback,
    /// private, link-local (cloud metadata) and other internal addresses. Off by default.
    pub allow_private_webhooks: bool,
    /// `DELIVERY_MAX_ATTEMPTS`: attempts per delivery before it is marked failed.
    pub delivery_max_attempts: u32,
    /// `DELIVERY_BASE_DELAY_MS`: the first retry's delay; each later one doubles (with jitter).
    pub delivery_base_delay: Duration,
    /// `PAGERDUTY_EVENTS_URL`: the Events API v2 endpoint for integrations that set none.
    pub pagerduty_events_url: String,
    /// `DATADOG_API_URL`: the Datadog API base for integrations that set neither `site` nor `api_url`.
    pub datadog_api_url: String,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants `Authorization: Bearer <it>`.
    pub metrics_token: Option<String>,
    /// `AUDIT_RETENTION_DAYS`: audit entries older than this are pruned (90 days by default).
    pub audit_retention: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl Config {
    pub const RATE_LIMIT_ADDR_FACTOR: u32 = 6;

    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let bind_addr = match get("BIND_ADDR") {
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                variable: "BIND_ADDR",
                message: format!("{value:?} is not a socket address like 0.0.0.0:8080"),
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
        };

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://scriptmesh.db".into());
        crate::db::Backend::from_url(&database_url).map_err(|message| ConfigError {
            variable: "DATABASE_URL",
            message,
        })?;

        let jwt_secret = get("JWT_SECRET");
        if let Some(secret) = &jwt_secret {
            if secret.len() < 16 {
                return Err(ConfigError {
                    variable: "JWT_SECRET",
                    message:
                        "must be at least 16 characters (or unset it to have one generated and kept in the database)"
                            .into(),
                });
            }
        }

        let email = match (get("SMTP_URL"), get("RESEND_API_KEY")) {
            (Some(url), _) => {
                let parsed = url::Url::parse(&url).map_err(|e| ConfigError {
                    variable: "SMTP_URL",
                    message: format!("not a URL ({e}); expected smtp://host:port or smtps://user:pass@host:port"),
                })?;
                if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
                    return Err(ConfigError {
                        variable: "SMTP_URL",
                        message: "expected smtp://host:port or smtps://user:pass@host:port".into(),
                    });
                }
                EmailTransport::Smtp(url)
            }
            (None, Some(api_key)) => EmailTransport::Resend {
                api_key,
                base_url: get("RESEND_BASE_URL").unwrap_or_else(|| "https://api.resend.com".into()),
            },
            (None, None) => EmailTransport::Log,
        };

        let email_from = get("EMAIL_FROM").unwrap_or_else(|| "ScriptMesh <no-reply@scriptmesh.local>".into());
        if email_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError {
                variable: "EMAIL_FROM",
                message: format!("{email_from:?} is not an address like \"ScriptMesh <no-reply@example.com>\""),
            });
        }

        let log_format = match get("LOG_FORMAT").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") | Some("pretty") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT",
                    message: format!("{other:?} is not one of text, json"),
                })
            }
        };

        let auth_rate_limit_per_minute = parse_number(&get, "AUTH_RATE_LIMIT_PER_MINUTE", 10, 1, 100_000)? as u32;
        let database_pool_size = parse_number(&get, "DATABASE_POOL_SIZE", 16, 1, 1000)? as usize;
        let max_poll_wait = parse_number(&get, "MAX_POLL_WAIT_SECS", 50, 1, 300)?;
        let dispatch_ack_timeout = Duration::from_secs(parse_number(&get, "DISPATCH_ACK_TIMEOUT_SECS", 30, 1, 3600)?);
        let default_workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let workers = parse_number(&get, "HTTP_WORKERS", default_workers as u64, 1, 256)? as usize;

        let bcrypt_cost = parse_number(&get, "BCRYPT_COST", 12, 4, 31)? as u32;

        let allow_private_webhooks = parse_bool(&get, "ALLOW_PRIVATE_WEBHOOKS", false)?;
        let delivery_max_attempts = parse_number(&get, "DELIVERY_MAX_ATTEMPTS", 5, 1, 50)? as u32;
        let audit_retention = Duration::from_secs(parse_number(&get, "AUDIT_RETENTION_DAYS", 90, 1, 36_500)? * 86_400);
        let delivery_base_delay =
            Duration::from_millis(parse_number(&get, "DELIVERY_BASE_DELAY_MS", 1000, 1, 3_600_000)?);
        let pagerduty_events_url =
            parse_http_url(&get, "PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue")?;
        let datadog_api_url = parse_http_url(&get, "DATADOG_API_URL", "https://api.datadoghq.com")?;
        let metrics_token = get("METRICS_TOKEN").map(|token| token.trim().to_owned());
        if metrics_token
            .as_deref()
            .is_some_and(|token| token.contains(char::is_whitespace))
        {
            return Err(ConfigError {
                variable: "METRICS_TOKEN",
                message: "must not contain spaces (it is sent as `Authorization: Bearer <token>`)".into(),
            });
        }

        Ok(Config {
            bind_addr,
            database_url,
            jwt_secret,
            email,
            email_from,
            log_format,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            auth_rate_limit_per_minute,
            database_pool_size,
            max_poll_wait,
            dispatch_ack_timeout,
            workers,
            bcrypt_cost,
            allow_private_webhooks,
            delivery_max_attempts,
            audit_retention,
            delivery_base_delay,
            pagerduty_events_url,
            datadog_api_url,
            metrics_token,
        })
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(variable).map(|value| value.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(value) => match value.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                variable,
                message: format!("{value:?} is not one of true, false"),
            }),
        },
    }
}

/// An http(s) base URL, kept without a trailing slash.
fn parse_http_url(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    let value = get(variable).unwrap_or_else(|| default.to_owned());
    let value = value.trim().trim_end_matches('/').to_owned();
    match url::Url::parse(&value) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => Ok(value),
        _ => Err(ConfigError {
            variable,
            message: format!("{value:?} is not an http:// or https:// URL"),
        }),
    }
}

fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError {
                variable,
                message: format!("{value:?} is not a whole number from {min} to {max}"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.database_url, "sqlite://scriptmesh.db");
        assert_eq!(config.email, EmailTransport::Log);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(7 * 86400));
        assert!(!config.allow_private_webhooks);
        assert_eq!(config.delivery_max_attempts, 5);
        assert_eq!(config.delivery_base_delay, Duration::from_millis(1000));
        assert_eq!(config.pagerduty_events_url, "https://events.pagerduty.com/v2/enqueue");
        assert_eq!(config.datadog_api_url, "https://api.datadoghq.com");
        assert_eq!(config.metrics_token, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("BIND_ADDR", "nonsense"),
            ("DATABASE_URL", "mysql://x"),
            ("JWT_SECRET", "short"),
            ("SMTP_URL", "http://mail"),
            ("EMAIL_FROM", "not an address"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_POOL_SIZE", "0"),
            ("ALLOW_PRIVATE_WEBHOOKS", "maybe"),
            ("DELIVERY_MAX_ATTEMPTS", "0"),
            ("DELIVERY_BASE_DELAY_MS", "x"),
            ("PAGERDUTY_EVENTS_URL", "ftp://pd"),
            ("DATADOG_API_URL", "nonsense"),
            ("METRICS_TOKEN", "two words"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn smtp_wins_over_resend() {
        let config = config(&[("SMTP_URL", "smtp://127.0.0.1:2525"), ("RESEND_API_KEY", "re_x")]).unwrap();
        assert_eq!(config.email, EmailTransport::Smtp("smtp://127.0.0.1:2525".into()));
    }
}
