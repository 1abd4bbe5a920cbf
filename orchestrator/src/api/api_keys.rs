//! `/auth/api-keys`: API keys with a role and a scope. An `agent` key speaks the agent
//! protocol for the agents its name patterns match and sees only them; an `operator` key may
//! be narrowed to agents carrying some tags and to some scripts. A key never exceeds its
//! creator's role, and only people (login tokens) create or revoke keys.

use crate::api::docs::Endpoint;
use crate::auth::permissions::{KeyScope, Role};
use crate::auth::{api_keys, sha256_hex, Caller};
use crate::db::models::ApiKey;
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::extract::{required_text, JsonBody};
use crate::state::AppState;
use crate::tenant::validate;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_protocol::ids::MAX_AGENT_NAME_LEN;
use utoipa_actix_web::service_config::ServiceConfig;

/// Most patterns, tags or scripts one key's scope lists.
const MAX_SCOPE_ENTRIES: usize = 100;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_create, create).and(__path_list, list));
    cfg.service(Endpoint::new(__path_revoke, revoke));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    name: String,
    /// Days until the key expires, 1 to 3650; none: it does not expire.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    expires_days: Option<i64>,
    /// `admin`, `operator` (the default), `viewer` or `agent`; at most the creator's role.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "agent")]
    role: Option<String>,
    /// For an `agent` key (and required there): the agent names it speaks for; `*`
    /// matches any run of characters (`prod-*`).
    #[serde(default)]
    #[schema(example = json!(["prod-*", "edge-1"]))]
    agents: Option<Vec<String>>,
    /// For an `operator` key: it may trigger on and fan out to agents carrying every one of
    /// these tags only.
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// For an `operator` key: it may run these scripts only.
    #[serde(default)]
    scripts: Option<Vec<String>>,
}

/// An API key as listed (never the key itself).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    id: String,
    name: String,
    /// The key's first characters, to recognise it.
    key_prefix: String,
    role: Role,
    /// The agent name patterns of an `agent` key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    agents: Vec<String>,
    /// The tags an `operator` key is narrowed to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    /// The scripts an `operator` key is narrowed to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scripts: Vec<String>,
    /// The email of the person who created it, if known.
    created_by: Option<String>,
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

fn key_view(key: &ApiKey, created_by: Option<String>) -> ApiKeyView {
    let scope: KeyScope = key
        .scope
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    ApiKeyView {
        id: key.id.clone(),
        name: key.name.clone(),
        key_prefix: key.key_prefix.clone(),
        // A role no key can have (changed by SQL) is shown as the least it could mean.
        role: Role::parse(&key.role).unwrap_or(Role::Viewer),
        agents: scope.agents,
        tags: scope.tags,
        scripts: scope.scripts,
        created_by,
        created_at: db::format_time(key.created_at),
        expires_at: db::format_time_opt(key.expires_at),
        last_used_at: db::format_time_opt(key.last_used_at),
    }
}

/// The key's role and scope from a request: checked against the role's rules and the
/// creator's own role.
fn role_and_scope(caller: &Caller, body: &CreateKeyRequest) -> Result<(Role, KeyScope)> {
    let role = match body.role.as_deref().map(str::trim) {
        None => Role::Operator,
        Some(text) => Role::parse(text)
            .filter(|role| Role::KEY_ROLES.contains(role))
            .ok_or_else(|| Error::Validation("role must be one of admin, operator, viewer, agent".into()))?,
    };
    if !role.within(caller.role) {
        return Err(Error::Forbidden {
            code: "permission_denied",
            message: format!(
                "a {} may not create a key with the {role} role: a key never exceeds its creator's role",
                caller.role
            ),
        });
    }
    let agents = match (&body.agents, role) {
        (Some(patterns), Role::Agent) if !patterns.is_empty() => agent_patterns(patterns)?,
        (_, Role::Agent) => {
            return Err(Error::Validation(
                "an agent key needs \"agents\": the agent names it speaks for, like [\"prod-*\", \"edge-1\"]".into(),
            ))
        }
        (Some(patterns), _) if !patterns.is_empty() => {
            return Err(Error::Validation("\"agents\" is for agent keys only".into()))
        }
        _ => Vec::new(),
    };
    let narrowed =
        body.tags.as_ref().is_some_and(|t| !t.is_empty()) || body.scripts.as_ref().is_some_and(|s| !s.is_empty());
    if narrowed && role != Role::Operator {
        return Err(Error::Validation(
            "\"tags\" and \"scripts\" narrow operator keys only".into(),
        ));
    }
    let tags = validate::tags(body.tags.as_deref().unwrap_or_default())?;
    let scripts = body.scripts.clone().unwrap_or_default();
    if scripts.len() > MAX_SCOPE_ENTRIES {
        return Err(Error::Validation(format!("at most {MAX_SCOPE_ENTRIES} scripts")));
    }
    for script in &scripts {
        validate::script_name(script)?;
    }
    Ok((role, KeyScope { agents, tags, scripts }))
}

