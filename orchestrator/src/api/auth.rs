//! `/auth/*`: accounts, email verification, login, token refresh and API keys.

use crate::api::agent_protocol::StatusOk;
use crate::api::docs::Endpoint;
use crate::audit::{Outcome, Record};
use crate::auth::permissions::{Permission, Role};
use crate::auth::{jwt, passwords, sha256_hex, Caller};
use crate::db::models::{EmailCode, PasswordReset, RefreshToken, Tenant, User};
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::extract::{required_text, JsonBody};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

pub const CODE_TTL_MS: i64 = 15 * 60 * 1000;
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
    cfg.service(Endpoint::new(__path_forgot_password, forgot_password));
    cfg.service(Endpoint::new(__path_reset_password, reset_password));
    cfg.service(Endpoint::new(__path_change_password, change_password));
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
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// The tenant to log in to, for a member of several (`GET /auth/me` lists them);
    /// default: the tenant the user joined first.
    #[serde(default)]
    #[schema(example = "ten_0192f7c5e0a87b4c9d1e2f3a4b5c6d7e")]
    tenant: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
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
    /// The logged-in user, or the key's creator; null for an API key that no user created.
    user: Option<MeUser>,
    tenant: MeTenant,
    auth: MeAuth,
    /// The caller's role in this tenant: the person's, or the API key's.
    role: Role,
    /// What the role allows here (the permission table).
    permissions: Vec<Permission>,
    /// The person's tenants (login with `"tenant"` picks one); empty for an API key.
    memberships: Vec<MeMembership>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeUser {
    id: String,
    email: String,
    /// The user's role in this tenant (for a key: its creator's).
    role: Option<Role>,
    email_verified: bool,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeMembership {
    tenant_id: String,
    tenant_name: String,
    role: Role,
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

fn client_addr(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// An audit entry of someone who has no token yet (signing up, logging in, resetting a
/// password), known by the address they gave.
pub fn person_record(
    req: &HttpRequest,
    tenant_id: Option<&str>,
    user_id: Option<&str>,
    email: &str,
    action: &'static str,
    outcome: Outcome,
    detail: String,
) -> Record {
    Record {
        tenant_id: tenant_id.map(str::to_owned),
        user_id: user_id.map(str::to_owned),
        actor: Some(email.to_owned()).filter(|email| !email.is_empty()),
        actor_id: user_id.map(str::to_owned),
        action,
        target: Some(email.to_owned()).filter(|email| !email.is_empty()),
        outcome,
        detail,
        client_addr: Some(client_addr(req)),
    }
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
pub fn rate_limit(state: &AppState, req: &HttpRequest, endpoint: &str, email: &str) -> Result<()> {
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
        email_verified: false,
        created_at: now,
    };
    accounts::create_tenant_with_owner(&state.db, &tenant, &user).await?;
    state.audit.record(person_record(
        &req,
        Some(&tenant.id),
        Some(&user.id),
        &email,
        "user.register",
        Outcome::Ok,
        String::new(),
    ));
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
    let code = new_code();
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

/// A random 6-digit code, as emailed.
pub fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// What checking an emailed code against the stored one found.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Good,
    /// Not the code: counts as a wrong try.
    Wrong,
    /// Expired, or tried too often: no code is good any more.
    Spent,
}

/// The one rule for emailed codes (verification, password reset, invitation): six digits,
/// within their time, fewer than [`MAX_CODE_ATTEMPTS`] wrong tries.
pub fn check_code(code: &str, scope: &str, stored_hash: &str, attempts: i32, expires_at: i64) -> CodeCheck {
    if attempts >= MAX_CODE_ATTEMPTS || expires_at <= db::now_ms() {
        return CodeCheck::Spent;
    }
    if code.len() != 6 || stored_hash != code_hash(scope, code) {
        return CodeCheck::Wrong;
    }
    CodeCheck::Good
}

/// What a password reset code is hashed with: never taken for a verification code.
fn reset_scope(user_id: &str) -> String {
    format!("reset:{user_id}")
}

/// How a code is stored: hashed with what it is for (`scope`), so a code for one thing is
/// never taken for another.
pub fn code_hash(scope: &str, code: &str) -> String {
    sha256_hex(&format!("{scope}:{code}"))
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
    match check_code(code, &user.id, &stored.code_hash, stored.attempts, stored.expires_at) {
        CodeCheck::Good => {}
        CodeCheck::Spent => return Err(invalid()),
        CodeCheck::Wrong => {
            accounts::count_wrong_code(&state.db, &user.id).await?;
            return Err(invalid());
        }
    }
    accounts::mark_email_verified(&state.db, &user.id).await?;
    state.audit.record(person_record(
        &req,
        Some(&user.tenant_id),
        Some(&user.id),
        &email,
        "user.verify_email",
        Outcome::Ok,
        String::new(),
    ));
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
    let user = match user {
        Some(user) if password_ok => user,
        other => {
            let shown: String = email.chars().take(MAX_EMAIL_LEN).collect();
            // Into the tenant the address belongs to, so that its admins see attempts on it.
            let (tenant, user_id) = match &other {
                Some(user) => (Some(user.tenant_id.as_str()), Some(user.id.as_str())),
                None => (None, None),
            };
            state.audit.record(person_record(
                &req,
                tenant,
                user_id,
                &shown,
                "user.login",
                Outcome::Denied,
                "wrong email or password".into(),
            ));
            return Err(Error::Unauthorized {
                code: "invalid_credentials",
                message: "wrong email or password".into(),
            });
        }
    };
    if !user.email_verified {
        return Err(Error::forbidden(
            "email_not_verified",
            "verify your email first: enter the 6-digit code we sent at POST /auth/verify-email (POST /auth/resend-code sends a new one)",
        ));
    }
    let memberships = accounts::memberships_of(&state.db, &user.id).await?;
    let chosen = match body.tenant.as_deref().map(str::trim) {
        Some(tenant) => memberships.iter().find(|(m, _)| m.tenant_id == tenant).ok_or_else(|| {
            Error::forbidden(
                "not_a_member",
                format!("you are not a member of tenant {tenant}; GET /auth/me lists your tenants"),
            )
        })?,
        // The tenant the user joined first.
        None => memberships
            .iter()
            .find(|(m, _)| m.tenant_id == user.tenant_id)
            .or(memberships.first())
            .ok_or_else(|| Error::forbidden("not_a_member", "you are not a member of any tenant"))?,
    };
    let tenant_id = chosen.0.tenant_id.clone();
    state.audit.record(person_record(
        &req,
        Some(&tenant_id),
        Some(&user.id),
        &email,
        "user.login",
        Outcome::Ok,
        String::new(),
    ));
    let pair = issue_tokens(&state, &user.id, &tenant_id, db::new_id("fam")).await?;
    Ok(HttpResponse::Ok().json(pair))
}

/// A new access token and refresh token for the user in the tenant. The access token
/// carries the role as it is now, but each request reads the membership's role as it is
/// then: the token's only refuses at once what the role never allowed.
pub async fn issue_tokens(state: &AppState, user_id: &str, tenant_id: &str, family_id: String) -> Result<TokenPair> {
    let now = chrono::Utc::now().timestamp();
    let access_ttl = state.config.access_token_ttl.as_secs();
    let (role, email) = accounts::membership_role(&state.db, tenant_id, user_id)
        .await?
        .ok_or_else(|| Error::unauthorized("you are not a member of this tenant"))?;
    let access_token = state.jwt.sign(&jwt::AccessClaims {
        sub: user_id.to_owned(),
        tid: tenant_id.to_owned(),
        role: Some(role),
        email: Some(email),
        typ: "access".into(),
        iat: now,
        exp: now + access_ttl as i64,
    })?;
    let refresh_id = db::new_id("rtk");
    let refresh_exp = now + state.config.refresh_token_ttl.as_secs() as i64;
    let refresh_token = state.jwt.sign(&jwt::RefreshClaims {
        sub: user_id.to_owned(),
        tid: tenant_id.to_owned(),
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
            user_id: user_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
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
        state.audit.record(person_record(
            &req,
            Some(&stored.tenant_id),
            Some(&stored.user_id),
            "",
            "session.reuse",
            Outcome::Denied,
            format!("a used refresh token came back; session {} revoked", stored.family_id),
        ));
        return Err(Error::Unauthorized {
            code: "refresh_token_reused",
            message: "this refresh token was already used; the session has been revoked, log in again".into(),
        });
    }
    // A member removed meanwhile gets no new tokens.
    accounts::membership_role(&state.db, &claims.tid, &claims.sub)
        .await?
        .ok_or_else(revoked)?;
    let pair = issue_tokens(&state, &claims.sub, &claims.tid, stored.family_id).await?;
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
    responses((status = 200, description = "The caller, its tenant, its role and how it authenticated", body = Me)),
    security(("bearer" = [])),
)]
async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let tenant = accounts::find_tenant(&state.db, &caller.tenant_id)
        .await?
        .ok_or_else(|| Error::unauthorized("the tenant no longer exists"))?;
    let user = match &caller.user_id {
        Some(user_id) => accounts::find_user(&state.db, user_id).await?,
        None => None,
    };
    let memberships = match (&user, caller.is_person()) {
        (Some(user), true) => accounts::memberships_of(&state.db, &user.id).await?,
        _ => Vec::new(),
    };
    let user_role = match &user {
        Some(user) if caller.is_person() => Some(caller.role),
        Some(user) => accounts::membership_role(&state.db, &caller.tenant_id, &user.id)
            .await?
            .and_then(|(role, _)| Role::parse(&role)),
        None => None,
    };
    Ok(HttpResponse::Ok().json(Me {
        user: user.map(|u| MeUser {
            id: u.id,
            email: u.email,
            role: user_role,
            email_verified: u.email_verified,
            created_at: db::format_time(u.created_at),
        }),
        tenant: MeTenant {
            id: tenant.id,
            name: tenant.name,
            created_at: db::format_time(tenant.created_at),
        },
        auth: match caller.api_key_id() {
            None => MeAuth {
                kind: "jwt",
                key_id: None,
            },
            Some(key_id) => MeAuth {
                kind: "api_key",
                key_id: Some(key_id.to_owned()),
            },
        },
        role: caller.role,
        permissions: Permission::ALL.into_iter().filter(|p| caller.may(*p)).collect(),
        memberships: memberships
            .into_iter()
            .filter_map(|(membership, tenant)| {
                Some(MeMembership {
                    role: Role::parse(&membership.role)?,
                    tenant_id: tenant.id,
                    tenant_name: tenant.name,
                })
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    email: String,
    /// The 6-digit code from the email.
    #[schema(example = "123456")]
    code: String,
    /// The new password, at least 8 characters.
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    current_password: String,
    /// At least 8 characters.
    new_password: String,
}

/// Ask for a password reset code.
///
/// Emails a 6-digit code to the address if it has an account. The answer is the same
/// either way, so it tells nobody whether the address is registered.
#[utoipa::path(
    post, path = "/auth/forgot-password", tag = "auth",
    request_body = EmailOnly,
    responses(
        (status = 202, description = "Sent if the address has an account", body = StatusMessage),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
async fn forgot_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<EmailOnly>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "forgot", &body.email)?;
    if let Ok(email) = normalize_email(&body.email) {
        if let Some(user) = accounts::find_user_by_email(&state.db, &email).await? {
            let code = new_code();
            let now = db::now_ms();
            accounts::replace_password_reset(
                &state.db,
                &PasswordReset {
                    user_id: user.id.clone(),
                    code_hash: code_hash(&reset_scope(&user.id), &code),
                    expires_at: now + CODE_TTL_MS,
                    attempts: 0,
                    created_at: now,
                },
            )
            .await?;
            state.audit.record(person_record(
                &req,
                Some(&user.tenant_id),
                Some(&user.id),
                &email,
                "user.forgot_password",
                Outcome::Ok,
                String::new(),
            ));
            let mailer = state.mailer.clone();
            actix_rt::spawn(async move {
                if let Err(error) = mailer.send_password_reset(&email, &code).await {
                    tracing::error!(%error, "could not send the password reset code");
                }
            });
        }
    }
    Ok(HttpResponse::Accepted().json(StatusMessage {
        status: "sent",
        message: "If this address has an account, a reset code is on its way.",
    }))
}

/// Set a new password with the emailed reset code.
///
/// Ends every session of the user: all their refresh tokens are revoked.
#[utoipa::path(
    post, path = "/auth/reset-password", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 200, description = "The password is set; log in with it", body = StatusOnly),
        (status = 400, description = "Wrong, expired or used-up code (`invalid_code`)"),
        (status = 422, description = "A weak password"),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
async fn reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<ResetRequest>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "reset", &body.email)?;
    let invalid = || {
        Error::bad_request(
            "invalid_code",
            "the code is invalid or has expired; ask for a new one at POST /auth/forgot-password",
        )
    };
    let email = normalize_email(&body.email).map_err(|_| invalid())?;
    passwords::validate(&body.password)?;
    let user = accounts::find_user_by_email(&state.db, &email)
        .await?
        .ok_or_else(invalid)?;
    let stored = accounts::find_password_reset(&state.db, &user.id)
        .await?
        .ok_or_else(invalid)?;
    let code = body.code.trim();
    match check_code(
        code,
        &reset_scope(&user.id),
        &stored.code_hash,
        stored.attempts,
        stored.expires_at,
    ) {
        CodeCheck::Good => {}
        CodeCheck::Spent => return Err(invalid()),
        CodeCheck::Wrong => {
            accounts::count_wrong_reset(&state.db, &user.id).await?;
            return Err(invalid());
        }
    }
    let hash = passwords::hash(body.password, state.config.bcrypt_cost).await?;
    // The code came by email, so the address is proven too.
    accounts::set_password(&state.db, &user.id, &hash, db::now_ms()).await?;
    state.audit.record(person_record(
        &req,
        Some(&user.tenant_id),
        Some(&user.id),
        &email,
        "user.reset_password",
        Outcome::Ok,
        "every session revoked".into(),
    ));
    Ok(HttpResponse::Ok().json(StatusOnly { status: "reset" }))
}

/// Change your password.
///
/// Ends every other session (all refresh tokens are revoked) and answers a new token pair
/// for this one.
#[utoipa::path(
    post, path = "/auth/change-password", tag = "auth",
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Changed; the new token pair", body = TokenPair),
        (status = 401, description = "The current password is wrong (`invalid_credentials`)"),
        (status = 422, description = "A weak new password"),
    ),
    security(("access_token" = [])),
)]
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<HttpResponse> {
    let user_id = caller
        .user_id
        .clone()
        .ok_or_else(|| Error::unauthorized("log in first"))?;
    rate_limit(&state, &req, "change_password", &user_id)?;
    passwords::validate(&body.new_password)?;
    let user = accounts::find_user(&state.db, &user_id)
        .await?
        .ok_or_else(|| Error::unauthorized("the user no longer exists"))?;
    let current_ok = body.current_password.len() <= passwords::MAX_PASSWORD_BYTES
        && passwords::verify(
            body.current_password,
            Some(user.password_hash.clone()),
            state.config.bcrypt_cost,
        )
        .await?;
    if !current_ok {
        let error = Error::Unauthorized {
            code: "invalid_credentials",
            message: "the current password is wrong".into(),
        };
        return Err(caller.refused(&state, "user.change_password", user.email, error));
    }
    let hash = passwords::hash(body.new_password, state.config.bcrypt_cost).await?;
    accounts::set_password(&state.db, &user.id, &hash, db::now_ms()).await?;
    caller.did(&state, "user.change_password", user.email);
    let pair = issue_tokens(&state, &user.id, &caller.tenant_id, db::new_id("fam")).await?;
    Ok(HttpResponse::Ok().json(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_good_once_in_time_and_for_their_purpose() {
        let later = db::now_ms() + 60_000;
        let stored = code_hash("usr_1", "123456");
        assert_eq!(check_code("123456", "usr_1", &stored, 0, later), CodeCheck::Good);
        assert_eq!(check_code("123457", "usr_1", &stored, 0, later), CodeCheck::Wrong);
        assert_eq!(
            check_code("123456", &reset_scope("usr_1"), &stored, 0, later),
            CodeCheck::Wrong
        );
        assert_eq!(
            check_code("123456", "usr_1", &stored, MAX_CODE_ATTEMPTS, later),
            CodeCheck::Spent
        );
        assert_eq!(check_code("123456", "usr_1", &stored, 0, 0), CodeCheck::Spent);
    }

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
