//! `TestApp`: one real orchestrator process on 127.0.0.1 with its own database, its own
//! SMTP sink and a known JWT secret, plus helpers that read like the spec's flows.

use crate::database::TestDatabase;
use crate::http::{self, ApiResponse, Method, RequestBuilder, StatusCode};
use crate::process::{ChildProcess, Launch, StartFailure};
use crate::smtp::SmtpSink;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

/// The password every helper registers with (long enough for the 10-character rule).
pub const TEST_PASSWORD: &str = "correct horse battery staple";

const READY_PREFIX: &str = "scriptmesh-orchestrator listening on ";
/// How long `stop` waits for a graceful exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where Cargo put one of this package's binaries: `target/<profile>/<name>`, next to the
/// `deps/` folder holding the test executable (the same file `env!("CARGO_BIN_EXE_<name>")`
/// names in an integration test).
pub fn binary_path(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test executable's path");
    let profile_dir = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} does not exist; run the suite with `cargo test` so Cargo builds the bins of scriptmesh-tests",
        path.display()
    );
    path
}

/// A logged-in user, as `register_and_login` leaves it.
#[derive(Clone, Debug)]
pub struct Session {
    pub email: String,
    pub password: String,
    pub user_id: String,
    pub tenant_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl Session {
    /// For `RequestBuilder::bearer` and the `token` argument of the shorthands.
    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }
}

/// The 201 answer to `POST /auth/api-keys`.
#[derive(Clone, Debug)]
pub struct CreatedApiKey {
    pub id: String,
    /// The secret `sm_live_...` key, shown only at creation.
    pub key: String,
    pub body: Value,
}

/// Options for `TestApp::builder()`.
pub struct TestAppBuilder {
    env: Vec<(String, String)>,
}

impl TestAppBuilder {
    /// Sets (or overrides) a variable for the orchestrator, e.g. `AUTH_RATE_LIMIT_PER_MINUTE`.
    /// An empty value is as good as unset for the orchestrator.
    pub fn env(mut self, name: &str, value: &str) -> TestAppBuilder {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Leaves a variable out entirely, e.g. `JWT_SECRET` to test the generated one.
    pub fn without_env(mut self, name: &str) -> TestAppBuilder {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), String::new()));
        self
    }

    pub async fn start(self) -> TestApp {
        self.try_start().await.unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Like `start`, but hands back a start-up failure (for configuration tests).
    pub async fn try_start(self) -> Result<TestApp, StartFailure> {
        TestApp::start_with(self.env).await
    }
}

/// A running orchestrator. Killed (and its PostgreSQL database dropped) when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, without a trailing slash. Stays the same across restarts.
    pub url: String,
    pub port: u16,
    /// The JWT_SECRET it runs with, for minting tokens (see `sign_jwt`); empty when a test
    /// removed the variable.
    pub jwt_secret: String,
    /// Where its email goes.
    pub smtp: SmtpSink,
    process: Option<ChildProcess>,
    env: Vec<(String, String)>,
    program: PathBuf,
    log_path: PathBuf,
    // Dropped after the process is killed (see `Drop`), and the directories last. Replicas
    // share the database (and the directory a SQLite file lives in) with the first app.
    database: Arc<TestDatabase>,
    database_dir: Arc<tempfile::TempDir>,
    dir: tempfile::TempDir,
}

impl TestApp {
    /// An orchestrator with the default test configuration.
    pub async fn start() -> TestApp {
        Self::builder().start().await
    }

