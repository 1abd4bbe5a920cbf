//! The end-to-end test harness: real orchestrator and agent processes, a real database
//! (SQLite, or PostgreSQL when SCRIPTMESH_TEST_POSTGRES_URL is set) and an SMTP sink,
//! driven over HTTP the way the product documentation's flows are.
//!
//! ```text
//! #[actix_rt::test]                      // awc needs actix's runtime
//! async fn an_agent_runs_a_script() {
//!     let app = TestApp::start().await;  // or TestApp::builder().env("X", "1").start()
//!     let session = app.register_and_login("ops@example.com").await;
//!     let key = app.create_api_key(&session, "web-1").await;
//!     let agent = app
//!         .start_agent(AgentSpec::new("web-1", &key).script("hi.sh", "#!/bin/sh\necho hi\n"))
//!         .await;
//!     app.wait_for_agent_status(&session.access_token, "web-1", "online", Duration::from_secs(10)).await;
//!     let (status, body) = app.post_json("/trigger-script", &json!({..}), session.token()).await;
//!     let job = app.wait_for_job(&session.access_token, job_id, Duration::from_secs(10)).await;
//! }
//! ```
//!
//! - [`TestApp`]: the orchestrator (`url`, `jwt_secret`, `smtp`), `restart`/`kill`/`stop`,
//!   HTTP (`get`, `post_json`, `put_json`, `delete`, `request(..).bearer(..).json(..).send()`,
//!   `send_raw`), flows (`register`, `verify_email`, `login`, `register_and_login`,
//!   `create_api_key`), tokens (`sign_jwt`) and SQL on its database (`exec_sql`, `query_i64`,
//!   `query_text`).
//! - [`TestAgent`] from `app.start_agent(AgentSpec)`: `kill`/`stop`/`restart`, `write_script`,
//!   `write_manifest`, `log`.
//! - [`events::EventStream`]: a Server-Sent Events follower that notes when each event arrived.
//! - [`cluster::Cluster`]: several replicas on one PostgreSQL database, a `Fleet` each.
//! - [`SmtpSink`]: `wait_for_code(email)`, `wait_for_code_in_message(email, n)`, `messages_to`.
//! - [`wait_until`] / [`wait_for`]: poll until a condition holds.
//!
//! Every process is killed, and every PostgreSQL database dropped, when its handle is
//! dropped; a failing test prints the tail of each process's log.

mod agent;
mod app;
pub mod cluster;
mod database;
pub mod events;
pub mod fleet;
mod http;
mod process;
pub mod receiver;
mod smtp;
mod wait;

pub use agent::{AgentSpec, TestAgent, SCRIPTS_DIR_PLACEHOLDER};
pub use app::{binary_path, now_ms, CreatedApiKey, Session, TestApp, TestAppBuilder, TEST_PASSWORD};
pub use database::POSTGRES_URL_VARIABLE;
pub use http::{send_raw, ApiResponse, Method, RequestBuilder, StatusCode};
pub use process::StartFailure;
pub use smtp::{ReceivedEmail, SmtpSink};
pub use wait::{wait_for, wait_until, FINISHED_JOB_STATUSES};
