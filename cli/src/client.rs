//! The HTTP side: a blocking client for the public API that adds the caller's credential,
//! refreshes a stored login's access token when it has expired (or is refused once), and
//! turns the API's JSON errors into `Error::Api`.

use crate::credentials::{CredentialStore, Credentials};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use url::Url;

/// Longest answer read (a job's stdout and stderr are capped at 1 MiB each by default, and
/// JSON escaping can grow them).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every call is short (waiting is done by polling), so a stuck one is a fault.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Who the requests are made as.
pub enum Auth {
    /// Only for `/auth/login` and `/auth/logout`.
    Anonymous,
    /// `SCRIPTMESH_API_KEY`.
    ApiKey(String),
    /// `scriptmesh login`'s tokens, refreshed (and stored again) as needed.
    Session {
        credentials: Credentials,
        store: CredentialStore,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

/// `POST /auth/login` and `/auth/refresh` answer this.
#[derive(Debug, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
}

pub struct Client {
    base: Url,
    http: ureq::Agent,
    auth: Auth,
}

impl Client {
    pub fn new(base_url: &str, auth: Auth) -> Result<Client> {
        let base = parse_base_url(base_url)?;
        let config = ureq::Agent::config_builder()
            // Error answers carry the JSON the user needs to see; read them as answers.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .user_agent(concat!("scriptmesh-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            base,
            http: config.into(),
            auth,
        })
    }

    /// The orchestrator's URL as given (normalised, without a trailing slash).
    pub fn base_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    pub fn get(&mut self, path: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.call(Method::Get, path, query, None)
    }

    pub fn post(&mut self, path: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::Post, path, &[], Some(body))
    }

    pub fn patch(&mut self, path: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::Patch, path, &[], Some(body))
    }

    pub fn delete(&mut self, path: &[&str]) -> Result<Value> {
        self.call(Method::Delete, path, &[], None)
    }

    /// Opens a Server-Sent Events stream (`GET` with `Accept: text/event-stream`), resuming
    /// after `last_event_id`; the reader yields the stream's lines as they arrive, with no
    /// time limit. Refreshes a stored login as [`Client::get`] does.
    pub fn events(
        &mut self,
        path: &[&str],
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<impl std::io::BufRead> {
        let url = self.url(path, query)?;
        if matches!(&self.auth, Auth::Session { credentials, .. } if credentials.access_token_expired()) {
            self.refresh()?;
        }
        let http = self.http.clone();
        let open = |bearer: Option<&str>| {
            let mut request = http
                .get(url.as_str())
                .config()
                .timeout_global(None)
                .build()
                .header("Accept", "text/event-stream");
            if let Some(token) = bearer {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            if let Some(id) = last_event_id {
                request = request.header("Last-Event-ID", id);
            }
            request.call().map_err(|error| Error::Unreachable {
                url: url.origin().ascii_serialization(),
                detail: error.to_string(),
            })
        };
        let mut response = open(self.bearer())?;
        if response.status().as_u16() == 401 && matches!(self.auth, Auth::Session { .. }) {
            self.refresh()?;
            response = open(self.bearer())?;
        }
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .read_to_string()
                .unwrap_or_default();
            let answer = Answer {
                url: url.to_string(),
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
            };
            return Err(answer.into_result().err().unwrap_or(Error::UnexpectedResponse {
                url: url.to_string(),
                status,
                detail: "no event stream".into(),
            }));
        }
        Ok(std::io::BufReader::new(response.into_body().into_reader()))
    }

    /// `POST /auth/login`, into `tenant` (an id) for a member of several, else the home one.
    pub fn login(&self, email: &str, password: &str, tenant: Option<&str>) -> Result<TokenPair> {
        let url = self.url(&["auth", "login"], &[])?;
        let mut body = json!({"email": email, "password": password});
        if let Some(tenant) = tenant {
            body["tenant"] = json!(tenant);
        }
        let answer = self.send(Method::Post, &url, None, Some(&body))?;
        token_pair(&url, answer.into_result()?)
    }

    /// `POST /auth/accept-invite`: joins the invitation's tenant; the answer (tenant, role)
    /// and its token pair.
    pub fn accept_invite(&self, email: &str, code: &str, password: &str) -> Result<(Value, TokenPair)> {
        let url = self.url(&["auth", "accept-invite"], &[])?;
        let body = json!({"email": email, "code": code, "password": password});
        let answer = self.send(Method::Post, &url, None, Some(&body))?.into_result()?;
        let pair = token_pair(&url, answer.clone())?;
        Ok((answer, pair))
    }

    /// `POST /auth/change-password`: the server ends every other session and answers a
    /// fresh pair, which replaces the stored one.
    pub fn change_password(&mut self, current: &str, new: &str) -> Result<()> {
        let body = json!({"current_password": current, "new_password": new});
        let answer = self.call(Method::Post, &["auth", "change-password"], &[], Some(&body))?;
        let url = self.url(&["auth", "change-password"], &[])?;
        let pair = token_pair(&url, answer)?;
        match &mut self.auth {
            Auth::Session { credentials, store } => {
                credentials.access_token = pair.access_token;
                credentials.refresh_token = pair.refresh_token;
                credentials.expires_at = expiry(pair.expires_in);
                store.save(credentials)
            }
            _ => Ok(()),
        }
    }

    /// `POST /auth/logout`: ends the refresh token's session on the server.
    pub fn logout(&self, refresh_token: &str) -> Result<()> {
        let url = self.url(&["auth", "logout"], &[])?;
        self.send(Method::Post, &url, None, Some(&json!({"refresh_token": refresh_token})))?
            .into_result()
            .map(drop)
    }

    /// One API call with the caller's credential. A stored login whose access token has
    /// expired is refreshed first; one refused with 401 is refreshed and retried once.
    fn call(&mut self, method: Method, path: &[&str], query: &[(&str, String)], body: Option<&Value>) -> Result<Value> {
        let url = self.url(path, query)?;
        let mut refreshed = false;
        if matches!(&self.auth, Auth::Session { credentials, .. } if credentials.access_token_expired()) {
            self.refresh()?;
            refreshed = true;
        }
        let mut answer = self.send(method, &url, self.bearer(), body)?;
        if answer.status == 401 && matches!(self.auth, Auth::Session { .. }) && !refreshed {
            self.refresh()?;
            answer = self.send(method, &url, self.bearer(), body)?;
        }
        if answer.status == 401 {
            let error = answer.into_result().err();
            let message = match &error {
                Some(Error::Api { message, .. }) => message.clone(),
                _ => "401 Unauthorized".into(),
            };
            return Err(match self.auth {
                Auth::ApiKey(_) => Error::KeyRefused(message),
                Auth::Session { .. } => Error::SessionEnded(message),
                Auth::Anonymous => error.unwrap_or(Error::NotLoggedIn),
            });
        }
        answer.into_result()
    }

    fn bearer(&self) -> Option<&str> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::ApiKey(key) => Some(key),
            Auth::Session { credentials, .. } => Some(&credentials.access_token),
        }
    }

    /// `POST /auth/refresh` with the stored refresh token; stores the new pair (the old
    /// refresh token is spent: the server rotates them).
    fn refresh(&mut self) -> Result<()> {
        let url = self.url(&["auth", "refresh"], &[])?;
        let Auth::Session { credentials, store } = &mut self.auth else {
            return Ok(());
        };
        let _lock = store.lock()?;
        // Another command may have refreshed while this one waited for the lock: its pair
        // is the current one (ours is spent), and may not need refreshing again.
        if let Some(latest) = store.load()? {
            if latest.url == credentials.url && latest.refresh_token != credentials.refresh_token {
                *credentials = latest;
                if !credentials.access_token_expired() {
                    return Ok(());
                }
            }
        }
        let body = json!({"refresh_token": credentials.refresh_token});
        let answer = send(&self.http, Method::Post, &url, None, Some(&body))?;
        let pair = match answer.into_result() {
            Ok(body) => token_pair(&url, body)?,
            Err(Error::Api {
                status: 400 | 401,
                message,
                ..
            }) => return Err(Error::SessionEnded(message)),
            Err(other) => return Err(other),
        };
        credentials.access_token = pair.access_token;
        credentials.refresh_token = pair.refresh_token;
        credentials.expires_at = expiry(pair.expires_in);
        store.save(credentials)
    }

    fn send(&self, method: Method, url: &Url, bearer: Option<&str>, body: Option<&Value>) -> Result<Answer> {
        send(&self.http, method, url, bearer, body)
    }

    /// The base URL with `path`'s segments appended (each percent-encoded: names and ids
    /// come from the command line) and the query.
    fn url(&self, path: &[&str], query: &[(&str, String)]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::BadUrl {
                url: self.base_url(),
                detail: "it cannot have a path".into(),
            })?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
}

