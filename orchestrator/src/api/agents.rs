//! Agents as people see them: `/register-agent`, `/agents`, `/agents/{name}`, `/get-scripts`.

use crate::api::docs::Endpoint;
use crate::auth::permissions::Permission;
use crate::auth::Caller;
use crate::db;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::tenant::{self, messages};
use crate::views::{agent_scripts, agent_view, AgentView};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_protocol::protocol::{RegisterAgentRequest, RegisterAgentResponse};
use shared_protocol::ManifestEntry;
use std::collections::BTreeMap;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_register, register));
    cfg.service(Endpoint::new(__path_list, list));
    cfg.service(Endpoint::new(__path_get, get).and(__path_delete, delete));
    cfg.service(Endpoint::new(__path_get_scripts, get_scripts));
}

/// Register an agent (or update its registration).
///
/// Called by the agent at start-up with its manifest, or by a person for a manual
/// registration (`url`, `api_key`). Registering an existing name updates it. A name bound
/// to another live API key can be taken over by an admin or owner only; for anyone else,
/// revoke the old key first (that is how a key is rotated).
#[utoipa::path(
    post, path = "/register-agent", tag = "agents",
    request_body = RegisterAgentRequest,
    responses(
        (status = 200, description = "Registered", body = RegisterAgentResponse),
        (status = 403, description = "An agent key whose patterns do not match the name (`outside_key_scope`)"),
        (status = 409, description = "The name is bound to another live API key (`agent_bound_to_other_key`)"),
    ),
    security(("bearer" = [])),
)]
async fn register(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<RegisterAgentRequest>,
) -> Result<HttpResponse> {
    let name = request.agent_name.trim().to_owned();
    caller
        .require_in_scope(caller.scope().allows_agent(&name), format_args!("agent {name}"))
        .map_err(|error| caller.refused(&state, "agent.register", name.clone(), error))?;
    let message = messages::Register {
        request,
        api_key_id: caller.api_key_id().map(str::to_owned),
        may_take_over: caller.role.grants(Permission::AgentsManage),
    };
    match tenant::ask(&state.tenants, &caller.tenant_id, message).await? {
        Ok(response) => {
            caller.did(&state, "agent.register", name);
            Ok(HttpResponse::Ok().json(response))
        }
        Err(error @ Error::Conflict { .. }) => Err(caller.refused(&state, "agent.register", name, error)),
        Err(error) => Err(error),
    }
}

/// List the tenant's agents.
///
/// An object keyed by agent name, as the spec's jq filters expect.
#[utoipa::path(
    get, path = "/agents", tag = "agents",
    responses((status = 200, description = "Agents by name", body = BTreeMap<String, AgentView>)),
    security(("bearer" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let agents = db::agents::list(&state.db, &caller.tenant_id).await?;
    // An agent key sees the agents it speaks for only.
    let scope = caller.scope();
    let by_name: BTreeMap<String, AgentView> = agents
        .iter()
        .filter(|agent| scope.allows_agent(&agent.name))
        .map(|agent| (agent.name.clone(), agent_view(agent)))
        .collect();
    Ok(HttpResponse::Ok().json(by_name))
}

/// One agent.
#[utoipa::path(
    get, path = "/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 404, description = "No such agent in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn get(state: web::Data<AppState>, caller: Caller, name: web::Path<String>) -> Result<HttpResponse> {
    let agent = db::agents::find(&state.db, &caller.tenant_id, &name)
        .await?
        .filter(|agent| caller.scope().allows_agent(&agent.name))
        .ok_or_else(|| Error::not_found(format!("agent {name}")))?;
    Ok(HttpResponse::Ok().json(agent_view(&agent)))
}

/// Remove an agent.
///
/// Its pending jobs are cancelled; the agent may register again.
#[utoipa::path(
    delete, path = "/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "The agent's name")),
    responses(
        (status = 200, description = "Deleted", body = AgentDeleted),
        (status = 404, description = "No such agent in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn delete(state: web::Data<AppState>, caller: Caller, name: web::Path<String>) -> Result<HttpResponse> {
    let name = name.into_inner();
    tenant::ask(
        &state.tenants,
        &caller.tenant_id,
        messages::DeleteAgent { name: name.clone() },
    )
    .await??;
    caller.did(&state, "agent.delete", name.clone());
    Ok(HttpResponse::Ok().json(AgentDeleted {
        status: "deleted",
        agent: name,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentDeleted {
    #[schema(example = "deleted")]
    status: &'static str,
    agent: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ScriptsQuery {
    /// The agent's name.
    agent: String,
}

/// `GET /get-scripts`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentScripts {
    agent: String,
    /// False for a manual registration the agent has not confirmed yet (no manifest known).
    manifest_reported: bool,
    scripts: Vec<ManifestEntry>,
}

/// The scripts an agent may run (its manifest, as last reported).
#[utoipa::path(
    get, path = "/get-scripts", tag = "agents",
    params(ScriptsQuery),
    responses(
        (status = 200, description = "The agent's scripts", body = AgentScripts),
        (status = 404, description = "No such agent in your tenant"),
        (status = 422, description = "`agent` is missing"),
    ),
    security(("bearer" = [])),
)]
async fn get_scripts(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScriptsQuery>,
) -> Result<HttpResponse> {
    let agent = db::agents::find(&state.db, &caller.tenant_id, &query.agent)
        .await?
        .filter(|agent| caller.scope().allows_agent(&agent.name))
        .ok_or_else(|| Error::not_found(format!("agent {}", query.agent)))?;
    Ok(HttpResponse::Ok().json(AgentScripts {
        scripts: agent_scripts(&agent),
        agent: agent.name,
        manifest_reported: agent.manifest_reported,
    }))
}
