//! Deliveries of the whole tenant: `/deliveries` (filter by `integration_id`,
//! `schedule_id`, `status`) and `/deliveries/{id}`, where schedules' webhook deliveries show.

use crate::api::docs::Endpoint;
use crate::auth::Caller;
use crate::db::integrations::DeliveryFilter;
use crate::error::{Error, Result};
use crate::integrations::service::{self, DeliveryPage, DeliveryView};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_list, list));
    cfg.service(Endpoint::new(__path_get, get));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this integration's deliveries.
    integration_id: Option<String>,
    /// Only this schedule's webhook deliveries.
    schedule_id: Option<String>,
    /// pending, delivered or failed.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List the tenant's deliveries, newest first.
#[utoipa::path(
    get, path = "/deliveries", tag = "deliveries",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 422, description = "A bad status or limit"),
    ),
    security(("bearer" = [])),
)]
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

/// One delivery and its attempts.
#[utoipa::path(
    get, path = "/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 404, description = "No such delivery in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let delivery = crate::db::integrations::find_delivery(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("delivery {id}")))?;
    let attempts =
        crate::db::integrations::attempts_of(&state.db, &caller.tenant_id, std::slice::from_ref(&delivery.id)).await?;
    Ok(HttpResponse::Ok().json(service::delivery_view(&delivery, &attempts)))
}
