//! `Receiver`: a local HTTP/1.1 server standing in for Slack, PagerDuty, a Pushgateway or
//! any webhook. It records every request (method, path, headers, body) and answers with a
//! status the test programs (`respond_with`, `respond_with_sequence`), optionally late
//! (`delay_responses`).
//!
//! ```text
//! let slack = Receiver::start().await;                  // slack.url() = http://127.0.0.1:PORT
//! ... create an integration with webhook_url = slack.url_for("/services/T0/B0/x") ...
//! let request = slack.wait_for_request(Duration::from_secs(10)).await;
//! assert_eq!(request.json()["text"], "...");
//! ```

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub method: String,
    /// Path and query, e.g. `/services/collector/event`.
    pub path: String,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
    pub received_at: Instant,
}

impl ReceivedRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (with the body) if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

struct Behaviour {
    /// Answers for the next requests, in order; then `status`.
    queued: VecDeque<u16>,
    status: u16,
    body: String,
    delay: Duration,
}

/// Stops serving when dropped.
pub struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on 127.0.0.1 (a free port); answers 200 `{"ok":true}` until told otherwise.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let url = format!("http://{}", listener.local_addr().expect("receiver address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            queued: VecDeque::new(),
            status: 200,
            body: r#"{"ok":true}"#.into(),
            delay: Duration::ZERO,
        }));
        let (record, answer) = (requests.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, record.clone(), answer.clone()));
            }
        });
        Receiver {
            url,
            requests,
            behaviour,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The port, for URLs written by hand (`http://localhost:PORT/...`).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// Answers every later request with `status`.
    pub fn respond_with(&self, status: u16) {
        let mut behaviour = self.behaviour.lock().unwrap();
        behaviour.queued.clear();
        behaviour.status = status;
    }

    /// Answers the next requests with these statuses in turn, then with the usual one.
    pub fn respond_with_sequence(&self, statuses: &[u16]) {
        self.behaviour.lock().unwrap().queued = statuses.iter().copied().collect();
    }

    /// Holds every answer back this long (a slow receiver).
    pub fn delay_responses(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived; returns them all. Panics on timeout.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} got {} requests within {timeout:?}, expected {count}: {:#?}",
                    self.url,
                    requests.len(),
                    requests
                        .iter()
                        .map(|r| (&r.method, &r.path, r.text()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the first request for which `matches` holds. Panics on timeout.
    pub async fn wait_for_matching(
        &self,
        timeout: Duration,
        what: &str,
        matches: impl Fn(&ReceivedRequest) -> bool,
    ) -> ReceivedRequest {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.requests().into_iter().find(|r| matches(r)) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} got no request with {what} within {timeout:?}; got: {:#?}",
                    self.url,
                    self.requests()
                        .iter()
                        .map(|r| (&r.method, &r.path, r.text()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection: requests in turn while the client keeps it open.
async fn serve(mut stream: TcpStream, record: Arc<Mutex<Vec<ReceivedRequest>>>, behaviour: Arc<Mutex<Behaviour>>) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_ascii_lowercase())
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let close = header("connection").is_some_and(|v| v == "close");
        buffer.drain(..head_end);
        let body = if chunked {
            match read_chunked(&mut stream, &mut buffer).await {
                Some(body) => body,
                None => return,
            }
        } else {
            while buffer.len() < length {
                if !read_more(&mut stream, &mut buffer).await {
                    return;
                }
            }
            buffer.drain(..length).collect()
        };
        let (status, answer, delay) = {
            let mut behaviour = behaviour.lock().unwrap();
            let status = behaviour.queued.pop_front().unwrap_or(behaviour.status);
            (status, behaviour.body.clone(), behaviour.delay)
        };
        record.lock().unwrap().push(ReceivedRequest {
            method,
            path,
            headers,
            body,
            answered: status,
            received_at: Instant::now(),
        });
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
            reason(status),
            answer.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads until the buffer holds a whole request head; returns where the head ends.
async fn read_until_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(position + 4);
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(position) = buffer.windows(2).position(|w| w == b"\r\n") {
                break position;
            }
            if !read_more(stream, buffer).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        while buffer.len() < size + 2 {
            if !read_more(stream, buffer).await {
                return None;
            }
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
