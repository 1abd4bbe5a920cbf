//! The `Caller` extractor: who is making this request, from `Authorization: Bearer ...`
//! (a JWT access token or an `sm_live_` API key), and in which tenant.

use super::key_use::TOUCH_INTERVAL_MS;
use super::{api_keys, sha256_hex};
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::state::AppState;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Jwt,
    ApiKey { key_id: String },
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant_id: String,
    /// The user behind the token or the key's creator.
    pub user_id: Option<String>,
    pub role: String,
    pub credential: Credential,
}

impl Caller {
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::ApiKey { key_id } => Some(key_id),
            Credential::Jwt => None,
        }
    }
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Caller>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::Internal("application state missing".into()))?;
            let token = token?;
            authenticate(&state, &token).await
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

pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller> {
    if !api_keys::looks_like_key(token) {
        let claims = state.jwt.verify_access(token)?;
        return Ok(Caller {
            tenant_id: claims.tid,
            user_id: Some(claims.sub),
            role: claims.role,
            credential: Credential::Jwt,
        });
    }
    if token.len() > 256 {
        return Err(Error::unauthorized("the API key is not valid"));
    }
    let key_hash = sha256_hex(token);
    // Before the lookup: if the key is evicted meanwhile, what was read is not cached.
    let generation = state.key_cache.generation();
    let key = match state.key_cache.get(&key_hash) {
        Some(key) => key,
        None => {
            let key = accounts::find_api_key_by_hash(&state.db, &key_hash)
                .await?
                .ok_or_else(|| Error::unauthorized("the API key is not valid"))?;
            state.key_cache.put(key.clone(), generation);
            key
        }
    };
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
    if key.last_used_at.is_none_or(|used| now - used > TOUCH_INTERVAL_MS) {
        // Remember the touch in the cache too, so the next requests do not repeat it.
        let mut touched = key.clone();
        touched.last_used_at = Some(now);
        state.key_cache.put(touched, generation);
        state.key_uses.mark(&key.id);
    }
    Ok(Caller {
        tenant_id: key.tenant_id,
        user_id: key.user_id,
        role: "member".into(),
        credential: Credential::ApiKey { key_id: key.id },
    })
}
