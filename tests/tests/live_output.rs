//! Live output end to end: a real agent streams a running script's output, the orchestrator
//! keeps it with the job, and followers see it as it is written — through the API's event
//! stream (resumable by offset), the CLI's `job --follow`, and on another replica. Secret
//! params are masked before output leaves the agent and never shown in views. An agent
//! killed mid-stream ends its followers' streams with the job `lost`; bad input to both
//! endpoints gets JSON errors.

use scriptmesh_tests::cluster::Cluster;
use scriptmesh_tests::events::{output_text, Event, EventStream};
use scriptmesh_tests::fleet::Fleet;
use scriptmesh_tests::{binary_path, now_ms, StatusCode};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Prints `tick N <ms since the epoch>` once a second, five times, and a line on stderr.
const TICKS: &str =
    "#!/bin/sh\nfor i in 1 2 3 4 5; do\n  echo \"tick $i $(date +%s%3N)\"\n  sleep 1\ndone\necho finished >&2\n";
/// How late a line may be seen after the script printed it.
const LIVE_WITHIN_MS: i64 = 500;
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// `(n, printed at ms)` of every `tick` line in `text`.
fn ticks(text: &str) -> Vec<(u32, i64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("tick ")?.split(' ');
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

/// Asserts that every tick was seen (the first arrival of a text containing it, by `seen`)
/// within [`LIVE_WITHIN_MS`] of being printed.
#[track_caller]
fn assert_live(label: &str, arrivals: &[(i64, String)]) {
    let mut seen_text = String::new();
    let mut lateness = Vec::new();
    for (at_ms, text) in arrivals {
        seen_text.push_str(text);
        for (n, printed) in ticks(&seen_text) {
            if lateness.iter().all(|(seen, _)| *seen != n) {
                lateness.push((n, at_ms - printed));
            }
        }
    }
    assert_eq!(
        lateness.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "{label}: every tick, in order; saw {seen_text:?}"
    );
    for (n, late) in &lateness {
        assert!(
            *late <= LIVE_WITHIN_MS,
            "{label}: tick {n} was seen {late} ms after it was printed (at most {LIVE_WITHIN_MS}); all: {lateness:?}"
        );
    }
    eprintln!("{label}: ticks seen after {lateness:?} ms");
}

/// `(arrival ms, text)` of each output event.
fn arrivals(events: &[Event]) -> Vec<(i64, String)> {
    events
        .iter()
        .filter(|e| e.name == "output")
        .map(|e| (e.at_ms(), e.data["data"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn follow_url(fleet: &Fleet, job_id: &str) -> String {
    format!("{}/jobs/{job_id}/output?follow=true", fleet.app.url)
}

async fn follow(fleet: &Fleet, job_id: &str) -> EventStream {
    EventStream::open(&follow_url(fleet, job_id), fleet.token().unwrap(), None).await
}

/// The offsets of the output events are contiguous from 0, and each id is its end.
#[track_caller]
fn assert_contiguous(events: &[Event]) {
    let mut expected = 0;
    for event in events.iter().filter(|e| e.name == "output") {
        let offset = event.data["offset"].as_u64().expect("an offset");
        let len = event.data["data"].as_str().expect("data").len() as u64;
        assert_eq!(offset, expected, "offsets are contiguous: {events:?}");
        expected = offset + len;
        assert_eq!(
            event.id.as_deref(),
            Some(expected.to_string().as_str()),
            "the id is the end offset"
        );
    }
}

#[actix_rt::test]
async fn a_line_a_second_is_seen_live_through_the_api_and_the_cli() {
    let fleet = Fleet::start().await;
    let _agent = fleet.start_agent(fleet.spec("web-1").script("ticks.sh", TICKS)).await;
    let job_id = fleet.trigger_async("web-1", "ticks.sh", json!({})).await;

    // The CLI follows it in its own process; its stdout lines are timed as they come.
    let mut cli = Command::new(binary_path("sm-test-cli"))
        .args(["job", &job_id, "--follow"])
        .env("SCRIPTMESH_URL", &fleet.app.url)
        .env("SCRIPTMESH_API_KEY", &fleet.key)
        .env("SCRIPTMESH_CONFIG_DIR", fleet.app.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    let stdout = cli.stdout.take().expect("the CLI's stdout");
    let cli_lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|line| (now_ms(), format!("{line}\n")))
            .collect::<Vec<_>>()
    });

    let mut stream = follow(&fleet, &job_id).await;
    let events = stream.until_end(STREAM_WAIT).await;
    let arrivals = arrivals(&events);
    assert_live("API", &arrivals);
    assert_contiguous(&events);
    let text = output_text(&events);
    assert!(
        text.ends_with("finished\n"),
        "stderr interleaved after stdout: {text:?}"
    );
    let stderr_piece = events
        .iter()
        .find(|e| e.data["data"] == "finished\n")
        .expect("the stderr line");
    assert_eq!(stderr_piece.data["stream"], "stderr");
    let end = events.last().unwrap();
    assert_eq!(end.data["status"], "success", "{end:?}");
    assert_eq!(end.data["exit_code"], 0);
    assert_eq!(end.data["next_offset"], text.len() as u64);

    let status = tokio::task::spawn_blocking(move || cli.wait_with_output().expect("the CLI ends"))
        .await
        .unwrap();
    let lines = cli_lines.join().expect("the CLI's reader");
    assert!(
        status.status.success(),
        "the CLI exits 0 for a successful job: {status:?}"
    );
    assert_live("CLI", &lines);
    let summary = String::from_utf8_lossy(&status.stderr);
    assert!(summary.contains("finished"), "stderr goes to stderr: {summary}");
    assert!(
        summary.contains(&format!("job {job_id} success (exit code 0)")),
        "{summary}"
    );

    // The stored result agrees with what was streamed.
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(ticks(job["stdout"].as_str().unwrap()).len(), 5);
    assert_eq!(job["stderr"], "finished\n");

    // Resuming: from an offset inside the output, the rest of it and the end.
    let cut = arrivals[0].1.len() + 3;
    let mut resumed = EventStream::open(
        &follow_url(&fleet, &job_id),
        fleet.token().unwrap(),
        Some(&cut.to_string()),
    )
    .await;
    let rest = resumed.until_end(STREAM_WAIT).await;
    assert_eq!(output_text(&rest), text[cut..]);
    // And as a page, with ?offset=.
    let (status, page) = fleet
        .app
        .get(&format!("/jobs/{job_id}/output?offset={cut}"), fleet.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let paged: String = page["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].as_str().unwrap())
        .collect();
    assert_eq!(paged, text[cut..]);
    assert_eq!(page["complete"], true);
    assert_eq!(page["next_offset"], text.len() as u64);
}

#[actix_rt::test]
async fn a_quick_job_is_followed_from_its_result() {
    let fleet = Fleet::start().await;
    let _agent = fleet
        .start_agent(
            fleet
                .spec("web-1")
                .script("quick.sh", "#!/bin/sh\necho out\necho err >&2\nexit 3\n"),
        )
        .await;
    let job_id = fleet.trigger_async("web-1", "quick.sh", json!({})).await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "failed");
    // Finished before it streamed anything: nothing live was stored...
    let stored = fleet
        .app
        .query_i64(&format!(
            "SELECT COUNT(*) AS value FROM job_output WHERE job_id = '{job_id}'"
        ))
        .await;
    assert_eq!(stored, vec![Some(0)], "a quick job sends no live output");
    // ...and a follower gets the result's stdout, then stderr, then the end.
    let events = follow(&fleet, &job_id).await.until_end(STREAM_WAIT).await;
    assert_eq!(output_text(&events), "out\nerr\n");
    assert_contiguous(&events);
    assert_eq!(events[1].data["stream"], "stderr");
    assert_eq!(events.last().unwrap().data["exit_code"], 3);
}

#[actix_rt::test]
async fn secret_params_are_masked_in_output_and_never_shown() {
    let fleet = Fleet::start().await;
    let secret = "hunter2-Xq9";
    // Printed whole, and in two writes with a pause between (the halves reach the agent
    // in separate reads, while the job streams).
    let script = "#!/bin/sh\necho \"token=$TOKEN host=$HOST\"\nsleep 1\nprintf 'split=%s' \"$(echo \"$TOKEN\" | cut -c1-4)\"\nsleep 1\nprintf '%s\\n' \"$(echo \"$TOKEN\" | cut -c5-)\"\necho \"$TOKEN\" >&2\n";
    let _agent = fleet
        .start_agent(fleet.spec("web-1").tag("db").script("leak.sh", script))
        .await;
    let body = json!({
        "agent": "web-1", "run_script": "leak.sh", "async_exec": true,
        "params": {"TOKEN": secret, "HOST": "db1"}, "secret_params": ["TOKEN"],
    });
    let job_id = fleet.queue(&body).await;
    let events = follow(&fleet, &job_id).await.until_end(STREAM_WAIT).await;
    let streamed = output_text(&events);
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job["status"], "success", "{job}");
    assert!(streamed.contains("token=******** host=db1"), "{streamed:?}");
    assert!(
        streamed.contains("split=********"),
        "a secret split across writes is masked: {streamed:?}"
    );
    assert_eq!(job["params"], json!({"TOKEN": "********", "HOST": "db1"}));
    assert!(
        job["stdout"].as_str().unwrap().contains("token=******** host=db1"),
        "{job}"
    );
    assert_eq!(job["stderr"], "********\n");

    // A fan-out's secrets too; and nowhere the API shows jobs is the value.
    let (status, created) = fleet
        .app
        .post_json(
            "/fan-out",
            &json!({"run_script": "leak.sh", "tags": ["db"], "params": {"TOKEN": secret, "HOST": "db2"}, "secret_params": ["TOKEN"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let fanout_job = created["jobs"][0]["job_id"].as_str().unwrap();
    fleet.finished_job(fanout_job).await;
    let fanout_id = created["fanout_id"].as_str().unwrap();
    for path in [
        format!("/jobs/{job_id}"),
        format!("/jobs/{fanout_job}"),
        "/jobs".to_owned(),
        format!("/fan-out/{fanout_id}"),
        format!("/jobs/{job_id}/output"),
        format!("/jobs/{fanout_job}/output"),
    ] {
        let (status, shown) = fleet.app.get(&path, fleet.token()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {shown}");
        assert!(!shown.to_string().contains(secret), "{path} shows the secret: {shown}");
        assert!(
            !shown.to_string().contains("hunter"),
            "{path} shows part of the secret: {shown}"
        );
    }
    let stored = fleet
        .app
        .query_text(&format!(
            "SELECT data AS value FROM job_output WHERE job_id = '{job_id}'"
        ))
        .await;
    assert!(!stored.is_empty(), "the job streamed");
    assert!(
        stored.iter().flatten().all(|data| !data.contains("hunter")),
        "{stored:?}"
    );

    // Only params can be secret.
    let (status, error) = fleet
        .app
        .post_json(
            "/trigger-script",
            &json!({"agent": "web-1", "run_script": "leak.sh", "params": {}, "secret_params": ["TOKEN"]}),
            fleet.token(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "validation_failed");
}

#[actix_rt::test]
async fn an_agent_killed_mid_stream_ends_the_stream_with_the_job_lost() {
    let fleet = Fleet::start().await;
    let mut agent = fleet
        .start_agent(fleet.spec("web-1").script(
            "ticks.sh",
            "#!/bin/sh\nwhile true; do echo \"alive $(date +%s%3N)\"; sleep 0.3; done\n",
        ))
        .await;
    let job_id = fleet.trigger_async("web-1", "ticks.sh", json!({})).await;
    let mut stream = follow(&fleet, &job_id).await;
    let mut seen = String::new();
    while seen.matches("alive").count() < 3 {
        let event = stream.next(STREAM_WAIT).await.expect("live output");
        seen.push_str(event.data["data"].as_str().unwrap_or_default());
    }
    agent.kill();
    // The agent comes back without the job: it is lost, and the stream says so.
    agent.restart().await;
    let rest = stream.until_end(Duration::from_secs(60)).await;
    let end = rest.last().unwrap();
    assert_eq!(end.data["status"], "lost", "{end:?}");
    // What was streamed before the kill is kept with the job.
    let (status, page) = fleet.app.get(&format!("/jobs/{job_id}/output"), fleet.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["status"], "lost");
    let kept: String = page["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].as_str().unwrap())
        .collect();
    assert!(kept.starts_with(&seen), "kept {kept:?}, seen {seen:?}");
}

/// A hand-driven agent: registered with the fleet's key, holding the job it polled.
async fn manual_agent_with_running_job(fleet: &Fleet, name: &str) -> String {
    let register = json!({"agent_name": name, "scripts": [{"name": "x.sh", "path": "x.sh"}]});
    let (status, body) = fleet
        .app
        .post_json("/register-agent", &register, Some(&fleet.key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job_id = fleet.trigger_async(name, "x.sh", json!({})).await;
    let (status, poll) = fleet
        .app
        .get(
            &format!("/agent/poll?agent={name}&capacity=1&wait=5&start=implicit"),
            Some(&fleet.key),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(poll["jobs"][0]["job_id"], job_id.as_str());
    job_id
}

async fn send_output(fleet: &Fleet, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    fleet.app.post_json("/agent/output", body, key).await
}

#[actix_rt::test]
async fn live_output_keeps_head_and_tail_and_refuses_bad_input() {
    let fleet = Fleet::start().await;
    let job_id = manual_agent_with_running_job(&fleet, "manual").await;
    let key = Some(fleet.key.as_str());

    // 3 MiB in 64 KiB chunks: the first 512 KiB and the newest 512 KiB are kept.
    let piece = "0123456789abcdef".repeat(4096);
    let mut offset = 0u64;
    for _ in 0..48 {
        let chunks: Vec<Value> = (0..1)
            .map(|_| {
                let chunk = json!({"job_id": job_id, "stream": "stdout", "offset": offset, "data": piece});
                offset += piece.len() as u64;
                chunk
            })
            .collect();
        let (status, ack) = send_output(&fleet, key, &json!({"agent_name": "manual", "chunks": chunks})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack, json!({"accepted": 1, "stop": []}));
    }
    // A retried chunk is stored once.
    let retry =
        json!({"agent_name": "manual", "chunks": [{"job_id": job_id, "stream": "stdout", "offset": 0, "data": piece}]});
    assert_eq!(send_output(&fleet, key, &retry).await.0, StatusCode::OK);
    let kept = fleet
        .app
        .query_i64(&format!(
            "SELECT CAST(SUM(end_offset - start_offset) AS BIGINT) AS value FROM job_output WHERE job_id = '{job_id}'"
        ))
        .await;
    assert_eq!(kept, vec![Some(1024 * 1024)], "head and tail, 512 KiB each");
    let mut page_offset = 0;
    let mut events = Vec::new();
    loop {
        let (status, page) = fleet
            .app
            .get(&format!("/jobs/{job_id}/output?offset={page_offset}"), fleet.token())
            .await;
        assert_eq!(status, StatusCode::OK);
        let pieces = page["pieces"].as_array().unwrap().clone();
        if pieces.is_empty() {
            break;
        }
        page_offset = page["next_offset"].as_u64().unwrap();
        events.extend(pieces);
    }
    assert_eq!(events.first().unwrap()["offset"], 0);
    assert_eq!(events.last().unwrap()["offset"], offset - piece.len() as u64);
    // A follower sees the cut as a gap.
    let mut stream = follow(&fleet, &job_id).await;
    let mut names = Vec::new();
    while let Some(event) = stream.next(Duration::from_secs(2)).await {
        names.push(event.name.clone());
        if event.name == "gap" {
            assert_eq!(event.data["from"], 512 * 1024);
            assert_eq!(event.data["to"], offset - 512 * 1024);
        }
    }
    assert!(names.contains(&"gap".to_owned()), "{names:?}");

    // Bad input: JSON errors, never a 500.
    let one = |data: &str, offset: u64| json!({"agent_name": "manual", "chunks": [{"job_id": job_id, "stream": "stdout", "offset": offset, "data": data}]});
    let (status, error) = send_output(&fleet, fleet.token(), &one("x", 0)).await;
    assert_eq!(
        (status, error["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("api_key_required"))
    );
    let (status, _) = send_output(&fleet, key, &one("", offset)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = send_output(&fleet, key, &one("x", u64::MAX - 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = send_output(
        &fleet,
        key,
        &json!({"agent_name": "manual", "chunks": [{"job_id": job_id, "stream": "stdin", "offset": 0, "data": "x"}]}),
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"job_id": job_id, "stream": "stdout", "offset": i, "data": "x"}))
        .collect();
    let (status, _) = send_output(&fleet, key, &json!({"agent_name": "manual", "chunks": too_many})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let raw = fleet
        .app
        .request(scriptmesh_tests::Method::POST, "/agent/output")
        .bearer(key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await;
    assert!(
        raw.status.is_client_error() && raw.error_code().is_some(),
        "{}",
        raw.text
    );
    let (status, _) = send_output(&fleet, key, &json!({"agent_name": "nobody", "chunks": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another agent's job, and an unknown one, are not written to: the agent is told to stop.
    let other = manual_agent_with_running_job(&fleet, "other").await;
    let foreign = json!({"agent_name": "manual", "chunks": [
        {"job_id": other, "stream": "stdout", "offset": 0, "data": "intruder"},
        {"job_id": "job_00000000000000000000000000000000", "stream": "stdout", "offset": 0, "data": "ghost"},
    ]});
    let (status, ack) = send_output(&fleet, key, &foreign).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["accepted"], 0);
    assert_eq!(ack["stop"].as_array().unwrap().len(), 2, "{ack}");
    let (_, page) = fleet.app.get(&format!("/jobs/{other}/output"), fleet.token()).await;
    assert_eq!(page["pieces"], json!([]));

    // Readers: unknown jobs, other tenants' jobs and bad queries.
    let (status, _) = fleet.app.get("/jobs/job_nope/output?follow=true", fleet.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stranger = fleet.app.register_and_login("stranger@example.com").await;
    for path in [
        format!("/jobs/{job_id}/output"),
        format!("/jobs/{job_id}/output?follow=true"),
    ] {
        let (status, body) = fleet.app.get(&path, Some(&stranger.access_token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: another tenant's job: {body}");
    }
    let (status, body) = fleet
        .app
        .get(&format!("/jobs/{job_id}/output?offset=-1"), fleet.token())
        .await;
    assert!(
        status.is_client_error() && body["error"]["code"].is_string(),
        "{status} {body}"
    );
    let (status, _) = fleet.app.get(&format!("/jobs/{job_id}/output"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn a_follower_on_another_replica_sees_output_live() {
    let Some(cluster) = Cluster::start(2).await else {
        eprintln!("NOTICE: replicas need PostgreSQL (SCRIPTMESH_TEST_POSTGRES_URL); skipped");
        return;
    };
    // The agent reports to replica 0; the follower reads from replica 1.
    let _agent = cluster
        .start_agent(&[0], cluster.replica(0).spec("web-1").script("ticks.sh", TICKS))
        .await;
    let reader = cluster.replica(1);
    reader.wait_for_agent_status("web-1", "online").await;
    let job_id = reader.trigger_async("web-1", "ticks.sh", json!({})).await;
    let events = follow(reader, &job_id).await.until_end(STREAM_WAIT).await;
    let arrivals = arrivals(&events);
    assert_live("another replica", &arrivals);
    assert_eq!(events.last().unwrap().data["status"], "success");
}
