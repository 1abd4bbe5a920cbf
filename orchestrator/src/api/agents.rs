//! Agents as people see them: `/register-agent`, `/agents`, `/agents/{name}`, `/get-scripts`.

use crate::auth::Caller;
use crate::db;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::tenant::{self, messages};
use crate::views::{agent_scripts, agent_view};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared_protocol::protocol::RegisterAgentRequest;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/register-agent").route(web::post().to(register)));
    cfg.service(web::resource("/agents").route(web::get().to(list)));
    cfg.service(
        web::resource("/agents/{name}")
            .route(web::get().to(get))
            .route(web::delete().to(delete)),
    );
    cfg.service(web::resource("/get-scripts").route(web::get().to(get_scripts)));
}

/// Registration by a person (spec's manual registration) or by the agent at start-up.
async fn register(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<RegisterAgentRequest>,
) -> Result<HttpResponse> {
    let message = messages::Register {
        request,
        api_key_id: caller.api_key_id().map(str::to_owned),
    };
    let response = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(response))
}

/// `GET /agents`: an object keyed by agent name, as the spec's jq filters expect.
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let agents = db::agents::list(&state.db, &caller.tenant_id).await?;
    let by_name: Map<String, Value> = agents
        .iter()
        .map(|agent| (agent.name.clone(), agent_view(agent)))
        .collect();
    Ok(HttpResponse::Ok().json(by_name))
}

async fn get(state: web::Data<AppState>, caller: Caller, name: web::Path<String>) -> Result<HttpResponse> {
    let agent = db::agents::find(&state.db, &caller.tenant_id, &name)
        .await?
        .ok_or_else(|| Error::not_found(format!("agent {name}")))?;
    Ok(HttpResponse::Ok().json(agent_view(&agent)))
}

async fn delete(state: web::Data<AppState>, caller: Caller, name: web::Path<String>) -> Result<HttpResponse> {
    let name = name.into_inner();
    tenant::ask(
        &state.tenants,
        &caller.tenant_id,
        messages::DeleteAgent { name: name.clone() },
    )
    .await??;
    Ok(HttpResponse::Ok().json(json!({"status": "deleted", "agent": name})))
}

#[derive(Deserialize)]
struct ScriptsQuery {
    agent: String,
}

/// The scripts of the agent's manifest, as it last reported them.
async fn get_scripts(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ScriptsQuery>,
) -> Result<HttpResponse> {
    let agent = db::agents::find(&state.db, &caller.tenant_id, &query.agent)
        .await?
        .ok_or_else(|| Error::not_found(format!("agent {}", query.agent)))?;
    Ok(HttpResponse::Ok().json(json!({
        "agent": agent.name,
        "manifest_reported": agent.manifest_reported,
        "scripts": agent_scripts(&agent),
    })))
}
