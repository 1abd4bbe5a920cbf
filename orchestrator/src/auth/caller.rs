//! The `Caller` extractor: who is making this request, from `Authorization: Bearer ...`
//! (a JWT access token or an `sm_live_` API key), in which tenant, with which role, and
//! whether the role grants what the route needs (`permissions::ENDPOINTS`, attached to
//! each route by `docs::Endpoint`). A refusal is a 403 naming the missing permission, and
//! is recorded in the audit log.
//!
//! A person's role is read from their membership on every request, so a role change or a
//! removal takes effect at once, not when the access token expires. A key's role and scope
//! come with the key from the key cache: agents' polls, heartbeats and results cost no
//! database round trip for the check.

use super::key_cache::CachedKey;
use super::key_use::TOUCH_INTERVAL_MS;
use super::permissions::{Access, KeyScope, Permission, Role};
use super::{api_keys, sha256_hex};
use crate::api::docs::RouteAccess;
use crate::audit::{Outcome, Record};
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::state::AppState;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

#[derive(Clone, Debug)]
pub enum Credential {
    Jwt { email: String },
    ApiKey(Arc<CachedKey>),
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant_id: String,
    /// The user behind the token or the key's creator.
    pub user_id: Option<String>,
    pub role: Role,
    pub credential: Credential,
    pub client_addr: Option<IpAddr>,
}

/// The scope of a credential that is not narrowed (a person's).
static UNSCOPED: LazyLock<KeyScope> = LazyLock::new(KeyScope::default);

impl Caller {
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::ApiKey(cached) => Some(&cached.key.id),
            Credential::Jwt { .. } => None,
        }
    }

    pub fn is_person(&self) -> bool {
        matches!(self.credential, Credential::Jwt { .. })
    }

    /// What a key may touch beyond its role; a person's is not narrowed.
    pub fn scope(&self) -> &KeyScope {
        match &self.credential {
            Credential::ApiKey(cached) => cached.scope.as_ref().unwrap_or(&UNSCOPED),
            Credential::Jwt { .. } => &UNSCOPED,
        }
    }

    /// Whether the caller holds `permission` (a person-only one needs a login token).
    pub fn may(&self, permission: Permission) -> bool {
        self.role.grants(permission) && (self.is_person() || !permission.person_only())
    }

    /// 403 `permission_denied` unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.may(permission) {
            return Ok(());
        }
        let message = if self.role.grants(permission) {
            format!("{permission} needs a login token; API keys cannot use it")
        } else {
            format!("the {} role lacks the permission {permission}", self.role)
        };
        Err(Error::Forbidden {
            code: "permission_denied",
            message,
        })
    }

    /// 403 `outside_key_scope` unless the key's scope holds `what`.
    pub fn require_in_scope(&self, allowed: bool, what: impl std::fmt::Display) -> Result<()> {
        if allowed {
            return Ok(());
        }
        Err(Error::Forbidden {
            code: "outside_key_scope",
            message: format!("this API key's scope does not include {what}"),
        })
    }

    /// An audit entry of this caller doing `action` to `target`.
    pub fn audit(&self, action: &'static str, target: impl Into<String>, outcome: Outcome, detail: String) -> Record {
        let (actor, actor_id) = match &self.credential {
            Credential::Jwt { email } => (email.clone(), self.user_id.clone()),
            Credential::ApiKey(cached) => (cached.actor.clone(), Some(cached.key.id.clone())),
        };
        Record {
            tenant_id: Some(self.tenant_id.clone()),
            user_id: self.user_id.clone(),
            actor: Some(actor),
            actor_id,
            action,
            target: Some(target.into()).filter(|t: &String| !t.is_empty()),
            outcome,
            detail,
            client_addr: self.client_addr.map(|addr| addr.to_string()),
        }
    }

    /// Records that the caller did `action` to `target`.
    pub fn did(&self, state: &AppState, action: &'static str, target: impl Into<String>) {
        state
            .audit
            .record(self.audit(action, target, Outcome::Ok, String::new()));
    }

    /// Records that the caller was refused `action` on `target`, and hands the refusal on.
    pub fn refused(&self, state: &AppState, action: &'static str, target: impl Into<String>, error: Error) -> Error {
        state
            .audit
            .record(self.audit(action, target, Outcome::Denied, error.to_string()));
        error
    }
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Caller>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        let access = req.app_data::<RouteAccess>().and_then(|route| route.get(req.method()));
        let client_addr = req.peer_addr().map(|addr| addr.ip());
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::Internal("application state missing".into()))?;
            let mut caller = authenticate(&state, &token?).await?;
            caller.client_addr = client_addr;
            if let Some(Access::Requires(permission)) = access {
                if let Err(error) = caller.require(permission) {
                    let route = format!("{} {}", req.method(), req.match_pattern().unwrap_or_default());
                    return Err(caller.refused(&state, "request.denied", route, error));
                }
            }
            Ok(caller)
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            Error::unauthorized("missing Authorization header; send `Authorization: Bearer <token or sm_live_ key>`")
        })?
        .to_str()
        .map_err(|_| Error::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| Error::unauthorized("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::unauthorized("expected `Authorization: Bearer <token>`"));
    }
    Ok(token.trim().to_owned())
}

