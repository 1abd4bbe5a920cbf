//! HTTP to the orchestrator under test: a small request builder over awc (a fresh client
//! per request, so a restarted server never meets a stale pooled connection), and a raw
//! HTTP/1.1 sender for bytes no well-behaved client would send.

use awc::http::header::{HeaderName, HeaderValue};
pub use awc::http::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest any one request may take (long-polls included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    /// `Value::Null` when the body is empty or not JSON (see `text`).
    pub body: Value,
    pub text: String,
}

impl ApiResponse {
    fn new(status: StatusCode, headers: Vec<(String, String)>, raw: &[u8]) -> ApiResponse {
        let text = String::from_utf8_lossy(raw).into_owned();
        ApiResponse {
            status,
            headers,
            body: serde_json::from_slice(raw).unwrap_or(Value::Null),
            text,
        }
    }

    /// The first header of that name (case-insensitive).
    /// `(status, body)`, as the `TestApp` shorthands answer.
    pub fn into_parts(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// Asserts the status and the documented error shape:
    /// `{"error": {"code": "<code>", "message": "<not empty>"}}` with a JSON content type.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.error_code()),
            (status, Some(code)),
            "expected {status} {code}, got {} with body {}",
            self.status,
            self.text
        );
        self.assert_error_shape();
    }

    /// Asserts the documented error shape whatever the status and code, and that the
    /// status is a 4xx (the API must never answer bad input with a 5xx).
    #[track_caller]
    pub fn assert_client_error(&self) {
        assert!(
            self.status.is_client_error(),
            "expected a 4xx, got {} with body {}",
            self.status,
            self.text
        );
        self.assert_error_shape();
    }

    #[track_caller]
    fn assert_error_shape(&self) {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error responses must be JSON, got content-type {content_type:?}: {}",
            self.text
        );
        let error = &self.body["error"];
        let code_ok = error["code"].as_str().is_some_and(|code| {
            !code.is_empty()
                && code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        let message_ok = error["message"]
            .as_str()
            .is_some_and(|message| !message.trim().is_empty());
        assert!(
            code_ok && message_ok,
            "expected {{\"error\":{{\"code\":\"snake_case\",\"message\":\"...\"}}}}, got {}",
            self.text
        );
    }
}

enum Body {
    None,
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

/// One request to the server at `base_url`. Build it with `TestApp::request` (or the
/// `get`/`post_json`/`delete` shorthands) and `send` it.
pub struct RequestBuilder {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl RequestBuilder {
    pub(crate) fn new(method: Method, base_url: &str, path: &str) -> RequestBuilder {
        RequestBuilder {
            method,
            url: format!("{base_url}{path}"),
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// `Authorization: Bearer <token>` (a JWT or an `sm_live_` key); `None` sends no header.
    pub fn bearer(self, token: Option<&str>) -> RequestBuilder {
        match token {
            Some(token) => self.header("authorization", &format!("Bearer {token}")),
            None => self,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body with `Content-Type: application/json` (unless a content type was set).
    pub fn json(mut self, value: &Value) -> RequestBuilder {
        self.body = Body::Json(serde_json::to_vec(value).expect("serialize the request body"));
        self
    }

    /// These exact bytes, with no Content-Type unless one was set with `header`.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> RequestBuilder {
        self.body = Body::Bytes(bytes.into());
        self
    }

    /// Sends it; panics if no HTTP response came back.
    pub async fn send(self) -> ApiResponse {
        let description = format!("{} {}", self.method, self.url);
        self.try_send()
            .await
            .unwrap_or_else(|error| panic!("{description} got no response: {error}"))
    }

    /// Sends it; `Err` when no HTTP response came back (connection refused, time-out).
    pub async fn try_send(self) -> Result<ApiResponse, String> {
        install_crypto_provider();
        let client = awc::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .disable_redirects()
            .finish();
        let mut request = client.request(self.method, &self.url);
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header name {name:?}: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("header value {value:?}: {e}"))?;
            request = request.append_header((name, value));
        }
        let has_content_type = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        let sent = match self.body {
            Body::None => request.send().await,
            Body::Json(bytes) => {
                if !has_content_type {
                    request = request.insert_header(("content-type", "application/json"));
                }
                request.send_body(bytes).await
            }
            Body::Bytes(bytes) => request.send_body(bytes).await,
        };
        let mut response = sent.map_err(|e| e.to_string())?;
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let raw = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| format!("reading the response body: {e}"))?;
        Ok(ApiResponse::new(response.status(), headers, &raw))
    }
}

/// Sends `request` (a complete HTTP/1.1 request: request line, headers, blank line, body,
/// exactly as given) on a new connection to `address` and reads the response. It writes
/// and reads at the same time, so a server that answers early (a 413 before the body is
/// read) and closes the connection still yields its response.
pub async fn send_raw(address: &str, request: &[u8]) -> ApiResponse {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    let write = async move {
        // A write error is expected when the server answers early; the response decides.
        let _ = writer.write_all(&request).await;
        let _ = writer.flush().await;
        writer
    };
    let read = async {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response).await;
        response
    };
    let (response, _writer) = tokio::time::timeout(REQUEST_TIMEOUT, async {
        // The writer half is kept until the read ends, so the connection is not half-closed
        // early; the server closes it (`Connection: close` in the request) when it is done.
        let (writer, response) = tokio::join!(write, read);
        (response, writer)
    })
    .await
    .unwrap_or_else(|_| panic!("raw request to {address}: no complete response within {REQUEST_TIMEOUT:?}"));
    parse_raw_response(&response).unwrap_or_else(|| {
        panic!(
            "raw request to {address}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&response)
        )
    })
}

/// Status line, headers and body (Content-Length, chunked, or up to the end).
fn parse_raw_response(raw: &[u8]) -> Option<ApiResponse> {
    let head_end = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, v)| v.as_str());
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..length)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(ApiResponse::new(StatusCode::from_u16(status).ok()?, headers, &body))
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// awc's TLS support needs a process-wide rustls provider even for plain http.
fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_and_chunked_responses() {
        let fixed = parse_raw_response(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"error\":{}}\nextra",
        )
        .unwrap();
        assert_eq!(fixed.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(fixed.header("Content-Type"), Some("application/json"));
        assert_eq!(fixed.text, "{\"error\":{}}\n");

        let chunked = parse_raw_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, serde_json::json!({"a": 1}));
    }
}
