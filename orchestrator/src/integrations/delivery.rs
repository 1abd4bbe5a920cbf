//! One delivery attempt over HTTP: the SSRF guard, the request with its timeouts, and what
//! the answer means (delivered, try again later, give up); plus the retry schedule.

use super::ssrf::{self, GuardError};
use awc::error::SendRequestError;
use awc::http::Method;
use rand::Rng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest wait for a TCP (and TLS) connection, name resolution included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole attempt may take, connecting and reading the answer included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts, whatever the backoff or a Retry-After says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// How much of a receiver's answer is kept in the delivery's `last_error`.
const ERROR_BODY_CHARS: usize = 300;
const USER_AGENT: &str = concat!("ScriptMesh/", env!("CARGO_PKG_VERSION"));

/// A request as a provider renders it, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// False for URLs the operator configured (PAGERDUTY_EVENTS_URL, ...): only URLs a
    /// tenant gave pass the SSRF guard.
    pub guarded: bool,
}

impl OutboundRequest {
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> OutboundRequest {
        OutboundRequest {
            method: Method::POST,
            url: url.into(),
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            guarded: true,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> OutboundRequest {
        self.headers.push((name, value.into()));
        self
    }

    pub fn operator_configured(mut self) -> OutboundRequest {
        self.guarded = false;
        self
    }
}

/// What the attempt's answer means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A passing failure (connection error, timeout, 408, 429, 5xx): try again later.
    Retry,
    /// The receiver refused for good (another 4xx, a redirect) or the guard refused.
    GiveUp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub verdict: Verdict,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The receiver's Retry-After, in seconds, when it gave one.
    pub retry_after: Option<Duration>,
}

impl AttemptOutcome {
    /// An attempt that ended before any request (the guard refused, the target is gone, ...).
    pub fn not_sent(verdict: Verdict, error: impl Into<String>) -> AttemptOutcome {
        AttemptOutcome {
            verdict,
            response_code: None,
            error: Some(error.into()),
            duration_ms: 0,
            retry_after: None,
        }
    }
}

/// The HTTP client deliveries use: no redirects followed (a redirect could lead past the
/// SSRF guard), connect and total timeouts. `awc::Client` is `!Send`: one per actor.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(CONNECT_TIMEOUT))
        .timeout(TOTAL_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// Sends `request` once. Credentials in the URL (`https://user:pass@host`) become basic auth.
pub async fn attempt(client: &awc::Client, request: &OutboundRequest, allow_private: bool) -> AttemptOutcome {
    let started = Instant::now();
    let mut outcome = match tokio::time::timeout(TOTAL_TIMEOUT, send(client, request, allow_private)).await {
        Ok(outcome) => outcome,
        Err(_) => AttemptOutcome::not_sent(
            Verdict::Retry,
            format!("no answer within {} s", TOTAL_TIMEOUT.as_secs()),
        ),
    };
    outcome.duration_ms = started.elapsed().as_millis() as i64;
    outcome
}

async fn send(client: &awc::Client, request: &OutboundRequest, allow_private: bool) -> AttemptOutcome {
    let mut url = match url::Url::parse(&request.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        _ => return AttemptOutcome::not_sent(Verdict::GiveUp, "the target is not an http(s) URL"),
    };
    let addresses: Vec<SocketAddr> = if request.guarded {
        match ssrf::check_url(&url, allow_private).await {
            Ok(addresses) => addresses,
            Err(GuardError::Refused(message)) => return AttemptOutcome::not_sent(Verdict::GiveUp, message),
            Err(GuardError::Unresolvable(message)) => return AttemptOutcome::not_sent(Verdict::Retry, message),
        }
    } else {
        Vec::new()
    };
    let credentials = (!url.username().is_empty()).then(|| {
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode);
        (user, password)
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);

    // Each checked address in turn, while connecting fails; with none, the client resolves.
    let targets: Vec<Option<SocketAddr>> = if addresses.is_empty() {
        vec![None]
    } else {
        addresses.iter().copied().map(Some).take(3).collect()
    };
    let mut last_error = String::new();
    for target in targets {
        let mut builder = client
            .request(request.method.clone(), url.as_str())
            .insert_header(("content-type", request.content_type))
            .insert_header(("user-agent", USER_AGENT));
        for (name, value) in &request.headers {
            builder = builder.insert_header((*name, value.as_str()));
        }
        if let Some((user, password)) = &credentials {
            builder = builder.basic_auth(user, password.as_deref().unwrap_or_default());
        }
        if let Some(address) = target {
            builder = builder.address(address);
        }
        match builder.send_body(request.body.clone()).await {
            Ok(mut response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.body().limit(64 * 1024).await.unwrap_or_default();
                return judge(status.as_u16(), &body, retry_after);
            }
            Err(SendRequestError::Connect(error)) => {
                last_error = format!("could not connect: {error}");
            }
            Err(SendRequestError::Timeout) => {
                return AttemptOutcome::not_sent(
                    Verdict::Retry,
                    format!("no answer within {} s", TOTAL_TIMEOUT.as_secs()),
                )
            }
            Err(error) => return AttemptOutcome::not_sent(Verdict::Retry, format!("request failed: {error}")),
        }
    }
    AttemptOutcome::not_sent(Verdict::Retry, last_error)
}

/// 2xx is delivered; 408, 429 and 5xx are worth another try; the rest will not change.
fn judge(status: u16, body: &[u8], retry_after: Option<Duration>) -> AttemptOutcome {
    let verdict = match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::GiveUp,
    };
    let error = match verdict {
        Verdict::Delivered => None,
        _ => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.trim().chars().take(ERROR_BODY_CHARS).collect();
            let mut message = format!("the receiver answered {status}");
            if (300..400).contains(&status) {
                message.push_str(" (redirects are not followed)");
            }
            if !excerpt.is_empty() {
                message.push_str(": ");
                message.push_str(&excerpt);
            }
            Some(message)
        }
    };
    AttemptOutcome {
        verdict,
        response_code: Some(status),
        error,
        duration_ms: 0,
        retry_after,
    }
}

