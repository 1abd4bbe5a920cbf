//! `/auth/*`: accounts, email verification, login, token refresh and API keys.

use crate::auth::{api_keys, jwt, passwords, sha256_hex, Caller, Credential};
use crate::db::models::{ApiKey, EmailCode, RefreshToken, Tenant, User};
use crate::db::{self, accounts, audit, audit::AuditEvent};
use crate::error::{Error, Result};
use crate::extract::{required_text, JsonBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

const CODE_TTL_MS: i64 = 15 * 60 * 1000;
const MAX_CODE_ATTEMPTS: i32 = 5;
const MAX_EMAIL_LEN: usize = 254;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/register").route(web::post().to(register)));
    cfg.service(web::resource("/auth/verify-email").route(web::post().to(verify_email)));
    cfg.service(web::resource("/auth/resend-code").route(web::post().to(resend_code)));
    cfg.service(web::resource("/auth/login").route(web::post().to(login)));
    cfg.service(web::resource("/auth/refresh").route(web::post().to(refresh)));
    cfg.service(web::resource("/auth/logout").route(web::post().to(logout)));
    cfg.service(web::resource("/auth/me").route(web::get().to(me)));
    cfg.service(
        web::resource("/auth/api-keys")
            .route(web::post().to(create_api_key))
            .route(web::get().to(list_api_keys)),
    );
    cfg.service(web::resource("/auth/api-keys/{id}").route(web::delete().to(revoke_api_key)));
}

#[derive(Deserialize)]
struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    tenant_name: Option<String>,
}

#[derive(Deserialize)]
struct VerifyRequest {
    email: String,
    code: String,
}

#[derive(Deserialize)]
struct EmailOnly {
    email: String,
}

#[derive(Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize)]
struct CreateKeyRequest {
    name: String,
    #[serde(default)]
    expires_days: Option<i64>,
}

#[derive(Serialize)]
struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn client_addr(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Lower-cases and checks an email address (shape only; the verification code proves it).
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if !valid {
        return Err(Error::Validation(
            "email must be an address like you@company.com".into(),
        ));
    }
    Ok(email)
}

/// Per client address and per email, on the endpoints that guess at secrets.
fn rate_limit(state: &AppState, req: &HttpRequest, endpoint: &str, email: &str) -> Result<()> {
    let limit = state.config.auth_rate_limit_per_minute;
    state.rate_limiter.check(
        format!("{endpoint}:addr:{}", client_addr(req)),
        limit * crate::config::Config::RATE_LIMIT_ADDR_FACTOR,
    )?;
    state
        .rate_limiter
        .check(format!("{endpoint}:email:{}", email.trim().to_lowercase()), limit)
}

async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<HttpResponse> {
    state.rate_limiter.check(
        format!("register:addr:{}", client_addr(&req)),
        state.config.auth_rate_limit_per_minute * crate::config::Config::RATE_LIMIT_ADDR_FACTOR,
    )?;
    let email = normalize_email(&body.email)?;
    passwords::validate(&body.password)?;
    let tenant_name = match &body.tenant_name {
        Some(name) => required_text("tenant_name", name, 100)?,
        None => format!("{}'s workspace", email.split('@').next().unwrap_or("my")),
    };
    if accounts::find_user_by_email(&state.db, &email).await?.is_some() {
        return Err(Error::conflict(
            "email_taken",
            "an account with this email already exists; log in instead",
        ));
    }
    let password_hash = passwords::hash(body.password, state.config.bcrypt_cost).await?;
    let now = db::now_ms();
    let tenant = Tenant {
        id: db::new_id("ten"),
        name: tenant_name,
        created_at: now,
    };
    let user = User {
        id: db::new_id("usr"),
        tenant_id: tenant.id.clone(),
        email: email.clone(),
        password_hash,
        role: "owner".into(),
        email_verified: false,
        created_at: now,
    };
    accounts::create_tenant_with_owner(&state.db, &tenant, &user).await?;
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(&tenant.id),
            user_id: Some(&user.id),
            event: "user.registered",
            detail: email.clone(),
            client_addr: Some(client_addr(&req)),
        },
    )
    .await?;
    send_new_code(&state, &user).await?;
    Ok(HttpResponse::Created().json(json!({
        "status": "verification_required",
        "user_id": user.id,
        "tenant_id": tenant.id,
        "email": email,
        "message": "We sent a 6-digit code to your email; confirm it at POST /auth/verify-email.",
    })))
}

