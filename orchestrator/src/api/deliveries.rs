//! Deliveries of the whole tenant: `/deliveries` (filter by `integration_id`,
//! `schedule_id`, `status`) and `/deliveries/{id}`, where schedules' webhook deliveries show.

use crate::auth::Caller;
use crate::db::integrations::DeliveryFilter;
use crate::error::{Error, Result};
use crate::integrations::service;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/deliveries").route(web::get().to(list)));
    cfg.service(web::resource("/deliveries/{id}").route(web::get().to(get)));
}

#[derive(Deserialize)]
struct ListQuery {
    integration_id: Option<String>,
    schedule_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(state: web::Data<AppState>, caller: Caller, query: web::Query<ListQuery>) -> Result<HttpResponse> {
    let query = query.into_inner();
    let filter = DeliveryFilter {
        integration_id: query.integration_id,
        schedule_id: query.schedule_id,
        status: query.status,
        before_id: query.cursor,
    };
    let page = service::deliveries_page(&state.db, &caller.tenant_id, filter, query.limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let delivery = crate::db::integrations::find_delivery(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("delivery {id}")))?;
    let attempts =
        crate::db::integrations::attempts_of(&state.db, &caller.tenant_id, std::slice::from_ref(&delivery.id)).await?;
    Ok(HttpResponse::Ok().json(service::delivery_view(&delivery, &attempts)))
}
