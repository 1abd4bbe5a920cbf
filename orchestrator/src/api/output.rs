//! `GET /jobs/{id}/output`: a job's output as it is written. While the job runs, it is the
//! live output its agent streams (both pipes interleaved, as a terminal shows them); once it
//! finished without having streamed any, it is the result's stdout then stderr. Positions
//! are UTF-8 byte offsets into that output, so a reader can always go on where it stopped:
//! with `?offset=` or, for a Server-Sent Events follower (`?follow=true`), the standard
//! `Last-Event-ID` header its reconnect sends.

use crate::api::docs::Endpoint;
use crate::auth::Caller;
use crate::db::models::{Job, OutputRow};
use crate::db::{self, Db};
use crate::error::Result;
use crate::state::AppState;
use crate::watch::RECHECK_INTERVAL;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_protocol::api::{JobOutput, OutputEnd, OutputGap, OutputPiece};
use shared_protocol::protocol::OutputStream;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use utoipa_actix_web::service_config::ServiceConfig;

/// Chunks read per query.
const PAGE: i64 = 256;
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_output, output));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OutputQuery {
    /// Stream the output as Server-Sent Events until the job ends: `output` events (a
    /// piece each, its end offset as the event id), `gap` when bytes were not kept, and a
    /// last `end` with the job's status.
    #[serde(default)]
    follow: bool,
    /// Start at this byte offset (default 0). A follower's `Last-Event-ID` takes precedence.
    #[serde(default)]
    offset: Option<u64>,
}

/// A job's output, or a live stream of it.
///
/// Without `follow`: a page of the output from `offset` (JSON); `complete` once the job has
/// finished and nothing is left. With `follow=true`: `text/event-stream` until the job
/// ends, on whichever replica its agent reports to.
#[utoipa::path(
    get, path = "/jobs/{id}/output", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), OutputQuery),
    responses(
        (status = 200, description = "A page of output (JSON), or with `follow=true` an event stream", body = JobOutput),
        (status = 404, description = "No such job"),
        (status = 422, description = "A malformed query"),
    ),
    security(("bearer" = [])),
)]
async fn output(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    job_id: web::Path<String>,
    query: web::Query<OutputQuery>,
) -> Result<HttpResponse> {
    let job_id = job_id.into_inner();
    let job = db::jobs::get(&state.db, &caller.tenant_id, &job_id).await?;
    let resumed = req
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let cursor = resumed.or(query.offset).unwrap_or(0);
    let reader = Reader {
        db: state.db.clone(),
        tenant_id: caller.tenant_id.clone(),
        job_id,
        cursor,
    };
    if !query.follow {
        let (events, terminal, exhausted) = reader_step(reader.clone(), &job).await?;
        let mut pieces = Vec::new();
        let mut next_offset = cursor;
        for event in events {
            if let Event::Piece(piece) = event {
                next_offset = piece.offset + piece.data.len() as u64;
                pieces.push(piece);
            }
        }
        return Ok(HttpResponse::Ok().json(JobOutput {
            job_id: job.id,
            status: job.status,
            pieces,
            next_offset,
            complete: terminal && exhausted,
        }));
    }
    let follower = Follower {
        changes: state.watchers.subscribe(&reader.job_id),
        reader,
        queued: VecDeque::from([Bytes::from_static(b"retry: 1000\n\n")]),
        ended: false,
        last_sent: Instant::now(),
    };
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let bytes = follower.next().await?;
        Some((Ok::<_, actix_web::Error>(bytes), follower))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Proxies such as nginx must pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// What a reader passes on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Piece(OutputPiece),
    Gap(OutputGap),
}

#[derive(Clone)]
struct Reader {
    db: Db,
    tenant_id: String,
    job_id: String,
    /// Everything before this offset was passed on.
    cursor: u64,
}

/// Reads what lies past the reader's cursor given the job as just loaded: the events, and
/// whether the job is finished and nothing more is left to read of it.
async fn reader_step(reader: Reader, job: &Job) -> Result<(Vec<Event>, bool, bool)> {
    let terminal = job.is_finished();
    let rows = db::jobs::output::read(&reader.db, &reader.tenant_id, &reader.job_id, reader.cursor, PAGE).await?;
    let full_page = rows.len() as i64 == PAGE;
    let pieces = if rows.is_empty()
        && terminal
        && !db::jobs::output::has_any(&reader.db, &reader.tenant_id, &reader.job_id).await?
    {
        result_pieces(job)
    } else {
        rows.into_iter().map(piece).collect()
    };
    let (events, _) = advance(pieces, reader.cursor);
    Ok((events, terminal, !full_page))
}

fn piece(row: OutputRow) -> OutputPiece {
    OutputPiece {
        offset: row.start_offset.max(0) as u64,
        stream: OutputStream::parse(&row.stream).unwrap_or(OutputStream::Stdout),
        data: row.data,
    }
}

/// The output of a job that streamed none: its result's stdout, then its stderr.
fn result_pieces(job: &Job) -> Vec<OutputPiece> {
    [
        (OutputStream::Stdout, &job.stdout, 0),
        (OutputStream::Stderr, &job.stderr, job.stdout.len() as u64),
    ]
    .into_iter()
    .filter(|(_, data, _)| !data.is_empty())
    .map(|(stream, data, offset)| OutputPiece {
        offset,
        stream,
        data: data.clone(),
    })
    .collect()
}

