//! The middleware that counts and times HTTP requests. Requests are labelled with the
//! route PATTERN that matched (`/jobs/{id}`), never the raw path: raw paths carry ids and
//! would make the label set unbounded.

use super::Metrics;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use std::time::Instant;

/// The `route` of requests no route matched (404s of the default service).
pub const UNMATCHED: &str = "unmatched";

/// Wrap the app with `actix_web::middleware::from_fn(track_requests)`, outermost, and put
/// the server's [`Metrics`] in its app data (`App::app_data(metrics)`).
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<Metrics>().cloned();
    let method = method_label(req.method());
    let started = Instant::now();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let elapsed = started.elapsed();
        match &result {
            // After routing, the matched pattern is looked up by the resource's position,
            // without matching the path again.
            Ok(response) => {
                let route = response.request().match_pattern();
                let status = response.status();
                metrics.http_request(method, route.as_deref().unwrap_or(UNMATCHED), status.as_str(), elapsed);
            }
            // Handler and extractor errors arrive as responses; only a middleware's own
            // error gets here, and its request (with its route) is gone.
            Err(error) => {
                let status = error.as_response_error().status_code();
                metrics.http_request(method, UNMATCHED, status.as_str(), elapsed);
            }
        }
    }
    result
}

/// Methods outside the standard set share one label, so a client inventing methods cannot
/// grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpResponse};
    use prometheus::TextEncoder;

    fn exposition(metrics: &Metrics) -> String {
        TextEncoder::new()
            .encode_to_string(&metrics.inner.registry.gather())
            .unwrap()
    }

    #[actix_web::test]
    async fn requests_are_labelled_with_their_route_pattern() {
        let metrics = Metrics::new().unwrap();
        let app = test::init_service(
            App::new()
                .app_data(metrics.clone())
                .wrap(from_fn(track_requests))
                .service(web::resource("/jobs/{id}").route(web::get().to(HttpResponse::Ok)))
                .service(
                    web::scope("/agent")
                        .service(web::resource("/jobs/{id}/start").route(web::post().to(HttpResponse::Conflict))),
                )
                .default_service(web::to(HttpResponse::NotFound)),
        )
        .await;
        for (method, path) in [
            (Method::GET, "/jobs/job_1"),
            (Method::GET, "/jobs/job_2"),
            (Method::POST, "/agent/jobs/job_3/start"),
            (Method::GET, "/no/such/tenant_secret_path"),
            (Method::DELETE, "/jobs/job_4"),
            (Method::from_bytes(b"BREW").unwrap(), "/jobs/job_5"),
        ] {
            let request = test::TestRequest::default().method(method).uri(path).to_request();
            let _ = test::call_service(&app, request).await;
        }
        let out = exposition(&metrics);
        let count = |labels: &str| format!("scriptmesh_http_requests_total{{{labels}}}");
        assert!(
            out.contains(&format!(
                "{} 2",
                count("method=\"GET\",route=\"/jobs/{id}\",status=\"200\"")
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{} 1",
                count("method=\"POST\",route=\"/agent/jobs/{id}/start\",status=\"409\"")
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{} 1",
                count("method=\"GET\",route=\"unmatched\",status=\"404\"")
            )),
            "{out}"
        );
        // A known route with a method it does not take: the pattern, and the router's 405.
        assert!(
            out.contains(&format!(
                "{} 1",
                count("method=\"DELETE\",route=\"/jobs/{id}\",status=\"405\"")
            )),
            "{out}"
        );
        assert!(out.contains("method=\"OTHER\""), "{out}");
        assert!(
            out.contains("scriptmesh_http_request_duration_seconds_count{method=\"GET\",route=\"/jobs/{id}\"} 2"),
            "{out}"
        );
        for raw in ["job_1", "job_3", "tenant_secret_path", "BREW"] {
            assert!(!out.contains(raw), "raw path or method {raw} leaked into labels: {out}");
        }
    }
}
