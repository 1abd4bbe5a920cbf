//! Integrations: `/integrations`, `/integrations/{id}`, `/integrations/{id}/test` and
//! `/integrations/{id}/deliveries`. The rules live in `integrations::service`; test
//! deliveries go through the dispatcher like every other delivery.

use crate::api::docs::Endpoint;
use crate::api::schedules::Deleted;
use crate::auth::Caller;
use crate::db::integrations::DeliveryFilter;
use crate::error::Result;
use crate::extract::JsonBody;
use crate::integrations::service::{
    self, DeliveryPage, DeliveryView, IntegrationPatch, IntegrationView, NewIntegration,
};
use crate::integrations::SendTest;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_list, list).and(__path_create, create));
    cfg.service(
        Endpoint::new(__path_get, get)
            .and(__path_update, update)
            .and(__path_delete, delete),
    );
    cfg.service(Endpoint::new(__path_test, test));
    cfg.service(Endpoint::new(__path_deliveries, deliveries));
}

/// `POST /integrations`: the integration, and for a webhook its signing secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationCreated {
    #[serde(flatten)]
    integration: IntegrationView,
    /// The generated webhook signing secret; shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// Create an integration.
///
/// Sends the events listed (`job.failed`, `job.succeeded`, ...) to Slack, Discord, Teams,
/// PagerDuty, Datadog, Splunk, Prometheus or a signed webhook.
#[utoipa::path(
    post, path = "/integrations", tag = "integrations",
    request_body = NewIntegration,
    responses(
        (status = 201, description = "Created", body = IntegrationCreated),
        (status = 409, description = "An integration with this name exists"),
        (status = 422, description = "Unknown type or event, bad settings, or a URL inside the network"),
    ),
    security(("bearer" = [])),
)]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewIntegration>,
) -> Result<HttpResponse> {
    let created = service::create(&state.db, &state.config, &caller.tenant_id, request).await?;
    caller.did(&state, "integration.create", created.integration.id.clone());
    let warning = created
        .generated_secret
        .as_ref()
        .map(|_| "Store this signing secret securely. It will not be shown again.");
    Ok(HttpResponse::Created().json(IntegrationCreated {
        integration: service::view(&created.integration),
        secret: created.generated_secret,
        warning,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationList {
    integrations: Vec<IntegrationView>,
}

/// List integrations.
#[utoipa::path(
    get, path = "/integrations", tag = "integrations",
    responses((status = 200, description = "The tenant's integrations", body = IntegrationList)),
    security(("bearer" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let rows = crate::db::integrations::list(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(IntegrationList {
        integrations: rows.iter().map(service::view).collect(),
    }))
}

/// One integration.
#[utoipa::path(
    get, path = "/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "The integration", body = IntegrationView),
        (status = 404, description = "No such integration in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let row = service::find(&state.db, &caller.tenant_id, &id).await?;
    Ok(HttpResponse::Ok().json(service::view(&row)))
}

/// Change an integration.
///
/// `config` fields are merged into the current settings (`null` removes an optional one; a
/// masked secret sent back as shown keeps the current one).
#[utoipa::path(
    patch, path = "/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "The integration's id")),
    request_body = IntegrationPatch,
    responses(
        (status = 200, description = "The integration as changed", body = IntegrationView),
        (status = 404, description = "No such integration in your tenant"),
        (status = 409, description = "An integration with this name exists"),
        (status = 422, description = "A value is refused"),
    ),
    security(("bearer" = [])),
)]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    JsonBody(patch): JsonBody<IntegrationPatch>,
) -> Result<HttpResponse> {
    let row = service::update(&state.db, &state.config, &caller.tenant_id, &id, patch).await?;
    caller.did(&state, "integration.update", row.id.clone());
    Ok(HttpResponse::Ok().json(service::view(&row)))
}

/// Delete an integration.
#[utoipa::path(
    delete, path = "/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such integration in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn delete(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete(&state.db, &caller.tenant_id, &id).await?;
    caller.did(&state, "integration.delete", id.as_str());
    Ok(HttpResponse::Ok().json(Deleted {
        status: "deleted",
        id: id.into_inner(),
    }))
}

/// `POST /integrations/{id}/test`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestOutcome {
    /// True when the receiver accepted the test event.
    ok: bool,
    status: String,
    response_code: Option<i32>,
    error: Option<String>,
    delivery: DeliveryView,
}

/// Send a test event.
///
/// Sends a test event now and answers how its one attempt went (200 either way: the test ran).
#[utoipa::path(
    post, path = "/integrations/{id}/test", tag = "integrations",
    params(("id" = String, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "How the attempt went", body = TestOutcome),
        (status = 404, description = "No such integration in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn test(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let message = SendTest {
        tenant_id: caller.tenant_id.clone(),
        integration_id: id.into_inner(),
    };
    let delivery = state.integrations.send(message).await??;
    caller.did(
        &state,
        "integration.test",
        delivery.integration_id.clone().unwrap_or_default(),
    );
    let attempts =
        crate::db::integrations::attempts_of(&state.db, &caller.tenant_id, std::slice::from_ref(&delivery.id)).await?;
    Ok(HttpResponse::Ok().json(TestOutcome {
        ok: delivery.status == crate::db::integrations::DELIVERED,
        delivery: service::delivery_view(&delivery, &attempts),
        status: delivery.status,
        response_code: delivery.last_response_code,
        error: delivery.last_error,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// pending, delivered or failed.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// An integration's deliveries, newest first.
#[utoipa::path(
    get, path = "/integrations/{id}/deliveries", tag = "integrations",
    params(("id" = String, Path, description = "The integration's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 404, description = "No such integration in your tenant"),
        (status = 422, description = "A bad status or limit"),
    ),
    security(("bearer" = [])),
)]
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