/// Stores a fresh code and sends it in the background (a slow mail server must not hold
/// the request; a failed send is logged and the user can ask again).
async fn send_new_code(state: &web::Data<AppState>, user: &User) -> Result<()> {
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let now = db::now_ms();
    accounts::replace_email_code(
        &state.db,
        &EmailCode {
            user_id: user.id.clone(),
            code_hash: code_hash(&user.id, &code),
            expires_at: now + CODE_TTL_MS,
            attempts: 0,
            created_at: now,
        },
    )
    .await?;
    let mailer = state.mailer.clone();
    let email = user.email.clone();
    actix_rt::spawn(async move {
        if let Err(error) = mailer.send_verification_code(&email, &code).await {
            tracing::error!(%error, "could not send the verification code");
        }
    });
    Ok(())
}

fn code_hash(user_id: &str, code: &str) -> String {
    sha256_hex(&format!("{user_id}:{code}"))
}

async fn verify_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "verify", &body.email)?;
    let invalid = || {
        Error::bad_request(
            "invalid_code",
            "the code is invalid or has expired; request a new one at POST /auth/resend-code",
        )
    };
    let email = normalize_email(&body.email).map_err(|_| invalid())?;
    let code = body.code.trim();
    let user = accounts::find_user_by_email(&state.db, &email)
        .await?
        .ok_or_else(invalid)?;
    let stored = accounts::find_email_code(&state.db, &user.id)
        .await?
        .ok_or_else(invalid)?;
    if stored.attempts >= MAX_CODE_ATTEMPTS || stored.expires_at <= db::now_ms() {
        return Err(invalid());
    }
    if code.len() != 6 || stored.code_hash != code_hash(&user.id, code) {
        accounts::count_wrong_code(&state.db, &user.id).await?;
        return Err(invalid());
    }
    accounts::mark_email_verified(&state.db, &user.id).await?;
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(&user.tenant_id),
            user_id: Some(&user.id),
            event: "email.verified",
            detail: email,
            client_addr: Some(client_addr(&req)),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"status": "verified"})))
}

async fn resend_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<EmailOnly>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "resend", &body.email)?;
    if let Ok(email) = normalize_email(&body.email) {
        if let Some(user) = accounts::find_user_by_email(&state.db, &email).await? {
            if !user.email_verified {
                send_new_code(&state, &user).await?;
            }
        }
    }
    // The same answer whether or not the address is registered.
    Ok(HttpResponse::Accepted().json(json!({
        "status": "sent",
        "message": "If this address has an unverified account, a new code is on its way.",
    })))
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "login", &body.email)?;
    let email = body.email.trim().to_lowercase();
    let user = if email.len() <= MAX_EMAIL_LEN {
        accounts::find_user_by_email(&state.db, &email).await?
    } else {
        None
    };
    let password_ok = body.password.len() <= passwords::MAX_PASSWORD_BYTES
        && passwords::verify(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
            state.config.bcrypt_cost,
        )
        .await?;
    let Some(user) = user.filter(|_| password_ok) else {
        audit::record(
            &state.db,
            AuditEvent {
                tenant_id: None,
                user_id: None,
                event: "login.failed",
                detail: email.chars().take(MAX_EMAIL_LEN).collect(),
                client_addr: Some(client_addr(&req)),
            },
        )
        .await?;
        return Err(Error::Unauthorized {
            code: "invalid_credentials",
            message: "wrong email or password".into(),
        });
    };
    if !user.email_verified {
        return Err(Error::forbidden(
            "email_not_verified",
            "verify your email first: enter the 6-digit code we sent at POST /auth/verify-email (POST /auth/resend-code sends a new one)",
        ));
    }
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(&user.tenant_id),
            user_id: Some(&user.id),
            event: "login.succeeded",
            detail: email,
            client_addr: Some(client_addr(&req)),
        },
    )
    .await?;
    let pair = issue_tokens(&state, &user, db::new_id("fam")).await?;
    Ok(HttpResponse::Ok().json(pair))
}

