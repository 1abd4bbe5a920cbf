//! Following a Server-Sent Events stream of the orchestrator (`GET /jobs/{id}/output?follow=true`)
//! the way a client does: each event with the time it arrived, so tests can tell how live
//! it was.

use awc::error::PayloadError;
use awc::http::StatusCode;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// One event as it arrived.
#[derive(Clone, Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    /// The data, parsed as JSON (`Null` if it is not).
    pub data: Value,
    /// When its last line arrived, by the machine's clock (as scripts' `date` reads it).
    pub at: SystemTime,
}

impl Event {
    /// Milliseconds since the Unix epoch at arrival.
    pub fn at_ms(&self) -> i64 {
        self.at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = Result<Vec<u8>, PayloadError>>>>,
    buffer: Vec<u8>,
    name: Option<String>,
    id: Option<String>,
    data: Option<String>,
}

impl EventStream {
    /// Opens `url` with the bearer token (and `Last-Event-ID`, to resume); panics unless it
    /// answers 200 with `text/event-stream`.
    pub async fn open(url: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = awc::Client::new()
            .get(url)
            .bearer_auth(token)
            .insert_header(("accept", "text/event-stream"));
        if let Some(id) = last_event_id {
            request = request.insert_header(("last-event-id", id));
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "GET {url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "text/event-stream", "GET {url}");
        EventStream {
            body: Box::pin(response.map(|bytes| bytes.map(|bytes| bytes.to_vec()))),
            buffer: Vec::new(),
            name: None,
            id: None,
            data: None,
        }
    }

    /// The next event, or None when the stream ended (or nothing came `within`).
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if let Some(event) = self.line(line.trim_end_matches('\r')) {
                    return Some(event);
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                Ok(Some(Err(error))) => panic!("the event stream broke: {error}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every event until the stream ends (the `end` event is the last), failing after `within`.
    pub async fn until_end(&mut self, within: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) => {
                    let last = event.name == "end";
                    events.push(event);
                    if last {
                        return events;
                    }
                }
                None => panic!("the stream gave no end event within {within:?}; got {events:?}"),
            }
        }
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let (name, id) = (self.name.take(), self.id.take());
            return data.map(|data| Event {
                name: name.unwrap_or_else(|| "message".into()),
                id,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
                at: SystemTime::now(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "event" => self.name = Some(value),
            "id" => self.id = Some(value),
            "data" => {
                self.data = Some(match self.data.take() {
                    Some(data) => format!("{data}\n{value}"),
                    None => value,
                })
            }
            _ => {}
        }
        None
    }
}

/// The text of the `output` events, concatenated.
pub fn output_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|event| event.name == "output")
        .filter_map(|event| event.data["data"].as_str())
        .collect()
}