/// When an access token valid for `expires_in` seconds from now expires.
pub fn expiry(expires_in: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::seconds(i64::try_from(expires_in).unwrap_or(i64::MAX / 1000))
}

fn token_pair(url: &Url, body: Value) -> Result<TokenPair> {
    serde_json::from_value(body).map_err(|error| Error::UnexpectedResponse {
        url: url.to_string(),
        status: 200,
        detail: format!("not a token pair: {error}"),
    })
}

/// The URL as the client uses it, for comparing two spellings of one orchestrator.
pub fn normalize_url(text: &str) -> Result<String> {
    Ok(parse_base_url(text)?.as_str().trim_end_matches('/').to_owned())
}

/// `http://` or `https://` with a host; a trailing slash or none.
fn parse_base_url(text: &str) -> Result<Url> {
    let bad = |detail: &str| Error::BadUrl {
        url: text.to_owned(),
        detail: detail.to_owned(),
    };
    let url =
        Url::parse(text.trim()).map_err(|error| bad(&format!("{error} (expected e.g. http://127.0.0.1:8080)")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("it must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

/// A status and its JSON body (`Null` when empty).
struct Answer {
    url: String,
    status: u16,
    body: Value,
}

impl Answer {
    fn into_result(self) -> Result<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let error = &self.body["error"];
        match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => Err(Error::Api {
                status: self.status,
                code: code.to_owned(),
                message: message.to_owned(),
            }),
            _ => Err(Error::UnexpectedResponse {
                url: self.url,
                status: self.status,
                detail: "not a ScriptMesh error answer; is this the orchestrator's URL?".into(),
            }),
        }
    }
}

fn send(http: &ureq::Agent, method: Method, url: &Url, bearer: Option<&str>, body: Option<&Value>) -> Result<Answer> {
    let unreachable = |error: ureq::Error| Error::Unreachable {
        url: url.origin().ascii_serialization(),
        detail: error.to_string(),
    };
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let response = match method {
        Method::Get | Method::Delete => {
            let mut request = if method == Method::Get {
                http.get(url.as_str())
            } else {
                http.delete(url.as_str())
            };
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            request.header("Accept", "application/json").call()
        }
        Method::Post | Method::Patch => {
            let mut request = if method == Method::Post {
                http.post(url.as_str())
            } else {
                http.patch(url.as_str())
            }
            .header("Accept", "application/json");
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            match body {
                Some(body) => request.send_json(body),
                None => request.send_empty(),
            }
        }
    };
    let mut response = response.map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(unreachable)?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|_| Error::UnexpectedResponse {
            url: url.to_string(),
            status,
            detail: format!(
                "the answer is not JSON ({}); is this the orchestrator's URL?",
                text.chars().take(80).collect::<String>().trim()
            ),
        })?
    };
    Ok(Answer {
        url: url.to_string(),
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_and_encoded() {
        let client = Client::new("http://127.0.0.1:8080/", Auth::Anonymous).unwrap();
        let url = client.url(&["agents", "web 1/x"], &[]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/agents/web%201%2Fx");
        let client = Client::new("https://example.com/scriptmesh", Auth::Anonymous).unwrap();
        let url = client.url(&["jobs"], &[("status", "failed".into())]).unwrap();
        assert_eq!(url.as_str(), "https://example.com/scriptmesh/jobs?status=failed");
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        for bad in ["", "127.0.0.1:8080", "ftp://example.com", "http://", "http://h/?q=1"] {
            assert!(Client::new(bad, Auth::Anonymous).is_err(), "{bad}");
        }
    }
}