/// Agent name patterns: agent names in which `*` may stand for any run of characters.
fn agent_patterns(patterns: &[String]) -> Result<Vec<String>> {
    if patterns.len() > MAX_SCOPE_ENTRIES {
        return Err(Error::Validation(format!("at most {MAX_SCOPE_ENTRIES} agent patterns")));
    }
    patterns
        .iter()
        .map(|pattern| {
            let pattern = pattern.trim();
            let valid = !pattern.is_empty()
                && pattern.len() <= MAX_AGENT_NAME_LEN
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'));
            if !valid {
                return Err(Error::Validation(format!(
                    "agent pattern {pattern:?} must be an agent name (letters, digits, '-', '_', '.') in which '*' matches anything, 1 to {MAX_AGENT_NAME_LEN} characters"
                )));
            }
            Ok(pattern.to_owned())
        })
        .collect()
}

/// Create an API key.
///
/// Needs a login token: API keys cannot create keys. The key is shown only in this answer.
/// An `agent` key is what an agent's host should hold: it can do that agent's work and
/// nothing else.
#[utoipa::path(
    post, path = "/auth/api-keys", tag = "auth",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created", body = ApiKeyCreated),
        (status = 403, description = "Called with an API key, or a role above the creator's (`permission_denied`)"),
        (status = 422, description = "A bad name, expiry, role or scope"),
    ),
    security(("access_token" = [])),
)]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateKeyRequest>,
) -> Result<HttpResponse> {
    let name = required_text("name", &body.name, 100)?;
    if let Some(days) = body.expires_days {
        if !(1..=3650).contains(&days) {
            return Err(Error::Validation(
                "expires_days must be a whole number from 1 to 3650".into(),
            ));
        }
    }
    let (role, scope) = role_and_scope(&caller, &body).map_err(|error| match error {
        Error::Forbidden { .. } => caller.refused(&state, "key.create", name.clone(), error),
        other => other,
    })?;
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
        role: role.as_str().to_owned(),
        scope: (!scope.is_empty()).then(|| serde_json::to_string(&scope)).transpose()?,
    };
    accounts::insert_api_key(&state.db, &key).await?;
    let detail = match &key.scope {
        Some(scope) => format!("{} ({role}, {scope})", key.name),
        None => format!("{} ({role})", key.name),
    };
    state
        .audit
        .record(caller.audit("key.create", key.id.clone(), crate::audit::Outcome::Ok, detail));
    let created_by = match &caller.credential {
        crate::auth::Credential::Jwt { email } => Some(email.clone()),
        crate::auth::Credential::ApiKey(_) => None,
    };
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        view: key_view(&key, created_by),
        key: raw,
        warning: "Store this key securely. It will not be shown again.",
    }))
}

/// List the tenant's API keys, with each key's role and scope.
#[utoipa::path(
    get, path = "/auth/api-keys", tag = "auth",
    responses((status = 200, description = "The keys (never the keys themselves)", body = Vec<ApiKeyView>)),
    security(("access_token" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let keys = accounts::list_api_keys_with_creators(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(
        keys.into_iter()
            .map(|(key, created_by)| key_view(&key, created_by))
            .collect::<Vec<_>>(),
    ))
}

/// Revoke an API key.
///
/// Needs a login token: API keys cannot revoke keys. Agents using the key stop working at
/// once, on every replica.
#[utoipa::path(
    delete, path = "/auth/api-keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 403, description = "Called with an API key (`permission_denied`)"),
        (status = 404, description = "No such key in your tenant"),
    ),
    security(("access_token" = [])),
)]
async fn revoke(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse> {
    let key_id = path.into_inner();
    if !accounts::revoke_api_key(&state.db, &caller.tenant_id, &key_id, db::now_ms()).await? {
        return Err(Error::not_found(format!("API key {key_id}")));
    }
    state.key_cache.evict(&key_id);
    caller.did(&state, "key.revoke", key_id.clone());
    Ok(HttpResponse::Ok().json(Revoked {
        status: "revoked",
        id: key_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_agent_names_with_stars() {
        assert_eq!(
            agent_patterns(&[" prod-* ".into(), "edge-1".into()]).unwrap(),
            ["prod-*", "edge-1"]
        );
        for bad in ["", "a b", "../x", "w?", &"x".repeat(200)] {
            assert!(agent_patterns(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
