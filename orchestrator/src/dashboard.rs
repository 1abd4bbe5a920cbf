//! The web dashboard: plain HTML, CSS and JavaScript embedded in the binary (no separate
//! front-end build, no CDN), served at `/` and `/assets/{file}` with strict security headers.

use crate::error::Error;
use actix_web::http::header::{self, HeaderValue, IF_NONE_MATCH};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Scripts, styles, images and API calls only from this origin; no inline scripts or styles,
/// no plugins, no framing: script output shown in the page can never run as code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Asset names carry no content hash, so browsers revalidate every time (a cheap 304 thanks
/// to the ETag) rather than mixing files of two versions after an upgrade.
const CACHE_CONTROL: &str = "no-cache";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../dashboard/", $name)),
        }
    };
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("auth.js", "text/javascript; charset=utf-8"),
    asset!("agents.js", "text/javascript; charset=utf-8"),
    asset!("jobs.js", "text/javascript; charset=utf-8"),
    asset!("run.js", "text/javascript; charset=utf-8"),
    asset!("fanout.js", "text/javascript; charset=utf-8"),
    asset!("schedules.js", "text/javascript; charset=utf-8"),
    asset!("settings.js", "text/javascript; charset=utf-8"),
    asset!("members.js", "text/javascript; charset=utf-8"),
    asset!("audit.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Strong ETags (a hash of the exact bytes), computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS)
        .map(|asset| format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..32]))
        .collect()
});

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(index)));
    cfg.service(web::resource("/assets/{file}").route(web::get().to(asset)));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX, &ETAGS[0])
}

async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().position(|asset| asset.name == file.as_str()) {
        Some(position) => serve(&req, &ASSETS[position], &ETAGS[position + 1]),
        None => Error::not_found(format!("dashboard asset {file}")).error_response(),
    }
}

fn serve(req: &HttpRequest, asset: &Asset, etag: &str) -> HttpResponse {
    let unchanged = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| candidate.trim() == etag || candidate.trim() == "*");
    if unchanged {
        return with_headers(HttpResponse::NotModified(), etag).finish();
    }
    with_headers(HttpResponse::Ok(), etag)
        .content_type(asset.content_type)
        .body(asset.body)
}

fn with_headers(mut builder: HttpResponseBuilder, etag: &str) -> HttpResponseBuilder {
    builder
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        let index = std::str::from_utf8(INDEX.body).unwrap();
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            assert!(!text.is_empty(), "{} is empty", asset.name);
        }
        // Every module imported by another module is served.
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for import in text.split("from \"./").skip(1) {
                let name = &import[..import.find('"').unwrap()];
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name}, which is not embedded",
                    asset.name
                );
            }
        }
        assert!(index.contains("/assets/app.js"));
        assert!(!index.contains("<script>"), "no inline scripts (the CSP forbids them)");
    }

    #[test]
    fn etags_are_strong_and_distinct() {
        assert_eq!(ETAGS.len(), ASSETS.len() + 1);
        let mut seen = std::collections::HashSet::new();
        for etag in ETAGS.iter() {
            assert!(etag.starts_with('"') && !etag.starts_with("W/"));
            assert!(seen.insert(etag.clone()));
        }
    }
}
