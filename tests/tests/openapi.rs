//! The OpenAPI document at /openapi.json matches the routes the server serves (every
//! documented operation is served, no undocumented method is), names the spec's key
//! endpoints, and Swagger UI at /docs works from self-hosted assets only.

use scriptmesh_tests::{ApiResponse, Method, StatusCode, TestApp};
use serde_json::Value;
use std::collections::BTreeSet;

const ROUTER_404: &str = "no such endpoint; see /docs for the API";
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

async fn document(app: &TestApp) -> Value {
    let response = app.request(Method::GET, "/openapi.json").send().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        response.headers
    );
    response.body
}

/// `/jobs/{job_id}/cancel` -> `/jobs/openapi-dummy-id/cancel`.
fn fill_params(path: &str) -> String {
    let mut filled = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        filled.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        filled.push_str("openapi-dummy-id");
        rest = &rest[end + 1..];
    }
    filled.push_str(rest);
    filled
}

fn is_router_404(response: &ApiResponse) -> bool {
    response.status == StatusCode::NOT_FOUND && response.body["error"]["message"] == ROUTER_404
}

#[actix_rt::test]
async fn the_document_is_openapi_3_and_describes_the_api() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "ScriptMesh API");
    let (_, health) = app.get("/health", None).await;
    assert_eq!(doc["info"]["version"], health["version"], "{health}");

    // The spec's "Key endpoints" (/metrics/json is documented where it is added).
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/verify-email", "post"),
        ("/register-agent", "post"),
        ("/agents", "get"),
        ("/trigger-script", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/schedules", "get"),
        ("/schedules", "post"),
        ("/health", "get"),
        ("/agent/poll", "get"),
        ("/agent/poll", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }

    // Every operation says what it does, answers something, and every error answer it
    // names has the JSON error shape.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let name = format!("{method} {path}");
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no summary"
            );
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{name}: no tag"
            );
            // Every `{param}` of the path is a documented path parameter.
            let documented_params: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_path: Vec<&str> = path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(documented_params, in_path, "{name}: path parameters");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name}: no success answer"
            );
            for (status, response) in responses {
                if status.starts_with('4') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{name} {status}"
                    );
                }
            }
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(scheme), "{name}: unknown scheme {scheme}");
                }
            }
            if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(responses.contains_key("401"), "{name}: secured but no 401");
            }
        }
    }
    let error_body = &doc["components"]["schemas"]["ErrorBody"];
    assert!(error_body["properties"]["error"].is_object(), "{error_body}");
    let agent_ops = paths
        .iter()
        .filter(|(path, _)| path.starts_with("/agent/"))
        .flat_map(|(_, item)| item.as_object().expect("item").values());
    for operation in agent_ops {
        assert_eq!(operation["tags"][0], "agent protocol");
        assert!(operation["security"][0].get("agent_key").is_some(), "{operation}");
    }
    // Public endpoints take no credentials; the rest do.
    for (path, method) in [("/auth/login", "post"), ("/auth/register", "post"), ("/health", "get")] {
        assert!(paths[path][method]["security"].is_null(), "{method} {path}");
    }
    assert!(paths["/jobs"]["get"]["security"][0].get("bearer").is_some());
    assert!(paths["/auth/api-keys"]["post"]["security"][0]
        .get("access_token")
        .is_some());
}

#[actix_rt::test]
async fn every_documented_operation_is_served_and_no_other_method_is() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "only {} paths documented", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        let url = fill_params(path);
        let documented: BTreeSet<&str> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(String::as_str)
            .filter(|key| METHODS.contains(key))
            .collect();
        assert!(!documented.is_empty(), "{path} has no operation");
        for method in METHODS {
            let http_method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
            // No credentials and no body: a served route answers 401, 400 or similar, never
            // the router's 404 or 405.
            let response = app.request(http_method, &url).send().await;
            if documented.contains(method) {
                assert!(
                    !is_router_404(&response) && response.status != StatusCode::METHOD_NOT_ALLOWED,
                    "documented {method} {path} is not served: {} {}",
                    response.status,
                    response.text
                );
                assert!(
                    response.status.is_client_error() || response.status.is_success(),
                    "{method} {path}: {}",
                    response.status
                );
                checked += 1;
            } else {
                assert_eq!(
                    response.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "undocumented {method} {path} answers {}: {}",
                    response.status,
                    response.text
                );
            }
        }
    }
    assert!(checked >= 40, "only {checked} operations checked");

    // And a path nobody documented is the router's 404, as the check above relies on.
    let response = app.request(Method::GET, "/no/such/route").send().await;
    assert!(is_router_404(&response), "{} {}", response.status, response.text);
}

#[actix_rt::test]
async fn swagger_ui_is_served_from_local_assets_only() {
    let app = TestApp::start().await;

    let redirect = app.request(Method::GET, "/docs").send().await;
    assert!(redirect.status.is_redirection(), "{}", redirect.status);
    assert_eq!(redirect.header("location"), Some("/docs/"));

    let page = app.request(Method::GET, "/docs/").send().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let csp = page.header("content-security-policy").expect("a CSP header");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("http"), "the CSP allows no other origin: {csp}");

    let assets = referenced_assets(&page.text);
    for expected in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        assert!(
            assets.iter().any(|a| a.ends_with(expected)),
            "{expected} not in {assets:?}"
        );
    }
    for asset in &assets {
        assert!(!asset.contains("//"), "{asset} is not a local asset");
        let path = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/docs/{}", asset.trim_start_matches("./"))
        };
        let response = app.request(Method::GET, &path).send().await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        let content_type = response.header("content-type").unwrap_or_default();
        let expected = match path.rsplit('.').next() {
            Some("js") => "javascript",
            Some("css") => "text/css",
            Some("png") => "image/png",
            other => panic!("unexpected asset kind {other:?}: {path}"),
        };
        assert!(content_type.contains(expected), "{path}: {content_type}");
        assert!(response.header("content-security-policy").is_some(), "{path}");
    }

    // The initializer points Swagger UI at this server's document, nowhere else.
    let init = app.request(Method::GET, "/docs/swagger-initializer.js").send().await;
    assert!(init.text.contains("/openapi.json"), "{}", init.text);
    assert!(!init.text.contains("petstore"), "{}", init.text);
}

/// `src="..."` and `href="..."` values of an HTML page.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            let end = rest.find('"').expect("a closing quote");
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}