    /// For environment overrides: `TestApp::builder().env("X", "1").start().await`.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder { env: Vec::new() }
    }

    async fn start_with(overrides: Vec<(String, String)>) -> Result<TestApp, StartFailure> {
        let database_dir = Arc::new(temporary_directory());
        let database = Arc::new(TestDatabase::create(database_dir.path()).await);
        Self::start_on(database, database_dir, overrides).await
    }

    /// Another orchestrator process on this app's database, with its JWT secret and
    /// variables: a replica, as behind a load balancer. On SQLite it is refused (SQLite is
    /// the one-process default), which `try_start_replica` hands back.
    pub async fn start_replica(&self) -> TestApp {
        self.try_start_replica()
            .await
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    pub async fn try_start_replica(&self) -> Result<TestApp, StartFailure> {
        let mut overrides: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "BIND_ADDR" | "DATABASE_URL" | "SMTP_URL"))
            .cloned()
            .collect();
        if self.jwt_secret.is_empty() {
            // The first app generated its secret (kept in the database): so does this one.
            overrides.push(("JWT_SECRET".into(), String::new()));
        }
        Self::start_on(self.database.clone(), self.database_dir.clone(), overrides).await
    }

    async fn start_on(
        database: Arc<TestDatabase>,
        database_dir: Arc<tempfile::TempDir>,
        overrides: Vec<(String, String)>,
    ) -> Result<TestApp, StartFailure> {
        let dir = temporary_directory();
        let smtp = SmtpSink::start();
        let jwt_secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
        let mut env: Vec<(String, String)> = [
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", database.url()),
            ("JWT_SECRET", &jwt_secret),
            ("SMTP_URL", &smtp.url()),
            ("EMAIL_FROM", "scriptmesh@test.local"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            // The lowest bcrypt cost: hashing at the production cost would dominate the
            // suite's run time and proves nothing more.
            ("BCRYPT_COST", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in overrides {
            env.retain(|(key, _)| *key != name);
            if !value.is_empty() {
                env.push((name, value));
            }
        }
        // An overridden secret is the one to sign with; a removed one is unknown (empty).
        let jwt_secret = env
            .iter()
            .find(|(key, _)| key == "JWT_SECRET")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let mut app = TestApp {
            url: String::new(),
            port: 0,
            jwt_secret,
            smtp,
            process: None,
            env,
            program: binary_path("sm-test-orchestrator"),
            log_path: dir.path().join("orchestrator.log"),
            database,
            database_dir,
            dir,
        };
        app.launch().await?;
        Ok(app)
    }

    /// Starts the process with `self.env`; the first start picks the port, later ones reuse it.
    async fn launch(&mut self) -> Result<(), StartFailure> {
        let mut env = self.env.clone();
        if self.port != 0 {
            env.retain(|(key, _)| key != "BIND_ADDR");
            env.push(("BIND_ADDR".into(), format!("127.0.0.1:{}", self.port)));
        }
        let (process, url) = ChildProcess::start(Launch {
            label: "orchestrator",
            program: &self.program,
            env: &env,
            log_path: &self.log_path,
            ready_prefix: READY_PREFIX,
        })
        .await?;
        let port = url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in the ready line's address {url:?}"));
        self.url = url.trim_end_matches('/').to_owned();
        self.port = port;
        self.process = Some(process);
        Ok(())
    }

    /// Kills the orchestrator (SIGKILL, as a crash would) and starts it again on the same
    /// port and database; agents keep the same URL. Also starts a stopped one.
    pub async fn restart(&mut self) {
        self.kill();
        // The freed port may be taken for a moment by another test's socket (the kernel
        // hands out ports from the same range for `:0` binds): retry while it is in use.
        let mut attempts = 0;
        loop {
            match self.launch().await {
                Ok(()) => return,
                Err(failure) if attempts < 40 && failure.stderr.contains("in use") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    /// Starts it again with changed variables (same port and database).
    pub async fn restart_with_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(key, _)| key != name);
        if !value.is_empty() {
            self.env.push((name.to_owned(), value.to_owned()));
        }
        self.restart().await;
    }

    /// SIGKILL: the orchestrator vanishes as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGTERM, then waits (SIGKILL after 10 s). `None` if it had to be killed.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        match self.process.take() {
            Some(mut process) => process.stop(STOP_GRACE).await,
            None => None,
        }
    }

    /// Whether the process is alive (it has not been stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|process| process.try_wait().is_none())
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::id)
    }

    /// The test's temporary directory (deleted when the app is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the orchestrator printed so far (stdout and stderr, every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        self.database.backend_name()
    }

    /// The DATABASE_URL the orchestrator uses.
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    // ----- database -------------------------------------------------------------------

    /// Runs a statement on the orchestrator's database; returns the rows changed. Times
    /// are BIGINT milliseconds since the Unix epoch (see `now_ms`).
    pub async fn exec_sql(&self, sql: &str) -> usize {
        self.database.exec(sql).await
    }

    /// `SELECT <whole number> AS value ...` (cast INTEGER columns to BIGINT for PostgreSQL).
    pub async fn query_i64(&self, sql: &str) -> Vec<Option<i64>> {
        self.database.query_i64(sql).await
    }

    /// `SELECT <text> AS value ...`.
    pub async fn query_text(&self, sql: &str) -> Vec<Option<String>> {
        self.database.query_text(sql).await
    }

    // ----- HTTP -----------------------------------------------------------------------

    /// A request to `path` (e.g. "/auth/me") to finish and `send()`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(method, &self.url, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let response = self.request(Method::GET, path).bearer(token).send().await;
        (response.status, response.body)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> (StatusCode, Value) {
        let response = self.request(Method::POST, path).bearer(token).json(body).send().await;
        (response.status, response.body)
    }

    pub async fn put_json(&self, path: &str, body: &Value, token: Option<&str>) -> (StatusCode, Value) {
        let response = self.request(Method::PUT, path).bearer(token).json(body).send().await;
        (response.status, response.body)
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let response = self.request(Method::DELETE, path).bearer(token).send().await;
        (response.status, response.body)
    }

    /// Sends these exact bytes as one HTTP/1.1 request (see `http::send_raw`). Include
    /// `Connection: close` so the server ends the response by closing the connection.
    pub async fn send_raw(&self, request: &[u8]) -> ApiResponse {
        http::send_raw(&self.address(), request).await
    }

    /// Signs any claims with the app's JWT_SECRET (HS256), e.g. an already expired token.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(self.jwt_secret.as_bytes()),
        )
        .expect("sign the test JWT")
    }

    // ----- flows ----------------------------------------------------------------------

    /// `POST /auth/register` with `TEST_PASSWORD`; asserts 201 and returns the body.
    pub async fn register(&self, email: &str) -> Value {
        let (status, body) = self
            .post_json(
                "/auth/register",
                &json!({"email": email, "password": TEST_PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {email}: {body}");
        body
    }

    /// Reads the latest code sent to `email` and confirms it; asserts 200.
    pub async fn verify_email(&self, email: &str) {
        let code = self.smtp.wait_for_code(email).await;
        let (status, body) = self
            .post_json("/auth/verify-email", &json!({"email": email, "code": code}), None)
            .await;
        assert_eq!(status, StatusCode::OK, "verify {email} with {code}: {body}");
    }

    /// `POST /auth/login`; asserts 200 and returns the session.
    pub async fn login(&self, email: &str, password: &str) -> Session {
        let (status, body) = self
            .post_json("/auth/login", &json!({"email": email, "password": password}), None)
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        let (_, me) = self.get("/auth/me", body["access_token"].as_str()).await;
        Session {
            email: email.to_lowercase(),
            password: password.to_owned(),
            user_id: me["user"]["id"].as_str().unwrap_or_default().to_owned(),
            tenant_id: me["tenant"]["id"].as_str().unwrap_or_default().to_owned(),
            access_token: text_field(&body, "access_token"),
            refresh_token: text_field(&body, "refresh_token"),
        }
    }

    /// Register -> read the code from the SMTP sink -> verify -> login: a new user in a
    /// new tenant.
    pub async fn register_and_login(&self, email: &str) -> Session {
        let registered = self.register(email).await;
        self.verify_email(email).await;
        let session = self.login(email, TEST_PASSWORD).await;
        assert_eq!(
            (session.user_id.as_str(), session.tenant_id.as_str()),
            (
                registered["user_id"].as_str().unwrap_or_default(),
                registered["tenant_id"].as_str().unwrap_or_default()
            ),
            "/auth/me disagrees with /auth/register"
        );
        session
    }

    /// `POST /auth/api-keys {name, role: admin}`; asserts 201 and returns the secret key.
    /// An admin key both runs agents and calls the API, as every key did before roles:
    /// the tests of other features use one key for both. `create_scoped_key` makes others.
    pub async fn create_api_key(&self, session: &Session, name: &str) -> String {
        self.create_api_key_details(session, &json!({"name": name, "role": "admin"}))
            .await
            .key
    }

    /// `owner` (an admin or owner) invites `email` as `role`; the code is read from the SMTP
    /// sink and the invitation accepted with `TEST_PASSWORD`: a session in owner's tenant.
    pub async fn invite_and_join(&self, owner: &Session, email: &str, role: &str) -> Session {
        let messages_before = self.smtp.messages_to(email).len();
        let (status, body) = self
            .post_json("/tenant/members", &json!({"email": email, "role": role}), owner.token())
            .await;
        assert_eq!(status, StatusCode::CREATED, "invite {email} as {role}: {body}");
        let code = self.smtp.wait_for_code_in_message(email, messages_before + 1).await;
        let (status, joined) = self
            .post_json(
                "/auth/accept-invite",
                &json!({"email": email, "code": code, "password": TEST_PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "accept {email}'s invitation: {joined}");
        assert_eq!(joined["role"], role, "{joined}");
        let access_token = text_field(&joined, "access_token");
        let (_, me) = self.get("/auth/me", Some(&access_token)).await;
        Session {
            email: email.to_lowercase(),
            password: TEST_PASSWORD.to_owned(),
            user_id: me["user"]["id"].as_str().unwrap_or_default().to_owned(),
            tenant_id: owner.tenant_id.clone(),
            access_token,
            refresh_token: text_field(&joined, "refresh_token"),
        }
    }

    /// An `agent` key for the agents matching `patterns`.
    pub async fn create_agent_key(&self, session: &Session, name: &str, patterns: &[&str]) -> String {
        self.create_api_key_details(session, &json!({"name": name, "role": "agent", "agents": patterns}))
            .await
            .key
    }

    /// `POST /auth/api-keys` with any body; asserts 201.
    pub async fn create_api_key_details(&self, session: &Session, request: &Value) -> CreatedApiKey {
        let (status, body) = self.post_json("/auth/api-keys", request, session.token()).await;
        assert_eq!(status, StatusCode::CREATED, "create API key {request}: {body}");
        CreatedApiKey {
            id: text_field(&body, "id"),
            key: text_field(&body, "key"),
            body,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Before the database is dropped: PostgreSQL refuses to drop a database in use.
        self.process.take();
        if std::thread::panicking() {
            eprintln!(
                "test orchestrator: {} on {} ({})",
                self.url,
                self.database.backend_name(),
                self.database.url()
            );
        }
    }
}

fn temporary_directory() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("scriptmesh-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// Milliseconds since the Unix epoch, as the database stores times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

#[track_caller]
fn text_field(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no text field {field:?} in {body}"))
        .to_owned()
}