/// The events that take a reader from `cursor` through `pieces` (in offset order), and
/// where it then stands. A piece the cursor is inside of is cut at the cursor (at the next
/// character boundary); one past it is preceded by a gap.
fn advance(pieces: Vec<OutputPiece>, mut cursor: u64) -> (Vec<Event>, u64) {
    let mut events = Vec::with_capacity(pieces.len());
    for mut piece in pieces {
        let end = piece.offset + piece.data.len() as u64;
        if end <= cursor {
            continue;
        }
        if piece.offset > cursor {
            events.push(Event::Gap(OutputGap {
                from: cursor,
                to: piece.offset,
            }));
        } else if piece.offset < cursor {
            let mut skip = (cursor - piece.offset) as usize;
            while !piece.data.is_char_boundary(skip) {
                skip += 1;
            }
            piece.data.drain(..skip);
            piece.offset += skip as u64;
            if piece.data.is_empty() {
                cursor = end;
                continue;
            }
        }
        cursor = end;
        events.push(Event::Piece(piece));
    }
    (events, cursor)
}

/// One Server-Sent Event; `data` is JSON, which holds no raw line breaks.
fn sse(name: &str, id: Option<u64>, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("event: {name}\n{id}data: {data}\n\n"))
}

struct Follower {
    reader: Reader,
    changes: tokio::sync::watch::Receiver<u64>,
    queued: VecDeque<Bytes>,
    ended: bool,
    last_sent: Instant,
}

/// The `error` event: the stream ends early; reconnecting resumes it.
#[derive(Serialize)]
struct StreamError {
    message: String,
}

impl Follower {
    /// The next bytes to send, or None when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.queued.pop_front() {
                self.last_sent = Instant::now();
                return Some(bytes);
            }
            if self.ended {
                return None;
            }
            if let Err(error) = self.look().await {
                tracing::warn!(job_id = %self.reader.job_id, %error, "output stream ended by an error");
                self.ended = true;
                self.queued.push_back(sse(
                    "error",
                    None,
                    &StreamError {
                        message: error.to_string(),
                    },
                ));
            }
            if self.queued.is_empty() && !self.ended {
                self.wait().await;
            }
        }
    }

    /// Reads what is new; queues its events, and the end once the job finished and all of
    /// its output was passed on.
    async fn look(&mut self) -> Result<()> {
        // Marked seen first: a change from now on wakes the wait that follows.
        self.changes.borrow_and_update();
        let job = db::jobs::get(&self.reader.db, &self.reader.tenant_id, &self.reader.job_id).await?;
        let (events, terminal, exhausted) = reader_step(self.reader.clone(), &job).await?;
        for event in events {
            match event {
                Event::Piece(piece) => {
                    let end = piece.offset + piece.data.len() as u64;
                    self.reader.cursor = end;
                    self.queued.push_back(sse("output", Some(end), &piece));
                }
                Event::Gap(gap) => {
                    self.reader.cursor = gap.to;
                    self.queued.push_back(sse("gap", Some(gap.to), &gap));
                }
            }
        }
        if terminal && exhausted {
            self.ended = true;
            self.queued.push_back(sse(
                "end",
                Some(self.reader.cursor),
                &OutputEnd {
                    status: job.status,
                    exit_code: job.exit_code,
                    reason: job.reason,
                    next_offset: self.reader.cursor,
                },
            ));
        }
        Ok(())
    }

    /// Until the job changes, the re-check interval passes, or a keepalive is due.
    async fn wait(&mut self) {
        let keepalive_at = self.last_sent + KEEPALIVE;
        tokio::select! {
            _ = self.changes.changed() => {}
            () = tokio::time::sleep(RECHECK_INTERVAL) => {}
            () = tokio::time::sleep_until(keepalive_at) => {
                self.queued.push_back(Bytes::from_static(b": keepalive\n\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(offset: u64, data: &str) -> OutputPiece {
        OutputPiece {
            offset,
            stream: OutputStream::Stdout,
            data: data.into(),
        }
    }

    #[test]
    fn a_reader_goes_on_where_it_stopped() {
        let pieces = vec![piece(0, "one\n"), piece(4, "two\n"), piece(8, "three\n")];
        let (events, cursor) = advance(pieces.clone(), 0);
        assert_eq!(events.len(), 3);
        assert_eq!(cursor, 14);
        // Resumed inside the second piece: the rest of it, then the third.
        let (events, cursor) = advance(pieces.clone(), 6);
        assert_eq!(
            events,
            vec![Event::Piece(piece(6, "o\n")), Event::Piece(piece(8, "three\n"))]
        );
        assert_eq!(cursor, 14);
        // Resumed at the end: nothing.
        assert_eq!(advance(pieces, 14), (vec![], 14));
    }

    #[test]
    fn bytes_not_kept_show_as_a_gap() {
        let (events, cursor) = advance(vec![piece(0, "head"), piece(100, "tail")], 0);
        assert_eq!(
            events,
            vec![
                Event::Piece(piece(0, "head")),
                Event::Gap(OutputGap { from: 4, to: 100 }),
                Event::Piece(piece(100, "tail")),
            ]
        );
        assert_eq!(cursor, 104);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes; resuming at its second byte starts after it.
        let (events, cursor) = advance(vec![piece(0, "aéb")], 2);
        assert_eq!(events, vec![Event::Piece(piece(3, "b"))]);
        assert_eq!(cursor, 4);
        let (events, _) = advance(vec![piece(0, "é")], 1);
        assert!(events.is_empty());
    }

    #[test]
    fn events_are_server_sent_events() {
        let bytes = sse("output", Some(5), &piece(0, "a\nb\n"));
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "event: output\nid: 5\ndata: {\"offset\":0,\"stream\":\"stdout\",\"data\":\"a\\nb\\n\"}\n\n"
        );
    }
}
