//! The HTTP contract every endpoint keeps: bad input of any kind gets a JSON 4xx with the
//! `{"error": {"code", "message"}}` shape (never a 5xx), JSON is read whatever the
//! Content-Type says, and /health answers GET and HEAD.

use scriptmesh_tests::{Method, StatusCode, TestApp, TEST_PASSWORD};
use serde_json::json;

#[actix_rt::test]
async fn health_answers_get_and_head() {
    let app = TestApp::start().await;
    let (status, body) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");

    let head = app.request(Method::HEAD, "/health").send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.text.is_empty(), "HEAD has no body: {:?}", head.text);
}

#[actix_rt::test]
async fn malformed_and_mistyped_bodies_get_json_4xx() {
    let app = TestApp::start().await;
    let post = |path: &'static str, body: &'static str| {
        app.request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Not JSON at all: 400 invalid_json.
    for body in ["{\"email\": ", "not json", "{'email': 'x'}", ""] {
        post("/auth/register", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    post("/auth/login", "{\"email\":\"a@b.co\",")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");

    // JSON of the wrong shape: 422 invalid_request.
    for (path, body) in [
        ("/auth/register", r#"{"email": "shape@example.com"}"#),
        ("/auth/register", r#"{"email": 42, "password": "long enough password"}"#),
        ("/auth/register", r#"{"email": "shape@example.com", "password": ["a"]}"#),
        ("/auth/register", r#"[1, 2, 3]"#),
        ("/auth/register", r#""just a string""#),
        ("/auth/login", r#"{"email": "shape@example.com"}"#),
        ("/auth/login", r#"{"email": null, "password": "x"}"#),
        (
            "/auth/verify-email",
            r#"{"email": "shape@example.com", "code": 123456}"#,
        ),
        ("/auth/refresh", r#"{}"#),
        ("/auth/resend-code", r#"{"address": "shape@example.com"}"#),
    ] {
        post(path, body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }

    // Well-formed but bad values: 422 validation_failed.
    for body in [
        json!({"email": "short@example.com", "password": "123456789"}),
        json!({"email": "not-an-email", "password": TEST_PASSWORD}),
        json!({"email": "", "password": TEST_PASSWORD}),
        json!({"email": "long@example.com", "password": TEST_PASSWORD, "tenant_name": "x".repeat(1000)}),
    ] {
        app.request(Method::POST, "/auth/register")
            .json(&body)
            .send()
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }

    let session = app.register_and_login("shapes@example.com").await;
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"name": 7}), "invalid_request"),
        (json!({"name": "ok", "expires_days": "ninety"}), "invalid_request"),
        (json!({"name": ""}), "validation_failed"),
        (json!({"name": "ok", "expires_days": -1}), "validation_failed"),
        (json!({"name": "x".repeat(10_000)}), "validation_failed"),
    ] {
        app.request(Method::POST, "/auth/api-keys")
            .bearer(session.token())
            .json(&body)
            .send()
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, code);
    }
}

#[actix_rt::test]
async fn oversized_input_is_refused_cleanly() {
    let app = TestApp::start().await;
    let megabyte = "a".repeat(1_000_000);

    // A 1 MB string inside the 1 MiB limit: read, then refused as a bad value.
    for body in [
        json!({"email": format!("{megabyte}@example.com"), "password": TEST_PASSWORD}),
        json!({"email": "big@example.com", "password": megabyte}),
    ] {
        app.request(Method::POST, "/auth/register")
            .json(&body)
            .send()
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({"email": megabyte, "password": megabyte}))
        .send()
        .await;
    response.assert_client_error();
    assert_ne!(response.status, StatusCode::OK);

    // A 2 MB body: 413, whether the length is declared up front or streamed in chunks.
    let two_megabytes = format!(
        "{{\"email\":\"huge@example.com\",\"password\":\"{}\"}}",
        "b".repeat(2 << 20)
    );
    let declared = format!(
        "POST /auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{two_megabytes}",
        app.address(),
        two_megabytes.len()
    );
    app.send_raw(declared.as_bytes())
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let mut chunked = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.address()
    );
    for chunk in two_megabytes.as_bytes().chunks(64 * 1024) {
        chunked.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)));
    }
    chunked.push_str("0\r\n\r\n");
    app.send_raw(chunked.as_bytes())
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // The server is fine afterwards.
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_rt::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let app = TestApp::start().await;
    let session = app.register_and_login("routes@example.com").await;

    for (method, path) in [
        (Method::GET, "/no/such/route"),
        (Method::POST, "/auth/nothing-here"),
        (Method::GET, "/auth/api-keys/key_x/extra"),
    ] {
        app.request(method, path)
            .bearer(session.token())
            .send()
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    // Unauthenticated callers get the same JSON 404 for unknown routes.
    app.request(Method::GET, "/definitely/not/here")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    for (method, path) in [
        (Method::GET, "/auth/login"),
        (Method::GET, "/auth/register"),
        (Method::PUT, "/auth/me"),
        (Method::DELETE, "/auth/api-keys"),
        (Method::PATCH, "/auth/refresh"),
        (Method::POST, "/health"),
    ] {
        let response = app
            .request(method.clone(), path)
            .bearer(session.token())
            .json(&json!({}))
            .send()
            .await;
        assert_eq!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            response.text
        );
        response.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

#[actix_rt::test]
async fn json_is_read_whatever_the_content_type_says() {
    let app = TestApp::start().await;
    let body = json!({"email": "curl@example.com", "password": TEST_PASSWORD}).to_string();

    // curl -d sends application/x-www-form-urlencoded.
    let response = app
        .request(Method::POST, "/auth/register")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    app.verify_email("curl@example.com").await;

    // No Content-Type at all (a raw request, so no client adds one).
    let raw = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.address(),
        body.len()
    );
    let response = app.send_raw(raw.as_bytes()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(response.body["access_token"].is_string(), "{}", response.text);

    // text/plain too.
    let response = app
        .request(Method::POST, "/auth/login")
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
}
