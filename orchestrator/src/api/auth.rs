//! `/auth/*`: accounts, email verification, login, token refresh and API keys.

use crate::api::agent_protocol::StatusOk;
use crate::api::docs::Endpoint;
use crate::auth::{api_keys, jwt, passwords, sha256_hex, Caller, Credential};
use crate::db::models::{ApiKey, EmailCode, RefreshToken, Tenant, User};
use crate::db::{self, accounts, audit, audit::AuditEvent};
use crate::error::{Error, Result};
use crate::extract::{required_text, JsonBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

const CODE_TTL_MS: i64 = 15 * 60 * 1000;
const MAX_CODE_ATTEMPTS: i32 = 5;
const MAX_EMAIL_LEN: usize = 254;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_register, register));
    cfg.service(Endpoint::new(__path_verify_email, verify_email));
    cfg.service(Endpoint::new(__path_resend_code, resend_code));
    cfg.service(Endpoint::new(__path_login, login));
    cfg.service(Endpoint::new(__path_refresh, refresh));
    cfg.service(Endpoint::new(__path_logout, logout));
    cfg.service(Endpoint::new(__path_me, me));
    cfg.service(Endpoint::new(__path_create_api_key, create_api_key).and(__path_list_api_keys, list_api_keys));
    cfg.service(Endpoint::new(__path_revoke_api_key, revoke_api_key));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "you@company.com")]
    email: String,
    /// At least 8 characters.
    password: String,
    /// Name of the new workspace (tenant); defaults to "<name>'s workspace".
    #[serde(default)]
    tenant_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    email: String,
    /// The 6-digit code from the email.
    #[schema(example = "123456")]
    code: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailOnly {
    email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    name: String,
    /// Days until the key expires, 1 to 3650; none: it does not expire.
    #[serde(default)]
    expires_days: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    access_token: String,
    /// Single use: each refresh answers a new pair.
    refresh_token: String,
    #[schema(example = "bearer")]
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    /// Always `verification_required`.
    #[schema(example = "verification_required")]
    status: &'static str,
    user_id: String,
    tenant_id: String,
    email: String,
    message: &'static str,
}

/// `{"status": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusOnly {
    #[schema(example = "verified")]
    status: &'static str,
}

/// `{"status": ..., "message": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusMessage {
    status: &'static str,
    message: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The logged-in user; null for an API key that no user created.
    user: Option<MeUser>,
    tenant: MeTenant,
    auth: MeAuth,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeUser {
    id: String,
    email: String,
    role: String,
    email_verified: bool,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeTenant {
    id: String,
    name: String,
    created_at: String,
}

/// How the request authenticated.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeAuth {
    /// `jwt` or `api_key`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The API key's id, for `api_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

/// An API key as listed (never the key itself).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    id: String,
    name: String,
    /// The key's first characters, to recognise it.
    key_prefix: String,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
}

/// A new API key: the only time the key itself is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    view: ApiKeyView,
    /// The `sm_live_...` key.
    key: String,
    warning: &'static str,
}

/// `{"status": "revoked", "id": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    #[schema(example = "revoked")]
    status: &'static str,
    id: String,
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

/// Create an account.
///
/// Creates a tenant with this user as its owner and emails a 6-digit verification code.
#[utoipa::path(
    post, path = "/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created; verify the email next", body = Registered),
        (status = 409, description = "An account with this email exists (`email_taken`)"),
        (status = 422, description = "A bad email, a weak password or a bad tenant name"),
        (status = 429, description = "Too many attempts from this address (`rate_limited`); see Retry-After"),
    ),
)]
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
    Ok(HttpResponse::Created().json(Registered {
        status: "verification_required",
        user_id: user.id,
        tenant_id: tenant.id,
        email,
        message: "We sent a 6-digit code to your email; confirm it at POST /auth/verify-email.",
    }))
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

/// Confirm an email address with the emailed code.
#[utoipa::path(
    post, path = "/auth/verify-email", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified; log in next", body = StatusOnly),
        (status = 400, description = "Wrong, expired or used-up code (`invalid_code`), or the body is not JSON (`invalid_json`)"),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
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
    Ok(HttpResponse::Ok().json(StatusOnly { status: "verified" }))
}

