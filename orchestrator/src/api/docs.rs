//! The OpenAPI 3 document, built from the very registrations the server serves, and the
//! pages that show it: `GET /openapi.json` and Swagger UI at `/docs` (assets embedded).

use crate::auth::permissions::{self, Access, Role};
use crate::error::ErrorBody;
use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, Content, OpenApi, RefOr, Response, Schema, Tag};
use utoipa::{PartialSchema, ToSchema};
use utoipa_actix_web::{AppExt, OpenApiFactory};

/// Security scheme names used in `#[utoipa::path(security(...))]`.
pub const BEARER: &str = "bearer";
pub const AGENT_KEY: &str = "agent_key";
pub const ACCESS_TOKEN: &str = "access_token";
pub const METRICS_TOKEN: &str = "metrics_token";

/// Pages that are deliberately not part of the API document.
pub const UNDOCUMENTED: &[&str] = &["/openapi.json", "/docs", "/docs/{asset}", "/", "/assets/{file}"];

/// Swagger UI needs inline styles and data: images; everything else comes from this server.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

type SchemaRefs = Vec<(String, RefOr<Schema>)>;

/// One path with its methods: each handler is served exactly at the path and methods of its
/// `#[utoipa::path]`, in one actix resource (so a method not documented answers 405), and the
/// same annotation goes into the document. Served and documented cannot drift apart.
///
/// Each method's access comes from the one permission table (`permissions::ENDPOINTS`):
/// it is attached to the resource for the `Caller` extractor to check, and written into the
/// document as `x-permission`. A route the table does not list stops start-up.
pub struct Endpoint {
    path: String,
    resource: actix_web::Resource,
    paths: Paths,
    schemas: SchemaRefs,
    access: RouteAccess,
}

/// The access each method of one resource needs, as the `Caller` extractor finds it in the
/// request's app data.
#[derive(Clone, Debug, Default)]
pub struct RouteAccess(Vec<(Method, Access)>);

impl RouteAccess {
    pub fn get(&self, method: &Method) -> Option<Access> {
        self.0.iter().find(|(m, _)| m == method).map(|(_, access)| *access)
    }
}

impl Endpoint {
    pub fn new<D, F, Args>(doc: D, handler: F) -> Endpoint
    where
        D: utoipa::Path + OpenApiFactory,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = D::path();
        Endpoint {
            resource: web::resource(path.as_str()),
            path,
            paths: Paths::new(),
            schemas: Vec::new(),
            access: RouteAccess::default(),
        }
        .and(doc, handler)
    }

    /// Another method of the same path.
    pub fn and<D, F, Args>(mut self, doc: D, handler: F) -> Endpoint
    where
        D: utoipa::Path + OpenApiFactory,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        assert_eq!(D::path(), self.path, "one Endpoint serves one path");
        let mut paths = doc.paths();
        for method in D::methods() {
            let method = actix_method(&method);
            let access = permissions::access(method.as_str(), &self.path).unwrap_or_else(|| {
                panic!(
                    "{method} {} has no entry in the permission table (auth::permissions::ENDPOINTS)",
                    self.path
                )
            });
            if let Some(operation) = paths
                .paths
                .get_mut(&self.path)
                .and_then(|item| operation_mut(item, &method))
            {
                document_access(operation, access);
            }
            self.access.0.push((method.clone(), access));
            self.resource = self.resource.route(web::method(method).to(handler.clone()));
        }
        self.paths.merge(paths);
        doc.schemas(&mut self.schemas);
        self
    }
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

fn operation_mut<'a>(item: &'a mut utoipa::openapi::PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::HEAD => item.head.as_mut(),
        Method::OPTIONS => item.options.as_mut(),
        Method::TRACE => item.trace.as_mut(),
        _ => None,
    }
}

/// `x-permission` on the operation, and a line in its description, from the table.
fn document_access(operation: &mut Operation, access: Access) {
    let (value, line) = match access {
        Access::Public => ("public".to_owned(), "Needs no credential.".to_owned()),
        Access::Authenticated => (
            "authenticated".to_owned(),
            "Needs any valid credential of the tenant.".to_owned(),
        ),
        Access::Requires(permission) => {
            let roles: Vec<&str> = Role::ALL
                .into_iter()
                .filter(|role| role.grants(permission))
                .map(|role| {
                    if role == Role::Agent {
                        "agent keys"
                    } else {
                        role.as_str()
                    }
                })
                .collect();
            let person = if permission.person_only() {
                " (a login token, not an API key)"
            } else {
                ""
            };
            (
                permission.as_str().to_owned(),
                format!("Needs `{permission}`{person}: {}.", roles.join(", ")),
            )
        }
    };
    operation
        .extensions
        .get_or_insert_with(Default::default)
        .insert("x-permission".into(), serde_json::Value::String(value));
    let description = operation.description.get_or_insert_with(String::new);
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&line);
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        self.resource.app_data(self.access).register(config)
    }
}

impl OpenApiFactory for Endpoint {
    fn paths(&self) -> Paths {
        self.paths.clone()
    }

    fn schemas(&self, schemas: &mut SchemaRefs) {
        schemas.extend(self.schemas.iter().cloned());
    }
}

