//! API keys: `sm_live_` keys shown once, usable wherever a JWT is, revocable and expiring,
//! and scoped to their tenant.

use scriptmesh_tests::{now_ms, wait_until, Method, StatusCode, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

fn assert_key_shape(key: &str) {
    let secret = key
        .strip_prefix("sm_live_")
        .unwrap_or_else(|| panic!("{key} lacks sm_live_"));
    assert!(
        secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "expected at least 32 base62 characters after sm_live_, got {key}"
    );
}

#[actix_rt::test]
async fn create_list_use_and_revoke() {
    let app = TestApp::start().await;
    let session = app.register_and_login("keys@example.com").await;

    let (status, created) = app
        .post_json(
            "/auth/api-keys",
            &json!({"name": "CI Pipeline", "expires_days": 90}),
            session.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    let key = created["key"].as_str().expect("key");
    assert!(id.starts_with("key_"), "{id}");
    assert_key_shape(key);
    let prefix = created["key_prefix"].as_str().expect("key_prefix");
    assert!(
        prefix.starts_with("sm_live_") && key.starts_with(prefix),
        "prefix {prefix} of {key}"
    );
    assert!(prefix.len() < key.len(), "the prefix must not be the whole key");
    assert_eq!(created["name"], "CI Pipeline");
    assert!(created["created_at"].is_string(), "{created}");
    assert!(created["expires_at"].is_string(), "expires_days was given: {created}");
    assert_eq!(
        created["warning"],
        "Store this key securely. It will not be shown again."
    );

    let no_expiry = app.create_api_key_details(&session, &json!({"name": "forever"})).await;
    assert_key_shape(&no_expiry.key);
    assert!(no_expiry.body["expires_at"].is_null(), "{}", no_expiry.body);
    assert_ne!(no_expiry.key, key);

    // Listing shows both, and never a key or a hash.
    let (status, list) = app.get("/auth/api-keys", session.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let entries = list.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 2, "{list}");
    let listed = entries
        .iter()
        .find(|entry| entry["id"] == id)
        .expect("the key is listed");
    for field in ["id", "name", "key_prefix", "created_at", "expires_at", "last_used_at"] {
        assert!(listed.get(field).is_some(), "{field} missing from {listed}");
    }
    assert_eq!(listed["key_prefix"], prefix);
    let listing = list.to_string();
    assert!(
        !listing.contains(key),
        "the secret key appears in the listing: {listing}"
    );
    assert!(
        !listing.contains(&no_expiry.key),
        "the secret key appears in the listing: {listing}"
    );
    for forbidden in ["\"key\"", "key_hash", "hash"] {
        assert!(
            !listing.contains(forbidden),
            "{forbidden} appears in the listing: {listing}"
        );
    }

    // The key works wherever a JWT does.
    let (status, me) = app.get("/auth/me", Some(key)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["tenant"]["id"], session.tenant_id);
    // last_used_at is written off the request path, with other keys' uses every 5 s.
    let used = scriptmesh_tests::wait_for(std::time::Duration::from_secs(15), || async {
        let (_, list) = app.get("/auth/api-keys", session.token()).await;
        list.as_array()
            .and_then(|l| l.iter().find(|e| e["id"] == id).cloned())
            .filter(|entry| entry["last_used_at"].is_string())
    })
    .await;
    assert!(used.is_some(), "last_used_at set after use");

    // Revoked: it stops working at once; the other key is unaffected.
    let (status, body) = app.delete(&format!("/auth/api-keys/{id}"), session.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "revoked", "id": id}));
    app.request(Method::GET, "/auth/me")
        .bearer(Some(key))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = app.get("/auth/me", Some(&no_expiry.key)).await;
    assert_eq!(status, StatusCode::OK);

    // A key that was never issued, shaped like a real one.
    let made_up = format!("sm_live_{}", "A".repeat(40));
    app.request(Method::GET, "/auth/me")
        .bearer(Some(&made_up))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[actix_rt::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::start().await;
    let session = app.register_and_login("expiry@example.com").await;
    let expire_in_the_database = |id: String| {
        let app = &app;
        async move {
            let sql = format!(
                "UPDATE api_keys SET expires_at = {} WHERE id = '{id}'",
                now_ms() - 60_000
            );
            assert_eq!(app.exec_sql(&sql).await, 1);
        }
    };

    // Expired before it was ever used: refused at once.
    let unused = app
        .create_api_key_details(&session, &json!({"name": "never used", "expires_days": 1}))
        .await;
    expire_in_the_database(unused.id).await;
    let response = app
        .request(Method::GET, "/auth/me")
        .bearer(Some(&unused.key))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{}", response.text);
    response.assert_client_error();

    // Expired while in use: the orchestrator caches keys, but the database decides within
    // seconds (it counts such changes, and the cache is forgotten when the count moves).
    let used = app
        .create_api_key_details(&session, &json!({"name": "in use", "expires_days": 1}))
        .await;
    let (status, _) = app.get("/auth/me", Some(&used.key)).await;
    assert_eq!(status, StatusCode::OK);
    expire_in_the_database(used.id).await;
    let refused = wait_until(Duration::from_secs(10), || async {
        app.get("/auth/me", Some(&used.key)).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "a key expired in the database still works after 10 s");

    // Deleted in the database while in use: the same.
    let deleted = app
        .create_api_key_details(&session, &json!({"name": "deleted", "expires_days": 1}))
        .await;
    let (status, _) = app.get("/auth/me", Some(&deleted.key)).await;
    assert_eq!(status, StatusCode::OK);
    let sql = format!("DELETE FROM api_keys WHERE id = '{}'", deleted.id);
    assert_eq!(app.exec_sql(&sql).await, 1);
    let refused = wait_until(Duration::from_secs(10), || async {
        app.get("/auth/me", Some(&deleted.key)).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "a key deleted in the database still works after 10 s");
}

#[actix_rt::test]
async fn tenants_cannot_see_or_revoke_each_others_keys() {
    let app = TestApp::start().await;
    let alice = app.register_and_login("alice@a.example.com").await;
    let bob = app.register_and_login("bob@b.example.com").await;
    assert_ne!(alice.tenant_id, bob.tenant_id, "each registration makes its own tenant");

    let alices = app
        .create_api_key_details(&alice, &json!({"name": "alice's agent"}))
        .await;
    let bobs = app.create_api_key_details(&bob, &json!({"name": "bob's agent"})).await;

    let (status, list) = app.get("/auth/api-keys", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&Value> = list.as_array().expect("array").iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, [&json!(bobs.id)], "bob sees only his own key");

    // Bob can neither revoke Alice's key (with his JWT or his key) nor learn it exists.
    for token in [bob.access_token.as_str(), bobs.key.as_str()] {
        let response = app
            .request(Method::DELETE, &format!("/auth/api-keys/{}", alices.id))
            .bearer(Some(token))
            .send()
            .await;
        response.assert_client_error();
        if token == bob.access_token {
            response.assert_error(StatusCode::NOT_FOUND, "not_found");
        }
    }
    let response = app
        .request(Method::DELETE, "/auth/api-keys/key_doesnotexist")
        .bearer(bob.token())
        .send()
        .await;
    response.assert_error(StatusCode::NOT_FOUND, "not_found");

    // Alice's key still works and still answers as Alice's tenant.
    let (status, me) = app.get("/auth/me", Some(&alices.key)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["tenant"]["id"], alice.tenant_id);
    let (_, list) = app.get("/auth/api-keys", alice.token()).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}