/// Send a new verification code.
///
/// The same answer whether or not the address has an account.
#[utoipa::path(
    post, path = "/auth/resend-code", tag = "auth",
    request_body = EmailOnly,
    responses(
        (status = 202, description = "Sent if the address has an unverified account", body = StatusMessage),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
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
    Ok(HttpResponse::Accepted().json(StatusMessage {
        status: "sent",
        message: "If this address has an unverified account, a new code is on its way.",
    }))
}

/// Log in.
///
/// Answers a short-lived access token and a single-use refresh token.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenPair),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)"),
        (status = 403, description = "The email is not verified yet (`email_not_verified`)"),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
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

/// Exchange a refresh token for a new token pair.
///
/// Refresh tokens are single use; presenting a used one revokes the whole session.
#[utoipa::path(
    post, path = "/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "Invalid, expired, revoked or reused (`refresh_token_reused`) refresh token"),
    ),
)]
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

/// Log out: revokes the refresh token's session.
#[utoipa::path(
    post, path = "/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Logged out", body = StatusOk),
        (status = 401, description = "Not a refresh token"),
    ),
)]
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
    Ok(HttpResponse::Ok().json(StatusOk { status: "ok" }))
}

/// Who am I.
#[utoipa::path(
    get, path = "/auth/me", tag = "auth",
    responses((status = 200, description = "The caller, its tenant and how it authenticated", body = Me)),
    security(("bearer" = [])),
)]
async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let tenant = accounts::find_tenant(&state.db, &caller.tenant_id)
        .await?
        .ok_or_else(|| Error::unauthorized("the tenant no longer exists"))?;
    let user = match &caller.user_id {
        Some(user_id) => accounts::find_user(&state.db, &caller.tenant_id, user_id).await?,
        None => None,
    };
    Ok(HttpResponse::Ok().json(Me {
        user: user.map(|u| MeUser {
            id: u.id,
            email: u.email,
            role: u.role,
            email_verified: u.email_verified,
            created_at: db::format_time(u.created_at),
        }),
        tenant: MeTenant {
            id: tenant.id,
            name: tenant.name,
            created_at: db::format_time(tenant.created_at),
        },
        auth: match caller.credential {
            Credential::Jwt => MeAuth {
                kind: "jwt",
                key_id: None,
            },
            Credential::ApiKey { key_id } => MeAuth {
                kind: "api_key",
                key_id: Some(key_id),
            },
        },
    }))
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

fn key_view(key: &ApiKey) -> ApiKeyView {
    ApiKeyView {
        id: key.id.clone(),
        name: key.name.clone(),
        key_prefix: key.key_prefix.clone(),
        created_at: db::format_time(key.created_at),
        expires_at: db::format_time_opt(key.expires_at),
        last_used_at: db::format_time_opt(key.last_used_at),
    }
}

/// Create an API key.
///
/// Needs a login token: API keys cannot create keys. The key is shown only in this answer.
#[utoipa::path(
    post, path = "/auth/api-keys", tag = "auth",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created", body = ApiKeyCreated),
        (status = 403, description = "Called with an API key (`forbidden`)"),
        (status = 422, description = "A bad name or expiry"),
    ),
    security(("access_token" = [])),
)]
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
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        view: key_view(&key),
        key: raw,
        warning: "Store this key securely. It will not be shown again.",
    }))
}

/// List the tenant's API keys.
#[utoipa::path(
    get, path = "/auth/api-keys", tag = "auth",
    responses((status = 200, description = "The keys (never the keys themselves)", body = Vec<ApiKeyView>)),
    security(("bearer" = [])),
)]
async fn list_api_keys(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let keys = accounts::list_api_keys(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(keys.iter().map(key_view).collect::<Vec<_>>()))
}

/// Revoke an API key.
///
/// Needs a login token: API keys cannot revoke keys.
#[utoipa::path(
    delete, path = "/auth/api-keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 403, description = "Called with an API key (`forbidden`)"),
        (status = 404, description = "No such key in your tenant"),
    ),
    security(("access_token" = [])),
)]
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
    Ok(HttpResponse::Ok().json(Revoked {
        status: "revoked",
        id: key_id,
    }))
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
