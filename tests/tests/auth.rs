//! Accounts and sessions, as the documentation's Authentication section describes them:
//! register -> verify the emailed 6-digit code -> log in -> JWT access tokens that expire
//! and refresh tokens that rotate.

use scriptmesh_tests::{now_ms, Session, StatusCode, TestApp, TEST_PASSWORD};
use serde_json::json;

#[actix_rt::test]
async fn register_verify_login_and_me() {
    let app = TestApp::start().await;

    let (status, registered) = app
        .post_json(
            "/auth/register",
            &json!({"email": "Ops@Example.COM", "password": TEST_PASSWORD, "tenant_name": "Ops Team"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(registered["status"], "verification_required");
    assert_eq!(registered["email"], "ops@example.com", "emails are lower-cased");
    let user_id = registered["user_id"].as_str().expect("user_id");
    let tenant_id = registered["tenant_id"].as_str().expect("tenant_id");
    assert!(user_id.starts_with("usr_"), "{user_id}");
    assert!(tenant_id.starts_with("ten_"), "{tenant_id}");

    // The same address again, in any case, is taken.
    let (status, body) = app
        .post_json(
            "/auth/register",
            &json!({"email": "ops@example.com", "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("email_taken")),
        "{body}"
    );

    let code = app.smtp.wait_for_code("ops@example.com").await;
    let (status, body) = app
        .post_json(
            "/auth/verify-email",
            &json!({"email": "ops@example.com", "code": code}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "verified"}));

    // Logging in with the address in another case works too.
    let (status, tokens) = app
        .post_json(
            "/auth/login",
            &json!({"email": "OPS@example.com", "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().expect("access_token");
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));

    let (status, me) = app.get("/auth/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["id"], user_id);
    assert_eq!(me["user"]["email"], "ops@example.com");
    assert_eq!(me["user"]["email_verified"], true);
    assert!(me["user"]["role"].is_string(), "{me}");
    assert!(me["user"]["created_at"].is_string(), "{me}");
    assert_eq!(me["tenant"]["id"], tenant_id);
    assert_eq!(me["tenant"]["name"], "Ops Team");
    assert!(me["tenant"]["created_at"].is_string(), "{me}");
}

#[actix_rt::test]
async fn login_failures_are_401_and_unverified_accounts_get_403() {
    let app = TestApp::start().await;
    app.register("pending@example.com").await;

    let response = app
        .request(scriptmesh_tests::Method::POST, "/auth/login")
        .json(&json!({"email": "pending@example.com", "password": TEST_PASSWORD}))
        .send()
        .await;
    response.assert_error(StatusCode::FORBIDDEN, "email_not_verified");

    for (email, password) in [
        ("pending@example.com", "wrong password!"),
        ("nobody@example.com", TEST_PASSWORD),
    ] {
        let response = app
            .request(scriptmesh_tests::Method::POST, "/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await;
        response.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
}

#[actix_rt::test]
async fn five_wrong_codes_burn_the_code_and_a_resent_one_works() {
    let app = TestApp::start().await;
    let email = "guess@example.com";
    app.register(email).await;
    let code = app.smtp.wait_for_code(email).await;
    let wrong = format!("{:06}", (code.parse::<u32>().expect("numeric code") + 1) % 1_000_000);

    for attempt in 1..=5 {
        let (status, body) = app
            .post_json("/auth/verify-email", &json!({"email": email, "code": wrong}), None)
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_code")),
            "wrong code, attempt {attempt}: {body}"
        );
    }
    // Burnt: now even the right code is refused.
    let (status, body) = app
        .post_json("/auth/verify-email", &json!({"email": email, "code": code}), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_code")),
        "the right code after five wrong ones: {body}"
    );

    // An unknown address gets the same answer as a wrong code.
    let (status, body) = app
        .post_json(
            "/auth/verify-email",
            &json!({"email": "stranger@example.com", "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_code")),
        "{body}"
    );

    let (status, body) = app.post_json("/auth/resend-code", &json!({"email": email}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "sent");
    let new_code = app.smtp.wait_for_code_in_message(email, 2).await;
    let (status, body) = app
        .post_json("/auth/verify-email", &json!({"email": email, "code": new_code}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "the resent code {new_code}: {body}");
    app.login(email, TEST_PASSWORD).await;
}

#[actix_rt::test]
async fn access_tokens_are_checked() {
    let app = TestApp::start().await;
    let session = app.register_and_login("tokens@example.com").await;
    let now = now_ms() / 1000;

    let expired = app.sign_jwt(&json!({
        "sub": session.user_id,
        "tid": session.tenant_id,
        "role": "owner",
        "typ": "access",
        "iat": now - 7200,
        "exp": now - 3600,
    }));
    let me = |token: Option<String>| {
        let request = app
            .request(scriptmesh_tests::Method::GET, "/auth/me")
            .bearer(token.as_deref());
        request.send()
    };
    me(Some(expired))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token_expired");

    // Signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": session.user_id, "tid": session.tenant_id, "role": "owner", "typ": "access",
                "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the orchestrator's secret at all"),
    )
    .expect("sign");
    me(Some(forged))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // A refresh token is not an access token.
    me(Some(session.refresh_token.clone()))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    me(Some("garbage.not.ajwt".into()))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    me(None).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.request(scriptmesh_tests::Method::GET, "/auth/me")
        .header("authorization", &format!("Basic {}", session.access_token))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // A token minted with the right secret and claims is accepted: the contract is the JWT.
    let minted = app.sign_jwt(&json!({
        "sub": session.user_id,
        "tid": session.tenant_id,
        "role": "owner",
        "typ": "access",
        "iat": now,
        "exp": now + 600,
    }));
    let (status, body) = app.get("/auth/me", Some(&minted)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], session.user_id);
}

#[actix_rt::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::start().await;
    let session = app.register_and_login("refresh@example.com").await;
    let first = session.refresh_token.clone();

    let (status, pair) = app
        .post_json("/auth/refresh", &json!({"refresh_token": first}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let second = pair["refresh_token"].as_str().expect("refresh_token").to_owned();
    assert_ne!(second, first, "the refresh token rotates");
    let (status, me) = app.get("/auth/me", pair["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "the new access token works: {me}");

    let (status, pair) = app
        .post_json("/auth/refresh", &json!({"refresh_token": second}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let third = pair["refresh_token"].as_str().expect("refresh_token").to_owned();

    // The first token comes back: a replay. It is refused and the whole family revoked.
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": first}), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("refresh_token_reused")),
        "{body}"
    );
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": third}), None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the newest token of a revoked family: {body}"
    );

    // Another login starts a new, unaffected family.
    let other = app.login("refresh@example.com", TEST_PASSWORD).await;
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": other.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": "not-a-token"}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[actix_rt::test]
async fn logout_ends_the_refresh_token() {
    let app = TestApp::start().await;
    let session = app.register_and_login("logout@example.com").await;

    let (status, body) = app
        .post_json("/auth/logout", &json!({"refresh_token": session.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ok"}));

    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": session.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

#[actix_rt::test]
async fn login_is_rate_limited_per_email() {
    let app = TestApp::start().await;
    app.register_and_login("limited@example.com").await; // one login used

    for attempt in 2..=10 {
        let (status, body) = app
            .post_json(
                "/auth/login",
                &json!({"email": "limited@example.com", "password": "wrong password!"}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}: {body}");
    }
    let response = app
        .request(scriptmesh_tests::Method::POST, "/auth/login")
        .json(&json!({"email": "Limited@Example.com", "password": TEST_PASSWORD}))
        .send()
        .await;
    response.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("429 without a whole-seconds Retry-After: {:?}", response.headers));
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    // The limit is per email: someone else can still log in.
    app.register_and_login("unlimited@example.com").await;
}

#[actix_rt::test]
async fn one_address_cannot_sweep_many_emails() {
    // One attempt per email per minute: only the per-address limit can stop the sweep.
    let app = TestApp::builder().env("AUTH_RATE_LIMIT_PER_MINUTE", "1").start().await;
    let mut limited_at = None;
    for attempt in 1..=100 {
        let response = app
            .request(scriptmesh_tests::Method::POST, "/auth/login")
            .json(&json!({"email": format!("sweep{attempt}@example.com"), "password": TEST_PASSWORD}))
            .send()
            .await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            response.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            assert!(response.header("retry-after").is_some(), "{:?}", response.headers);
            limited_at = Some(attempt);
            break;
        }
        response.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let limited_at = limited_at.expect("100 logins for 100 emails from one address within a minute were all allowed");
    assert!(
        limited_at > 2,
        "distinct emails were limited as if they were one (at attempt {limited_at})"
    );
}

#[actix_rt::test]
async fn a_refresh_token_raced_against_itself_is_honoured_at_most_once() {
    let app = TestApp::start().await;
    let session = app.register_and_login("race@example.com").await;
    let body = json!({"refresh_token": session.refresh_token});
    let refresh = || app.post_json("/auth/refresh", &body, None);

    let ((a, a_body), (b, b_body), (c, c_body)) = tokio::join!(refresh(), refresh(), refresh());
    let successes = [a, b, c].iter().filter(|status| **status == StatusCode::OK).count();
    assert!(
        successes <= 1,
        "one refresh token gave {successes} new pairs: {a_body} {b_body} {c_body}"
    );
    for (status, body) in [(a, &a_body), (b, &b_body), (c, &c_body)] {
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{status}: {body}"
        );
    }
}

/// Issue #21, account basics: a forgotten password is reset through the emailed code (the
/// answer never tells whether an address has an account), a logged-in user changes theirs,
/// and either ends every session of the user.
#[actix_rt::test]
async fn forgot_reset_and_change_password_end_every_session() {
    let app = TestApp::start().await;
    let session = app.register_and_login("forgetful@example.com").await;
    let second = app.login("forgetful@example.com", TEST_PASSWORD).await;

    // The same answer for an unknown address, and no email for it.
    for email in ["forgetful@example.com", "nobody@example.com"] {
        let (status, body) = app
            .post_json("/auth/forgot-password", &json!({"email": email}), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{email}: {body}");
        assert_eq!(body["status"], "sent");
    }
    // The verification email was the first; the reset code is the second.
    let code = app.smtp.wait_for_code_in_message("forgetful@example.com", 2).await;
    assert!(app.smtp.messages_to("nobody@example.com").is_empty());
    let (status, body) = reset(&app, &code, "short").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a weak password: {body}");
    let wrong = if code == "999999" { "999998" } else { "999999" };
    let (status, body) = reset(&app, wrong, "a brand new passphrase").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    let (status, body) = reset(&app, &code, "a brand new passphrase").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "reset");
    let (status, _) = reset(&app, &code, "yet another passphrase").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reset code works once");

    // Every session is over; the old password is gone, the new one works.
    for refresh in [&session.refresh_token, &second.refresh_token] {
        let (status, body) = app
            .post_json("/auth/refresh", &json!({"refresh_token": refresh}), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _) = app
        .post_json(
            "/auth/login",
            &json!({"email": "forgetful@example.com", "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let fresh = app.login("forgetful@example.com", "a brand new passphrase").await;

    // Changing it needs the current password, and answers a new pair for this session.
    let (status, body) = change(&app, &fresh, "not it", "the third passphrase").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, pair) = change(&app, &fresh, "a brand new passphrase", "the third passphrase").await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": fresh.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old session ended: {body}");
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": pair["refresh_token"]}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "the new pair works: {body}");
    // An API key cannot change anyone's password.
    let key = app.create_api_key(&fresh, "k").await;
    let (status, body) = app
        .post_json(
            "/auth/change-password",
            &json!({"current_password": "the third passphrase", "new_password": "x".repeat(12)}),
            Some(&key),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

async fn reset(app: &TestApp, code: &str, password: &str) -> (StatusCode, serde_json::Value) {
    let body = json!({"email": "forgetful@example.com", "code": code, "password": password});
    app.post_json("/auth/reset-password", &body, None).await
}

async fn change(app: &TestApp, session: &Session, current: &str, new: &str) -> (StatusCode, serde_json::Value) {
    let body = json!({"current_password": current, "new_password": new});
    app.post_json("/auth/change-password", &body, session.token()).await
}
