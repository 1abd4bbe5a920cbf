//! Issue #21, teammates: invitations by email, accepting them (a new user, or an existing
//! user gaining a membership), roles changed and members removed (their sessions end at
//! once), a tenant that always keeps an owner, a user in several tenants choosing one at
//! login, and a viewer's limits. Another tenant's members are never visible.

use scriptmesh_tests::{Method, StatusCode, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};

async fn members(app: &TestApp, token: Option<&str>) -> Value {
    let (status, body) = app.get("/tenant/members", token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn member_id(list: &Value, email: &str) -> String {
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["email"] == email)
        .unwrap_or_else(|| panic!("{email} not in {list}"))["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[actix_rt::test]
async fn invite_accept_and_a_viewers_limits() {
    let app = TestApp::start().await;
    let owner = app.register_and_login("owner@example.com").await;
    let (status, invitation) = app
        .post_json(
            "/tenant/members",
            &json!({"email": "Viewer@Example.com", "role": "viewer"}),
            owner.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(invitation["status"], "invited");
    assert_eq!(invitation["email"], "viewer@example.com");
    let list = members(&app, owner.token()).await;
    assert_eq!(list["invitations"][0]["email"], "viewer@example.com", "{list}");

    // A wrong code is refused; the emailed one works once.
    let code = app.smtp.wait_for_code("viewer@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "viewer@example.com", "code": wrong, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    let (status, joined) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "viewer@example.com", "code": code, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["status"], "joined");
    assert_eq!(joined["tenant"]["id"], owner.tenant_id.as_str());
    let (status, again) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "viewer@example.com", "code": code, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code works once: {again}");

    let viewer = app.login("viewer@example.com", TEST_PASSWORD).await;
    assert_eq!(
        viewer.tenant_id, owner.tenant_id,
        "the viewer logs in to the tenant joined"
    );
    let (_, me) = app.get("/auth/me", viewer.token()).await;
    assert_eq!(me["role"], "viewer", "{me}");
    assert!(
        me["permissions"].as_array().unwrap().contains(&json!("jobs.read")),
        "{me}"
    );
    assert!(
        !me["permissions"].as_array().unwrap().contains(&json!("jobs.run")),
        "{me}"
    );

    // A viewer reads, and does nothing else.
    for path in ["/agents", "/jobs", "/schedules", "/deliveries", "/metrics/json"] {
        let (status, body) = app.get(path, viewer.token()).await;
        assert_eq!(status, StatusCode::OK, "viewer GET {path}: {body}");
    }
    for (method, path, body) in [
        (
            Method::POST,
            "/trigger-script",
            json!({"agent": "a", "run_script": "x.sh"}),
        ),
        (Method::POST, "/fan-out", json!({"run_script": "x.sh"})),
        (
            Method::POST,
            "/schedules",
            json!({"agent": "a", "script": "x.sh", "cron": "* * * * *"}),
        ),
        (Method::POST, "/auth/api-keys", json!({"name": "k"})),
        (
            Method::POST,
            "/tenant/members",
            json!({"email": "x@example.com", "role": "viewer"}),
        ),
        (Method::GET, "/integrations", json!({})),
        (Method::GET, "/audit", json!({})),
    ] {
        let response = app
            .request(method.clone(), path)
            .bearer(viewer.token())
            .json(&body)
            .send()
            .await;
        response.assert_error(StatusCode::FORBIDDEN, "permission_denied");
    }
    // A viewer may still change their own password.
    let (status, body) = app
        .post_json(
            "/auth/change-password",
            &json!({"current_password": TEST_PASSWORD, "new_password": "another long passphrase"}),
            viewer.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[actix_rt::test]
async fn roles_change_owners_are_kept_and_removal_ends_sessions_at_once() {
    let app = TestApp::start().await;
    let owner = app.register_and_login("first@example.com").await;
    let admin = app.invite_and_join(&owner, "admin@example.com", "admin").await;
    let operator = app.invite_and_join(&owner, "operator@example.com", "operator").await;
    let list = members(&app, admin.token()).await;
    assert_eq!(list["members"].as_array().unwrap().len(), 3, "{list}");
    let owner_id = member_id(&list, "first@example.com");
    let operator_id = member_id(&list, "operator@example.com");

    // Admins manage members, but not owners, and grant nothing above themselves.
    for (body, id) in [
        (json!({"role": "owner"}), &operator_id),
        (json!({"role": "viewer"}), &owner_id),
    ] {
        let (status, answer) = app
            .request(Method::PATCH, &format!("/tenant/members/{id}"))
            .bearer(admin.token())
            .json(&body)
            .send()
            .await
            .into_parts();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body} {id}: {answer}");
    }
    let (status, body) = app
        .post_json(
            "/tenant/members",
            &json!({"email": "o2@example.com", "role": "owner"}),
            admin.token(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners invite owners: {body}");
    let (status, changed) = app
        .request(Method::PATCH, &format!("/tenant/members/{operator_id}"))
        .bearer(admin.token())
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .into_parts();
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "viewer");
    // The change holds at once, on the token the member already has.
    let (status, _) = app
        .post_json(
            "/trigger-script",
            &json!({"agent": "a", "run_script": "x.sh"}),
            operator.token(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The last owner cannot be demoted or removed.
    let (status, body) = app
        .request(Method::PATCH, &format!("/tenant/members/{owner_id}"))
        .bearer(owner.token())
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .into_parts();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "last_owner");
    let (status, body) = app.delete(&format!("/tenant/members/{owner_id}"), owner.token()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Removal: the member's access token and refresh token stop working at once.
    let (status, body) = app
        .delete(&format!("/tenant/members/{operator_id}"), admin.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get("/jobs", operator.token()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a removed member's access token is refused"
    );
    let (status, body) = app
        .post_json("/auth/refresh", &json!({"refresh_token": operator.refresh_token}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let list = members(&app, owner.token()).await;
    assert_eq!(list["members"].as_array().unwrap().len(), 2, "{list}");
}

#[actix_rt::test]
async fn a_user_of_two_tenants_picks_one_at_login_and_tenants_stay_apart() {
    let app = TestApp::start().await;
    let alice = app.register_and_login("alice@example.com").await;
    let bob = app.register_and_login("bob@example.com").await;
    // Bob has an account already: accepting Alice's invitation adds a membership, with his
    // own password.
    app.post_json(
        "/tenant/members",
        &json!({"email": "bob@example.com", "role": "operator"}),
        alice.token(),
    )
    .await;
    let code = app.smtp.wait_for_code_in_message("bob@example.com", 2).await;
    let (status, body) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "bob@example.com", "code": code, "password": "not bob's password"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, joined) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "bob@example.com", "code": code, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");

    let (_, me) = app.get("/auth/me", bob.token()).await;
    let tenants: Vec<&str> = me["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .map(|m| m["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(tenants.len(), 2, "{me}");
    assert!(tenants.contains(&alice.tenant_id.as_str()) && tenants.contains(&bob.tenant_id.as_str()));
    // Without "tenant", his own; with it, Alice's, as an operator.
    let (_, plain) = app
        .post_json(
            "/auth/login",
            &json!({"email": "bob@example.com", "password": TEST_PASSWORD}),
            None,
        )
        .await;
    let (_, me) = app.get("/auth/me", plain["access_token"].as_str()).await;
    assert_eq!(me["tenant"]["id"], bob.tenant_id.as_str());
    assert_eq!(me["role"], "owner");
    let (status, chosen) = app
        .post_json(
            "/auth/login",
            &json!({"email": "bob@example.com", "password": TEST_PASSWORD, "tenant": alice.tenant_id}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chosen}");
    let (_, me) = app.get("/auth/me", chosen["access_token"].as_str()).await;
    assert_eq!(me["tenant"]["id"], alice.tenant_id.as_str());
    assert_eq!(me["role"], "operator");
    // A tenant he is not in is refused.
    let carol = app.register_and_login("carol@example.com").await;
    let (status, body) = app
        .post_json(
            "/auth/login",
            &json!({"email": "bob@example.com", "password": TEST_PASSWORD, "tenant": carol.tenant_id}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Carol's tenant sees none of Alice's members, and cannot touch them.
    let list = members(&app, carol.token()).await;
    let emails: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["carol@example.com"], "{list}");
    let alice_list = members(&app, alice.token()).await;
    let bob_in_alice = member_id(&alice_list, "bob@example.com");
    let (status, _) = app
        .delete(&format!("/tenant/members/{bob_in_alice}"), carol.token())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .request(Method::PATCH, &format!("/tenant/members/{bob_in_alice}"))
        .bearer(carol.token())
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .into_parts();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        members(&app, alice.token()).await["members"].as_array().unwrap().len(),
        2
    );
}
