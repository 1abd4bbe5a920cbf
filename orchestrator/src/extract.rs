//! Request extractors that answer bad input with the JSON error shape: a JSON body read
//! whatever Content-Type says (curl -d sends form encoding), with a size limit.

use crate::error::{Error, Result};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// Default body limit: 1 MiB.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// A JSON body of at most `LIMIT` bytes. Not JSON: 400 `invalid_json`; JSON of the wrong
/// shape: 422 `invalid_request`; too large: 413.
pub struct JsonBody<T, const LIMIT: usize = DEFAULT_LIMIT>(pub T);

impl<T: DeserializeOwned + 'static, const LIMIT: usize> FromRequest for JsonBody<T, LIMIT> {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > LIMIT) {
                return Err(too_large(LIMIT));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| Error::bad_request("invalid_body", format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > LIMIT {
                    return Err(too_large(LIMIT));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

fn too_large(limit: usize) -> Error {
    Error::PayloadTooLarge(format!("the body is larger than {} KiB", limit / 1024))
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "invalid_json",
            "the body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Error::InvalidRequest(format!("the JSON does not have the expected shape: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                Error::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

/// Trims a required text field and checks its length.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::Validation(format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(Error::Validation(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    Ok(value.to_owned())
}