/// The API document: what `api::configure` registers, plus info, security schemes, tags
/// and the error responses every operation can give.
pub fn openapi() -> OpenApi {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app()
        .configure(super::configure)
        .split_for_parts();
    doc.info.title = "ScriptMesh API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Run whitelisted scripts on a fleet of agents. Authenticate with \
         `Authorization: Bearer <access token or sm_live_ API key>`. Every error answer is \
         `{\"error\": {\"code\": \"snake_case_code\", \"message\": \"...\"}}`."
            .into(),
    );
    doc.info.license = None;
    doc.info.contact = None;
    let components = doc.components.get_or_insert_with(Components::new);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    components.schemas.extend(schemas);
    components.add_security_scheme(
        BEARER,
        bearer("A JWT access token from POST /auth/login, or an sm_live_ API key."),
    );
    components.add_security_scheme(
        AGENT_KEY,
        bearer("The agent's sm_live_ API key (agent endpoints refuse login tokens)."),
    );
    components.add_security_scheme(
        ACCESS_TOKEN,
        bearer("A JWT access token from POST /auth/login (API keys cannot manage API keys)."),
    );
    components.add_security_scheme(
        METRICS_TOKEN,
        bearer("The operator's METRICS_TOKEN, when it is set (GET /metrics is open otherwise)."),
    );
    doc.tags = Some(
        [
            ("health", "Is the orchestrator up?"),
            ("auth", "Accounts, email verification, tokens and API keys."),
            ("agents", "Agents as people see them."),
            ("jobs", "Running scripts and reading their results."),
            ("schedules", "Cron schedules."),
            ("integrations", "Notifications to Slack, PagerDuty, webhooks, ..."),
            ("deliveries", "Notification deliveries and their attempts."),
            ("metrics", "Prometheus scraping and the tenant's execution metrics."),
            (
                "agent protocol",
                "Endpoints the agent process calls (heartbeat, long-poll, results).",
            ),
        ]
        .into_iter()
        .map(|(name, description)| {
            let mut tag = Tag::new(name);
            tag.description = Some(description.into());
            tag
        })
        .collect(),
    );
    for item in doc.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ];
        let mut ids = std::collections::HashSet::new();
        for (method, operation) in operations {
            if let Some(operation) = operation {
                add_common_errors(operation);
                qualify_operation_id(operation, method, &mut ids);
            }
        }
    }
    doc
}

/// Handlers are named `list`, `get`, ... in each module: prefix the tag to make operation
/// ids unique (`jobs_list`, `schedules_list`), as OpenAPI requires; a handler serving
/// several methods of a path (GET and HEAD /health) gets the method appended after the first.
fn qualify_operation_id(operation: &mut Operation, method: &str, taken: &mut std::collections::HashSet<String>) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .map(|tag| tag.replace(' ', "_"));
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        let qualified = format!("{tag}_{id}");
        *id = if taken.insert(qualified.clone()) {
            qualified
        } else {
            format!("{qualified}_{method}")
        };
    }
}

fn bearer(description: &str) -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.into());
    SecurityScheme::Http(http)
}

/// Errors any operation of its kind can answer (the extractors give them), and the JSON
/// error body on every 4xx/5xx answer that does not name another one.
fn add_common_errors(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = operation.request_body.is_some();
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    };
    if secured {
        add(
            "401",
            "Missing, invalid or expired credentials (`unauthorized`, `token_expired`, ...).",
        );
    }
    if has_body {
        add("400", "The body is not JSON (`invalid_json`).");
        add("413", "The body is too large (`payload_too_large`).");
        add(
            "422",
            "The JSON has the wrong shape (`invalid_request`) or a value is refused (`validation_failed`).",
        );
    }
    add(
        "503",
        "The database is unavailable (`database_unavailable`); try again shortly.",
    );
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if status.starts_with(['4', '5']) && response.content.is_empty() {
            response.content.insert(
                "application/json".into(),
                RefOr::T(Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                ))))),
            );
        }
    }
}

/// `GET /openapi.json` (the document serialised once) and Swagger UI at `/docs/`.
pub fn pages(json: web::Bytes) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource("/openapi.json")
                .app_data(web::Data::new(json))
                .route(web::get().to(openapi_json)),
        );
        cfg.service(
            web::scope("/docs")
                .wrap(DefaultHeaders::new().add((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP))))
                .route("", web::get().to(to_docs_slash))
                .service(
                    utoipa_swagger_ui::SwaggerUi::new("/{_:.*}")
                        .config(utoipa_swagger_ui::Config::from("/openapi.json")),
                ),
        );
    }
}

async fn openapi_json(json: web::Data<web::Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json.get_ref().clone())
}

