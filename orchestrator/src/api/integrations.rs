//! Integrations: `/integrations`, `/integrations/{id}`, `/integrations/{id}/test` and
//! `/integrations/{id}/deliveries`. The rules live in `integrations::service`; test
//! deliveries go through the dispatcher like every other delivery.

use crate::auth::Caller;
use crate::db::integrations::DeliveryFilter;
use crate::error::Result;
use crate::extract::JsonBody;
use crate::integrations::service::{self, IntegrationPatch, NewIntegration};
use crate::integrations::SendTest;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/integrations")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    );
    cfg.service(
        web::resource("/integrations/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
    cfg.service(web::resource("/integrations/{id}/test").route(web::post().to(test)));
    cfg.service(web::resource("/integrations/{id}/deliveries").route(web::get().to(deliveries)));
}

async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewIntegration>,
) -> Result<HttpResponse> {
    let created = service::create(&state.db, &state.config, &caller.tenant_id, request).await?;
    let mut body = service::view(&created.integration);
    if let Some(secret) = created.generated_secret {
        body["secret"] = json!(secret);
        body["warning"] = json!("Store this signing secret securely. It will not be shown again.");
    }
    Ok(HttpResponse::Created().json(body))
}

async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let rows = crate::db::integrations::list(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(json!({"integrations": rows.iter().map(service::view).collect::<Vec<_>>()})))
}

async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let row = service::find(&state.db, &caller.tenant_id, &id).await?;
    Ok(HttpResponse::Ok().json(service::view(&row)))
}

async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    JsonBody(patch): JsonBody<IntegrationPatch>,
) -> Result<HttpResponse> {
    let row = service::update(&state.db, &state.config, &caller.tenant_id, &id, patch).await?;
    Ok(HttpResponse::Ok().json(service::view(&row)))
}

async fn delete(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete(&state.db, &caller.tenant_id, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "deleted", "id": id.into_inner()})))
}

/// Sends a test event now and answers how its one attempt went (200 either way: the test ran).
async fn test(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let message = SendTest {
        tenant_id: caller.tenant_id.clone(),
        integration_id: id.into_inner(),
    };
    let delivery = state.integrations.send(message).await??;
    let attempts =
        crate::db::integrations::attempts_of(&state.db, &caller.tenant_id, std::slice::from_ref(&delivery.id)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": delivery.status == crate::db::integrations::DELIVERED,
        "status": delivery.status,
        "response_code": delivery.last_response_code,
        "error": delivery.last_error,
        "delivery": service::delivery_view(&delivery, &attempts),
    })))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse> {
    let integration = service::find(&state.db, &caller.tenant_id, &id).await?;
    let query = query.into_inner();
    let filter = DeliveryFilter {
        integration_id: Some(integration.id),
        status: query.status,
        before_id: query.cursor,
        ..DeliveryFilter::default()
    };
    let page = service::deliveries_page(&state.db, &caller.tenant_id, filter, query.limit).await?;
    Ok(HttpResponse::Ok().json(page))
}
