//! Verification email through each transport: Resend's HTTP API (checked at a local
//! receiver that plays Resend) and development mode, where the code goes to the log.

use scriptmesh_tests::{wait_for, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One HTTP request as a receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 server standing in for api.resend.com: records each request and
/// answers 200 with an email id, as Resend does.
async fn resend_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break pos + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let body = buffer[head_end..].to_vec();
                record.lock().unwrap().push(Received {
                    request_line,
                    headers,
                    body,
                });
                let answer = r#"{"id":"49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

fn six_digit_code(text: &str) -> Option<String> {
    text.as_bytes()
        .windows(6)
        .enumerate()
        .find(|(i, w)| {
            w.iter().all(u8::is_ascii_digit)
                && (*i == 0 || !text.as_bytes()[i - 1].is_ascii_digit())
                && text.as_bytes().get(i + 6).is_none_or(|b| !b.is_ascii_digit())
        })
        .map(|(_, w)| String::from_utf8_lossy(w).to_string())
}

#[actix_rt::test]
async fn verification_code_is_sent_through_resend() {
    let (resend_url, seen) = resend_receiver().await;
    let app = TestApp::builder()
        .without_env("SMTP_URL")
        .env("RESEND_API_KEY", "re_test_0123456789")
        .env("RESEND_BASE_URL", &resend_url)
        .env("EMAIL_FROM", "ScriptMesh <no-reply@example.com>")
        .start()
        .await;
    let email = "resend-user@example.com";
    let (status, _) = app
        .post_json(
            "/auth/register",
            &json!({"email": email, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 201);

    let request = wait_for(Duration::from_secs(10), || async {
        seen.lock().unwrap().first().cloned()
    })
    .await
    .expect("Resend received the email");
    // https://resend.com/docs/api-reference/emails/send-email
    assert_eq!(request.request_line, "POST /emails HTTP/1.1");
    assert_eq!(request.header("authorization"), Some("Bearer re_test_0123456789"));
    assert!(request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(body["from"], "ScriptMesh <no-reply@example.com>");
    assert_eq!(body["to"], json!([email]));
    assert!(body["subject"]
        .as_str()
        .is_some_and(|s| s.contains("verification code")));
    let code = six_digit_code(body["text"].as_str().expect("text body")).expect("a 6-digit code");

    let (status, body) = app
        .post_json("/auth/verify-email", &json!({"email": email, "code": code}), None)
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    app.login(email, TEST_PASSWORD).await;
}

#[actix_rt::test]
async fn without_a_mail_transport_the_code_is_logged() {
    let app = TestApp::builder()
        .without_env("SMTP_URL")
        .without_env("RESEND_API_KEY")
        .start()
        .await;
    let email = "dev-mode@example.com";
    let (status, _) = app
        .post_json(
            "/auth/register",
            &json!({"email": email, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 201);
    let code = wait_for(Duration::from_secs(10), || async {
        app.log()
            .lines()
            .find(|line| line.contains(email) && line.contains("code"))
            .and_then(|line| line.split("\"code\":\"").nth(1).and_then(six_digit_code))
    })
    .await
    .expect("the code is in the log");
    let (status, body) = app
        .post_json("/auth/verify-email", &json!({"email": email, "code": code}), None)
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert!(app.smtp.messages_to(email).is_empty(), "nothing went out by SMTP");
}