async fn issue_tokens(state: &AppState, user: &User, family_id: String) -> Result<TokenPair> {
    let now = chrono::Utc::now().timestamp();
    let access_ttl = state.config.access_token_ttl.as_secs();
    let access_token = state.jwt.sign(&jwt::AccessClaims {
        sub: user.id.clone(),
        tid: user.tenant_id.clone(),
        role: user.role.clone(),
        typ: "access".into(),
        iat: now,
        exp: now + access_ttl as i64,
    })?;
    let refresh_id = db::new_id("rtk");
    let refresh_exp = now + state.config.refresh_token_ttl.as_secs() as i64;
    let refresh_token = state.jwt.sign(&jwt::RefreshClaims {
        sub: user.id.clone(),
        tid: user.tenant_id.clone(),
        jti: refresh_id.clone(),
        fam: family_id.clone(),
        typ: "refresh".into(),
        iat: now,
        exp: refresh_exp,
    })?;
    accounts::insert_refresh_token(
        &state.db,
        &RefreshToken {
            id: refresh_id,
            token_hash: sha256_hex(&refresh_token),
            family_id,
            user_id: user.id.clone(),
            tenant_id: user.tenant_id.clone(),
            expires_at: refresh_exp * 1000,
            used_at: None,
            revoked_at: None,
            created_at: db::now_ms(),
        },
    )
    .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "bearer",
        expires_in: access_ttl,
    })
}

async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse> {
    let claims = state.jwt.verify_refresh(body.refresh_token.trim())?;
    let revoked = || Error::unauthorized("the refresh token has been revoked; log in again");
    let stored = accounts::find_refresh_token(&state.db, &sha256_hex(body.refresh_token.trim()))
        .await?
        .ok_or_else(revoked)?;
    if stored.revoked_at.is_some() {
        return Err(revoked());
    }
    let now = db::now_ms();
    let fresh = stored.used_at.is_none() && accounts::consume_refresh_token(&state.db, &stored.id, now).await?;
    if !fresh {
        // A rotated token came back: it was stolen or replayed. End the whole session.
        accounts::revoke_refresh_family(&state.db, &stored.family_id, now).await?;
        audit::record(
            &state.db,
            AuditEvent {
                tenant_id: Some(&stored.tenant_id),
                user_id: Some(&stored.user_id),
                event: "refresh_token.reused",
                detail: format!("family {} revoked", stored.family_id),
                client_addr: Some(client_addr(&req)),
            },
        )
        .await?;
        return Err(Error::Unauthorized {
            code: "refresh_token_reused",
            message: "this refresh token was already used; the session has been revoked, log in again".into(),
        });
    }
    let user = accounts::find_user(&state.db, &claims.tid, &claims.sub)
        .await?
        .ok_or_else(revoked)?;
    let pair = issue_tokens(&state, &user, stored.family_id).await?;
    Ok(HttpResponse::Ok().json(pair))
}