/// `%40` -> `@`, as user names and passwords appear in URLs.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The wait before attempt `attempts + 1`, after `attempts` failed: `base * 2^(attempts-1)`,
/// with "equal jitter" (half fixed, half random) so that many deliveries failing together
/// do not retry together; at least the receiver's Retry-After, at most an hour.
pub fn retry_delay(attempts: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(MAX_RETRY_DELAY);
    let half = full / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    let delay = half + Duration::from_millis(jitter);
    delay.max(retry_after.unwrap_or_default()).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_documented() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(judge(status, b"", None).verdict, Verdict::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(judge(status, b"", None).verdict, Verdict::Retry, "{status}");
        }
        for status in [301, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(judge(status, b"", None).verdict, Verdict::GiveUp, "{status}");
        }
        let outcome = judge(400, b"invalid_payload", None);
        assert_eq!(
            outcome.error.as_deref(),
            Some("the receiver answered 400: invalid_payload")
        );
        assert_eq!(outcome.response_code, Some(400));
        assert!(judge(302, b"", None)
            .error
            .unwrap()
            .contains("redirects are not followed"));
    }

    #[test]
    fn retry_delays_grow_with_jitter_and_stay_bounded() {
        let base = Duration::from_millis(1000);
        for _ in 0..100 {
            let first = retry_delay(1, base, None);
            assert!((500..=1000).contains(&(first.as_millis() as u64)), "{first:?}");
            let third = retry_delay(3, base, None);
            assert!((2000..=4000).contains(&(third.as_millis() as u64)), "{third:?}");
            assert!(retry_delay(40, base, None) <= MAX_RETRY_DELAY);
        }
        assert!(retry_delay(1, base, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(
            retry_delay(1, base, Some(Duration::from_secs(100_000))),
            MAX_RETRY_DELAY
        );
    }

    #[test]
    fn credentials_in_urls_are_decoded() {
        assert_eq!(percent_decode("us%40er"), "us@er");
        assert_eq!(percent_decode("p%3Ass+x%"), "p:ss+x%");
    }
}
