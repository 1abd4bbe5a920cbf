//! The HTTP API: one module per resource. Handlers extract and authorise, then send one
//! message to the tenant's supervisor or call one service function, and map the result.

pub mod agent_protocol;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod deliveries;
pub mod docs;
pub mod health;
pub mod integrations;
pub mod jobs;
pub mod members;
pub mod metrics;
pub mod output;
pub mod paging;
pub mod schedules;

use crate::error::Error;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpResponse, ResponseError};
use utoipa_actix_web::service_config::ServiceConfig;

/// Every API route, each registered through `docs::Endpoint` so that it is in the OpenAPI
/// document too (see `docs::openapi`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| Error::InvalidRequest(format!("query string: {err}")).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|err, _| Error::InvalidRequest(format!("path: {err}")).into()))
    .configure(health::routes)
    .configure(auth::routes)
    .configure(api_keys::routes)
    .configure(members::routes)
    .configure(audit::routes)
    .configure(agents::routes)
    .configure(agent_protocol::routes)
    .configure(jobs::routes)
    .configure(output::routes)
    .configure(integrations::routes)
    .configure(deliveries::routes)
    .configure(schedules::routes)
    .configure(metrics::routes);
}

/// For routes that do not exist.
pub async fn not_found() -> HttpResponse {
    Error::NotFound("no such endpoint; see /docs for the API".into()).error_response()
}

/// Turns any error answer that is not already our JSON (a 405 from the router, a 413 from
/// a payload limit, ...) into the JSON error shape, with the same status.
pub fn json_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let error = match status {
        StatusCode::NOT_FOUND => Error::NotFound("no such endpoint; see /docs for the API".into()),
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed("this endpoint does not accept that method".into()),
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge("the body is too large".into()),
        StatusCode::UNAUTHORIZED => Error::unauthorized("authentication required"),
        StatusCode::FORBIDDEN => Error::forbidden("forbidden", "not allowed"),
        s if s.is_server_error() => Error::Internal(format!("unexpected {s} from the framework")),
        s => Error::bad_request("bad_request", format!("the request could not be handled ({s})")),
    };
    let mut response = error.error_response();
    *response.status_mut() = status;
    let (request, _) = res.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, response).map_into_right_body(),
    ))
}