async fn logout(state: web::Data<AppState>, JsonBody(body): JsonBody<RefreshRequest>) -> Result<HttpResponse> {
    let token = body.refresh_token.trim();
    match state.jwt.verify_refresh(token) {
        Ok(_)
        | Err(Error::Unauthorized {
            code: "token_expired", ..
        }) => {}
        Err(error) => return Err(error),
    }
    if let Some(stored) = accounts::find_refresh_token(&state.db, &sha256_hex(token)).await? {
        accounts::revoke_refresh_family(&state.db, &stored.family_id, db::now_ms()).await?;
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ok"})))
}

async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let tenant = accounts::find_tenant(&state.db, &caller.tenant_id)
        .await?
        .ok_or_else(|| Error::unauthorized("the tenant no longer exists"))?;
    let user = match &caller.user_id {
        Some(user_id) => accounts::find_user(&state.db, &caller.tenant_id, user_id).await?,
        None => None,
    };
    Ok(HttpResponse::Ok().json(json!({
        "user": user.map(|u| json!({
            "id": u.id,
            "email": u.email,
            "role": u.role,
            "email_verified": u.email_verified,
            "created_at": db::format_time(u.created_at),
        })),
        "tenant": {"id": tenant.id, "name": tenant.name, "created_at": db::format_time(tenant.created_at)},
        "auth": match caller.credential {
            Credential::Jwt => json!({"type": "jwt"}),
            Credential::ApiKey { key_id } => json!({"type": "api_key", "key_id": key_id}),
        },
    })))
}

/// Keys are managed by people (JWT): a leaked key must not be able to mint itself successors.
fn require_person(caller: &Caller) -> Result<()> {
    if caller.credential != Credential::Jwt {
        return Err(Error::forbidden(
            "forbidden",
            "API keys cannot create or revoke API keys; log in and use the access token",
        ));
    }
    Ok(())
}

fn key_view(key: &ApiKey) -> serde_json::Value {
    json!({
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "created_at": db::format_time(key.created_at),
        "expires_at": db::format_time_opt(key.expires_at),
        "last_used_at": db::format_time_opt(key.last_used_at),
    })
}

async fn create_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    JsonBody(body): JsonBody<CreateKeyRequest>,
) -> Result<HttpResponse> {
    require_person(&caller)?;
    let name = required_text("name", &body.name, 100)?;
    if let Some(days) = body.expires_days {
        if !(1..=3650).contains(&days) {
            return Err(Error::Validation(
                "expires_days must be a whole number from 1 to 3650".into(),
            ));
        }
    }
    let raw = api_keys::generate();
    let now = db::now_ms();
    let key = ApiKey {
        id: db::new_id("key"),
        tenant_id: caller.tenant_id.clone(),
        user_id: caller.user_id.clone(),
        name,
        key_prefix: api_keys::display_prefix(&raw),
        key_hash: sha256_hex(&raw),
        created_at: now,
        expires_at: body.expires_days.map(|days| now + days * 86_400_000),
        last_used_at: None,
        revoked_at: None,
    };
    accounts::insert_api_key(&state.db, &key).await?;
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(&caller.tenant_id),
            user_id: caller.user_id.as_deref(),
            event: "api_key.created",
            detail: format!("{} ({})", key.id, key.key_prefix),
            client_addr: Some(client_addr(&req)),
        },
    )
    .await?;
    let mut view = key_view(&key);
    view["key"] = json!(raw);
    view["warning"] = json!("Store this key securely. It will not be shown again.");
    Ok(HttpResponse::Created().json(view))
}

async fn list_api_keys(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let keys = accounts::list_api_keys(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(keys.iter().map(key_view).collect::<Vec<_>>()))
}

async fn revoke_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    require_person(&caller)?;
    let key_id = path.into_inner();
    if !accounts::revoke_api_key(&state.db, &caller.tenant_id, &key_id, db::now_ms()).await? {
        return Err(Error::not_found(format!("API key {key_id}")));
    }
    state.key_cache.evict(&key_id);
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(&caller.tenant_id),
            user_id: caller.user_id.as_deref(),
            event: "api_key.revoked",
            detail: key_id.clone(),
            client_addr: Some(client_addr(&req)),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"status": "revoked", "id": key_id})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(normalize_email("  You@Company.COM ").unwrap(), "you@company.com");
        for bad in [
            "",
            "nope",
            "a@b",
            "@x.com",
            "a@.com",
            "a b@x.com",
            "a@x.com.",
            &format!("{}@x.com", "a".repeat(300)),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