/// Swagger UI's page loads its assets relative to `/docs/`.
async fn to_docs_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API modules, read as source: the document is only complete if every route goes
    /// through `Endpoint` (an actix route registered any other way would be served but not
    /// documented).
    const API_SOURCES: &[(&str, &str)] = &[
        ("agent_protocol.rs", include_str!("agent_protocol.rs")),
        ("agents.rs", include_str!("agents.rs")),
        ("auth.rs", include_str!("auth.rs")),
        ("deliveries.rs", include_str!("deliveries.rs")),
        ("health.rs", include_str!("health.rs")),
        ("integrations.rs", include_str!("integrations.rs")),
        ("jobs.rs", include_str!("jobs.rs")),
        ("metrics.rs", include_str!("metrics.rs")),
        ("output.rs", include_str!("output.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("schedules.rs", include_str!("schedules.rs")),
    ];

    /// Ways to add a route to actix other than `Endpoint`.
    const RAW_ROUTING: &[&str] = &[
        "web::resource",
        "web::scope",
        "web::route",
        "Resource::new",
        "Scope::new",
        ".route(",
        "cfg.map(",
        "default_service",
        "#[get(",
        "#[post(",
        "#[put(",
        "#[patch(",
        "#[delete(",
        "#[route(",
        "scope(",
    ];

    #[test]
    fn api_modules_register_routes_only_through_endpoint() {
        let listed: Vec<&str> = API_SOURCES.iter().map(|(name, _)| *name).collect();
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api")).expect("src/api");
        for entry in on_disk {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(
                name == "docs.rs" || listed.contains(&name.as_str()),
                "add src/api/{name} to API_SOURCES"
            );
        }
        for (name, source) in API_SOURCES {
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            for pattern in RAW_ROUTING {
                assert!(
                    !code.contains(pattern),
                    "src/api/{name} routes with {pattern}: use docs::Endpoint"
                );
            }
            for (at, _) in code.match_indices("cfg.service(") {
                let rest = code[at + "cfg.service(".len()..].trim_start();
                assert!(
                    rest.starts_with("Endpoint::new("),
                    "src/api/{name}: cfg.service takes an Endpoint"
                );
            }
        }
    }

    /// Outside `api::configure` the server registers only the pages listed in UNDOCUMENTED.
    #[test]
    fn the_server_adds_no_undocumented_routes() {
        let server = include_str!("../server.rs");
        let raw: Vec<&str> = server
            .lines()
            .map(str::trim)
            .filter(|line| {
                [".service(", ".route(", "web::resource", "web::scope", ".configure("]
                    .iter()
                    .any(|p| line.contains(p))
            })
            .collect();
        assert_eq!(
            raw,
            [
                ".configure(api::configure)",
                ".configure(api::docs::pages(openapi_json.clone()))",
                ".configure(dashboard::routes)"
            ],
            "a route added in server.rs must be documented (through api::configure) or listed in UNDOCUMENTED"
        );
        let pages = include_str!("docs.rs");
        let pages =
            &pages[pages.find("pub fn pages").expect("pages")..pages.find("async fn openapi_json").expect("end")];
        for path in ["\"/openapi.json\"", "\"/docs\""] {
            assert!(pages.contains(path), "{path}");
        }
        let dashboard = include_str!("../dashboard.rs");
        for path in ["\"/\"", "\"/assets/{file}\""] {
            assert!(dashboard.contains(path), "{path}");
        }
        assert_eq!(
            UNDOCUMENTED,
            ["/openapi.json", "/docs", "/docs/{asset}", "/", "/assets/{file}"]
        );
    }

    #[test]
    fn the_document_covers_every_endpoint_with_errors_and_security() {
        let doc = openapi();
        let json = serde_json::to_value(&doc).expect("serialise");
        assert_eq!(json["info"]["title"], "ScriptMesh API");
        assert!(json["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = json["paths"].as_object().expect("paths");
        for path in UNDOCUMENTED {
            assert!(!paths.contains_key(*path), "{path}");
        }
        let get_job = &paths["/jobs/{job_id}"]["get"];
        assert_eq!(
            get_job["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(get_job["responses"]["401"].is_object());
        assert!(paths["/trigger-script"]["post"]["responses"]["422"].is_object());
        assert!(json["components"]["schemas"]["ErrorDetail"].is_object());
        assert!(json["components"]["schemas"]["JobView"].is_object());
        assert!(json["components"]["securitySchemes"]["bearer"].is_object());
        // The fan-out comparison: its query options (mask repeatable), 422, typed groups.
        let fan_out = &paths["/fan-out/{id}"]["get"];
        let params: Vec<(&str, &serde_json::Value)> = fan_out["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| (p["name"].as_str().unwrap_or_default(), p))
            .collect();
        let names: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["id", "groups", "mask", "ignore_trailing_whitespace", "context", "wait"]
        );
        let mask = params[2].1;
        assert_eq!(
            (&mask["in"], &mask["explode"]),
            (&"query".into(), &true.into()),
            "{mask}"
        );
        assert_eq!(mask["schema"]["type"], "array", "{mask}");
        assert!(fan_out["responses"]["422"].is_object());
        let schemas = &json["components"]["schemas"];
        assert!(schemas["FanOutStatus"]["properties"]["groups"].is_object());
        assert!(schemas["OutcomeGroup"]["properties"]["stdout_diff"].is_object());
        let mut ids = std::collections::BTreeSet::new();
        for item in paths.values() {
            for operation in item.as_object().expect("item").values() {
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
            }
        }
    }
}