/// Who the credential is, with the role it holds now.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller> {
    if !api_keys::looks_like_key(token) {
        let claims = state.jwt.verify_access(token)?;
        let (role, email) = accounts::membership_role(&state.db, &claims.tid, &claims.sub)
            .await?
            .ok_or_else(|| Error::unauthorized("you are no longer a member of this tenant; log in again"))?;
        let role = Role::parse(&role)
            .filter(|role| Role::MEMBER_ROLES.contains(role))
            .ok_or_else(|| Error::unauthorized("your membership has an unknown role; ask an owner to set it"))?;
        return Ok(Caller {
            tenant_id: claims.tid,
            user_id: Some(claims.sub),
            role,
            credential: Credential::Jwt { email },
            client_addr: None,
        });
    }
    if token.len() > 256 {
        return Err(Error::unauthorized("the API key is not valid"));
    }
    let key_hash = sha256_hex(token);
    // Before the lookup: if the key is evicted meanwhile, what was read is not cached.
    let generation = state.key_cache.generation();
    let cached = match state.key_cache.get(&key_hash) {
        Some(cached) => cached,
        None => {
            let key = accounts::find_api_key_by_hash(&state.db, &key_hash)
                .await?
                .ok_or_else(|| Error::unauthorized("the API key is not valid"))?;
            let cached = Arc::new(CachedKey::new(key));
            state.key_cache.put(cached.clone(), generation);
            cached
        }
    };
    let key = &cached.key;
    let now = db::now_ms();
    if key.revoked_at.is_some() {
        return Err(Error::unauthorized("the API key has been revoked"));
    }
    if key.expires_at.is_some_and(|expires| expires <= now) {
        return Err(Error::Unauthorized {
            code: "api_key_expired",
            message: "the API key has expired; create a new one".into(),
        });
    }
    let (Some(role), Some(_)) = (cached.role, &cached.scope) else {
        return Err(Error::unauthorized(
            "the API key's role or scope is not valid; create a new key",
        ));
    };
    if key.last_used_at.is_none_or(|used| now - used > TOUCH_INTERVAL_MS) {
        // Remember the touch in the cache too, so the next requests do not repeat it.
        let mut touched = key.clone();
        touched.last_used_at = Some(now);
        state.key_cache.put(Arc::new(CachedKey::new(touched)), generation);
        state.key_uses.mark(&key.id);
    }
    Ok(Caller {
        tenant_id: key.tenant_id.clone(),
        user_id: key.user_id.clone(),
        role,
        credential: Credential::ApiKey(cached.clone()),
        client_addr: None,
    })
}
