//! The `scriptmesh` command-line client end to end: the real binary against a real
//! orchestrator and real agents. Login (and its token refresh), `run --wait` mirroring the
//! script's output and exit code, a fan-out by tag, `--json` output, keys (with roles and
//! scopes), jobs, schedules, integrations, members, the audit trail, a login into one of
//! several tenants, and the errors a user meets (bad URL, bad key, usage, a role's limits).

use scriptmesh_tests::receiver::Receiver;
use scriptmesh_tests::{AgentSpec, Session, StatusCode, TestAgent, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const EMAIL: &str = "ops@example.com";
const OK_SCRIPT: &str = "#!/bin/sh\necho \"hello ${name:-nobody}\"\n";
const FAIL_SCRIPT: &str = "#!/bin/sh\necho \"archiving /var/app/data\"\necho \"tar: disk full\" >&2\nexit 3\n";
const SLOW_SCRIPT: &str = "#!/bin/sh\nsleep 30\n";

/// How one run of the CLI ended.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }

    #[track_caller]
    fn assert_code(&self, code: i32) -> &Outcome {
        assert_eq!(self.code, code, "exit status: {self:?}");
        self
    }
}

/// The CLI as a user of one orchestrator has it: SCRIPTMESH_URL set, its own config
/// directory, and SCRIPTMESH_API_KEY only when given.
struct Cli {
    url: String,
    config_dir: tempfile::TempDir,
    api_key: Option<String>,
}

impl Cli {
    fn new(app: &TestApp) -> Cli {
        Cli {
            url: app.url.clone(),
            config_dir: tempfile::tempdir().expect("a config directory"),
            api_key: None,
        }
    }

    fn with_key(app: &TestApp, key: &str) -> Cli {
        Cli {
            api_key: Some(key.to_owned()),
            ..Cli::new(app)
        }
    }

    fn credentials_path(&self) -> PathBuf {
        self.config_dir.path().join("credentials.json")
    }

    fn credentials(&self) -> Value {
        let text = std::fs::read_to_string(self.credentials_path()).expect("the credentials file");
        serde_json::from_str(&text).expect("credentials are JSON")
    }

    fn write_credentials(&self, credentials: &Value) {
        std::fs::write(self.credentials_path(), credentials.to_string()).expect("write the credentials");
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, None).await
    }

    /// Runs the binary off the test's runtime thread, which must stay free to serve the
    /// test's own receivers while the CLI waits.
    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sm-test-cli"));
        command
            .args(args)
            .env("SCRIPTMESH_URL", &self.url)
            .env("SCRIPTMESH_CONFIG_DIR", self.config_dir.path())
            .env_remove("SCRIPTMESH_API_KEY")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = &self.api_key {
            command.env("SCRIPTMESH_API_KEY", key);
        }
        let input = stdin.map(str::to_owned);
        let label = args.join(" ");
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("start the CLI");
            if let Some(input) = input {
                let mut pipe = child.stdin.take().expect("the CLI's stdin");
                pipe.write_all(input.as_bytes()).expect("write to the CLI's stdin");
            }
            child.wait_with_output().expect("the CLI's output")
        })
        .await
        .expect("the CLI's thread");
        let outcome = Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!("$ scriptmesh {label}\n{outcome:?}");
        outcome
    }

    /// `scriptmesh login --email EMAIL --password-stdin`, expecting success.
    async fn login(&self) {
        self.login_as(EMAIL, &[]).await;
    }

    /// `scriptmesh login --email EMAIL --password-stdin EXTRA..`, expecting success.
    async fn login_as(&self, email: &str, extra: &[&str]) {
        let args = [&["login", "--email", email, "--password-stdin"][..], extra].concat();
        self.run_with_stdin(&args, Some(&format!("{TEST_PASSWORD}\n")))
            .await
            .assert_code(0);
    }
}

/// The line of a table whose text contains `needle`.
#[track_caller]
fn row_with<'a>(outcome: &'a Outcome, needle: &str) -> &'a str {
    outcome
        .stdout
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?}: {outcome:?}"))
}

/// `POST /auth/accept-invite` with the code emailed to `email` (its `nth` message), as the
/// dashboard's join page does;
/// asserts 200 and returns the answer.
async fn accept_invitation(app: &TestApp, email: &str, nth: usize) -> Value {
    let code = app.smtp.wait_for_code_in_message(email, nth).await;
    let (status, joined) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": email, "code": code, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "accept the invitation to {email}: {joined}");
    joined
}

/// An orchestrator, a verified user, and agents with the test scripts.
struct Setup {
    app: TestApp,
    session: Session,
    key: String,
    agents: Vec<TestAgent>,
}

impl Setup {
    async fn start(app: TestApp) -> Setup {
        let session = app.register_and_login(EMAIL).await;
        let key = app.create_api_key(&session, "agents").await;
        Setup {
            app,
            session,
            key,
            agents: Vec::new(),
        }
    }

    async fn add_agent(&mut self, spec: AgentSpec) {
        let name = spec.name.clone();
        self.agents.push(self.app.start_agent(spec).await);
        self.app
            .wait_for_agent_status(&self.session.access_token, &name, "online", WAIT)
            .await;
    }

    fn agent_spec(&self, name: &str) -> AgentSpec {
        AgentSpec::new(name, &self.key)
            .script("ok.sh", OK_SCRIPT)
            .script("fail.sh", FAIL_SCRIPT)
            .script("slow.sh", SLOW_SCRIPT)
    }
}

#[actix_rt::test]
async fn login_stores_private_tokens_that_refresh_and_logout_removes_them() {
    let mut setup = Setup::start(TestApp::start().await).await;
    setup.add_agent(setup.agent_spec("web-1").tag("production")).await;
    let cli = Cli::new(&setup.app);

    // Before any login the CLI says what to do.
    let refused = cli.run(&["agents"]).await;
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("not logged in: run `scriptmesh login`"),
        "{refused:?}"
    );

    // A wrong password is the API's message and exit 1; nothing is stored.
    let wrong = cli
        .run_with_stdin(
            &["login", "--email", EMAIL, "--password-stdin"],
            Some("not the password\n"),
        )
        .await;
    wrong.assert_code(1);
    assert!(wrong.stderr.contains("wrong email or password"), "{wrong:?}");
    assert!(!cli.credentials_path().exists());

    cli.login().await;
    let stored = cli.credentials();
    assert_eq!(stored["url"], setup.app.url.as_str());
    assert_eq!(stored["email"], EMAIL);
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cli.credentials_path()), 0o600, "the credentials file is private");
    assert_eq!(mode(cli.config_dir.path()), 0o700, "so is its directory");

    // The table lists the agent with its status and tags.
    let table = cli.run(&["agents"]).await;
    table.assert_code(0);
    let header = table.stdout.lines().next().unwrap_or_default();
    for column in ["NAME", "STATUS", "TAGS", "SCRIPTS", "LAST HEARTBEAT"] {
        assert!(header.contains(column), "{table:?}");
    }
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("web-1"))
        .expect("a row for web-1");
    assert!(
        row.contains("online") && row.contains("production") && row.contains("ok.sh"),
        "{row}"
    );

    // --json is the API's object keyed by agent name.
    let listed = cli.run(&["agents", "--json"]).await;
    listed.assert_code(0);
    assert_eq!(listed.json()["web-1"]["status"], "online");
    let shown = cli.run(&["--json", "agents", "show", "web-1"]).await;
    assert_eq!(shown.assert_code(0).json()["name"], "web-1");

    // An access token the server refuses: the CLI refreshes once, retries, stores the new pair.
    let mut garbage = cli.credentials();
    garbage["access_token"] = json!("garbage.token.value");
    cli.write_credentials(&garbage);
    cli.run(&["agents"]).await.assert_code(0);
    let refreshed = cli.credentials();
    assert_ne!(refreshed["access_token"], "garbage.token.value");
    assert_ne!(
        refreshed["refresh_token"], stored["refresh_token"],
        "the refresh token rotated"
    );
    assert_eq!(mode(&cli.credentials_path()), 0o600, "still private after the rewrite");

    // An access token known to have expired is refreshed before it is sent.
    let mut expired = cli.credentials();
    expired["expires_at"] = json!("2000-01-01T00:00:00Z");
    cli.write_credentials(&expired);
    let me = cli.run(&["whoami", "--json"]).await;
    assert_eq!(me.assert_code(0).json()["user"]["email"], EMAIL);
    // (The new access token may equal the old one when signed in the same second.)
    assert_ne!(
        cli.credentials()["refresh_token"],
        expired["refresh_token"],
        "refreshed"
    );
    assert!(cli.credentials()["expires_at"].as_str().unwrap() > "2000-01-01");

    // Commands started together with an expired token: one refreshes, the others take its
    // new pair (a second use of the spent refresh token would end the whole session).
    let mut expired = cli.credentials();
    expired["expires_at"] = json!("2000-01-01T00:00:00Z");
    cli.write_credentials(&expired);
    let together = tokio::join!(
        cli.run(&["agents"]),
        cli.run(&["jobs"]),
        cli.run(&["whoami"]),
        cli.run(&["agents", "--json"])
    );
    for outcome in [together.0, together.1, together.2, together.3] {
        outcome.assert_code(0);
    }
    cli.run(&["agents"]).await.assert_code(0);

    // A revoked session (its refresh token replayed elsewhere) asks for a new login.
    let spent = cli.credentials();
    let replay = setup
        .app
        .post_json("/auth/refresh", &json!({"refresh_token": spent["refresh_token"]}), None)
        .await;
    assert_eq!(replay.0, StatusCode::OK, "{replay:?}");
    let mut stale = spent.clone();
    stale["access_token"] = json!("garbage");
    cli.write_credentials(&stale);
    let ended = cli.run(&["agents"]).await;
    ended.assert_code(1);
    assert!(ended.stderr.contains("run `scriptmesh login` again"), "{ended:?}");

    // The stored login belongs to its orchestrator: another URL is refused, not sent the tokens.
    cli.login().await;
    let other = cli.run(&["--url", "http://127.0.0.1:9", "agents"]).await;
    other.assert_code(1);
    assert!(other.stderr.contains("the stored login is for"), "{other:?}");

    // Logout ends the session on the server too: the old refresh token no longer works.
    let last = cli.credentials();
    cli.run(&["logout"]).await.assert_code(0);
    assert!(!cli.credentials_path().exists());
    let (status, _) = setup
        .app
        .post_json("/auth/refresh", &json!({"refresh_token": last["refresh_token"]}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    cli.run(&["agents"]).await.assert_code(1);
}

#[actix_rt::test]
async fn run_wait_mirrors_the_script_with_an_api_key() {
    let mut setup = Setup::start(TestApp::start().await).await;
    setup.add_agent(setup.agent_spec("web-1")).await;
    // No login at all: the API key in the environment is the credential.
    let cli = Cli::with_key(&setup.app, &setup.key);
    let checked = cli.run(&["login"]).await;
    checked.assert_code(0);
    assert!(checked.stdout.contains("SCRIPTMESH_API_KEY is valid"), "{checked:?}");
    assert!(!cli.credentials_path().exists(), "an API key login stores nothing");

    // Success: the script's stdout on stdout, params reach it, exit 0.
    let ok = cli
        .run(&["run", "ok.sh", "--agent", "web-1", "--param", "name=world", "--wait"])
        .await;
    ok.assert_code(0);
    assert_eq!(ok.stdout, "hello world\n");

    // Failure: stdout and stderr mirrored, the script's exit code is the CLI's.
    let failed = cli.run(&["run", "fail.sh", "--agent", "web-1", "--wait"]).await;
    failed.assert_code(3);
    assert_eq!(failed.stdout, "archiving /var/app/data\n");
    assert!(failed.stderr.contains("tar: disk full"), "{failed:?}");

    // --json prints the final job and still mirrors the exit code.
    let as_json = cli
        .run(&["run", "fail.sh", "--agent", "web-1", "--wait", "--json"])
        .await;
    as_json.assert_code(3);
    let job = as_json.json();
    assert_eq!(
        (job["status"].as_str(), job["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );

    // A job killed at its timeout has no exit code of its own: 124, as timeout(1).
    let timed_out = cli
        .run(&["run", "slow.sh", "--agent", "web-1", "--timeout", "1", "--wait"])
        .await;
    timed_out.assert_code(124);
    assert!(timed_out.stderr.contains("ended timeout"), "{timed_out:?}");

    // Without --wait: the job id, then `job ID` and `jobs` find it.
    let queued = cli
        .run(&["run", "ok.sh", "--agent", "web-1", "--param", "name=later"])
        .await;
    queued.assert_code(0);
    let job_id = queued.stdout.trim().to_owned();
    assert!(job_id.starts_with("job_"), "{queued:?}");
    setup.app.wait_for_job(&setup.session.access_token, &job_id, WAIT).await;
    let detail = cli.run(&["job", &job_id]).await;
    detail.assert_code(0);
    assert!(
        detail.stdout.contains("success") && detail.stdout.contains("hello later"),
        "{detail:?}"
    );
    let detail_json = cli.run(&["job", &job_id, "--json"]).await;
    assert_eq!(detail_json.assert_code(0).json()["stdout"], "hello later\n");

    let jobs = cli.run(&["jobs", "--agent", "web-1", "--json"]).await;
    let listed = jobs.assert_code(0).json();
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["job_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "{listed}");
    assert_eq!(ids[0], job_id, "newest first");
    let failed_only = cli.run(&["jobs", "--status", "failed", "--json"]).await;
    assert_eq!(failed_only.assert_code(0).json()["jobs"].as_array().unwrap().len(), 2);
    let table = cli.run(&["jobs", "--limit", "2"]).await;
    table.assert_code(0);
    assert_eq!(table.stdout.lines().count(), 3, "a header and two rows: {table:?}");
    assert!(table.stderr.contains("--cursor"), "a hint for the next page: {table:?}");

    // API errors: the orchestrator's message and exit 1.
    let missing = cli.run(&["job", "job_doesnotexist"]).await;
    missing.assert_code(1);
    assert!(missing.stderr.contains("not_found"), "{missing:?}");
    let unlisted = cli.run(&["run", "nope.sh", "--agent", "web-1", "--wait"]).await;
    unlisted.assert_code(1);
    assert!(unlisted.stderr.starts_with("error: "), "{unlisted:?}");

    // A key the server does not know.
    let bad_key = Cli::with_key(&setup.app, "sm_live_not_a_real_key_0000000000");
    let refused = bad_key.run(&["agents"]).await;
    refused.assert_code(1);
    assert!(refused.stderr.contains("SCRIPTMESH_API_KEY was refused"), "{refused:?}");

    // Keys cannot manage keys: the API says a login is needed.
    let forbidden = cli.run(&["keys", "create", "more"]).await;
    forbidden.assert_code(1);
    assert!(
        forbidden.stderr.contains("login") && forbidden.stderr.contains("permission_denied"),
        "{forbidden:?}"
    );
}

#[actix_rt::test]
async fn a_fan_out_by_tag_waits_for_every_agent() {
    let mut setup = Setup::start(TestApp::start().await).await;
    let exits_with = |code: u8| format!("#!/bin/sh\necho checked\nexit {code}\n");
    for (name, code) in [("batch-1", 0), ("batch-2", 4)] {
        let spec = setup
            .agent_spec(name)
            .tag("batch")
            .script("check.sh", &exits_with(code));
        setup.add_agent(spec).await;
    }
    // Not tagged: not part of the fan-out.
    setup
        .add_agent(setup.agent_spec("other").script("check.sh", &exits_with(9)))
        .await;
    let cli = Cli::with_key(&setup.app, &setup.key);

    // One agent fails with 4: the CLI exits 4, after a progress line and a table of both.
    let mixed = cli.run(&["run", "check.sh", "--tag", "batch", "--wait"]).await;
    mixed.assert_code(4);
    assert!(mixed.stderr.contains("2/2 done (1 success, 1 failed)"), "{mixed:?}");
    let row = |agent: &str| {
        mixed
            .stdout
            .lines()
            .find(|line| line.starts_with(agent))
            .unwrap_or_else(|| panic!("no row for {agent}: {mixed:?}"))
            .to_owned()
    };
    assert!(row("batch-1").contains("success"));
    assert!(row("batch-2").contains("failed") && row("batch-2").contains(" 4 "));
    assert!(!mixed.stdout.contains("other"), "{mixed:?}");
    // Then the outcome groups: the same output, but not the same status and exit code.
    assert!(mixed.stdout.contains("2 different results"), "{mixed:?}");
    let baseline = mixed.stdout.find("\nBaseline ").expect("a baseline group");
    let group = mixed.stdout.find("\nGroup ").expect("a second group");
    assert!(baseline < group, "{mixed:?}");
    assert!(
        mixed.stdout[baseline..group].contains("1 agent, success, exit 0\n  batch-1\n"),
        "{mixed:?}"
    );
    assert!(
        mixed.stdout[group..].contains("1 agent, failed, exit 4, differs in status, exit code\n  batch-2\n"),
        "{mixed:?}"
    );

    // All succeed: exit 0, and --json is the fan-out's final state.
    let all = cli
        .run(&[
            "run",
            "ok.sh",
            "--tag",
            "batch",
            "--param",
            "name=fleet",
            "--wait",
            "--json",
        ])
        .await;
    all.assert_code(0);
    let state = all.json();
    assert_eq!(state["done"], true);
    assert_eq!(state["groups"].as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(state["summary"]["total"], 2);
    assert_eq!(state["summary"]["succeeded"], 2);
    let mut agents: Vec<&str> = state["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["agent"].as_str())
        .collect();
    agents.sort();
    assert_eq!(agents, ["batch-1", "batch-2"]);

    // Several named agents are a fan-out too; without --wait the jobs are listed.
    let named = cli
        .run(&["run", "ok.sh", "--agent", "batch-1", "--agent", "other", "--json"])
        .await;
    let started = named.assert_code(0).json();
    assert!(started["fanout_id"].is_string(), "{started}");
    assert_eq!(started["jobs"].as_array().unwrap().len(), 2);

    // A tag no agent carries: the API's refusal, exit 1.
    let nobody = cli.run(&["run", "ok.sh", "--tag", "nowhere", "--wait"]).await;
    nobody.assert_code(1);
    assert!(nobody.stderr.contains("no agent matches"), "{nobody:?}");
}

#[actix_rt::test]
async fn fanout_diff_groups_agents_and_masks_volatile_lines() {
    let mut setup = Setup::start(TestApp::start().await).await;
    let report =
        |version: &str| format!("#!/bin/sh\nprintf 'version {version}\\nhost %s\\n' \"$SCRIPTMESH_AGENT_NAME\"\n");
    for (name, version) in [("eu-1", "1.2.3"), ("eu-2", "1.2.3"), ("eu-3", "1.2.4")] {
        let spec = setup.agent_spec(name).tag("eu").script("report.sh", &report(version));
        setup.add_agent(spec).await;
    }
    let cli = Cli::with_key(&setup.app, &setup.key);
    let finished = cli.run(&["run", "report.sh", "--tag", "eu", "--wait", "--json"]).await;
    let state = finished.assert_code(0).json();
    let fanout_id = state["fanout_id"].as_str().expect("fanout_id").to_owned();

    // Host names differ everywhere: three groups of one; the tie goes to eu-1.
    let plain = cli.run(&["fanout", "diff", &fanout_id]).await;
    plain.assert_code(0);
    assert!(plain.stdout.contains("3 different results"), "{plain:?}");
    assert!(plain.stdout.contains("-host eu-1\n+host eu-2\n"), "{plain:?}");
    assert!(!plain.stdout.contains('\x1b'), "no colour into a pipe: {plain:?}");

    // Masked host names: eu-1 and eu-2 are the baseline, eu-3 differs in its version.
    let masked = cli.run(&["fanout", "diff", &fanout_id, "--mask", r"host \S+"]).await;
    masked.assert_code(0);
    let out = &masked.stdout;
    assert!(out.contains("2 different results"), "{masked:?}");
    assert!(out.contains("2 agents, success, exit 0\n  eu-1, eu-2\n"), "{masked:?}");
    assert!(
        out.contains("1 agent, success, exit 0, differs in stdout\n  eu-3\n"),
        "{masked:?}"
    );
    assert!(
        out.contains("stdout\n@@ -1,2 +1,2 @@\n-version 1.2.3\n+version 1.2.4\n <masked>\n"),
        "{masked:?}"
    );
    let header = out
        .lines()
        .find(|line| line.starts_with("--- "))
        .expect("a diff header");
    assert!(
        header.starts_with("--- baseline ") && header.ends_with("(eu-1, eu-2) stdout"),
        "{header}"
    );

    // Both lines masked: one result. --json is the API's answer.
    let both = [
        "fanout",
        "diff",
        &fanout_id,
        "--mask",
        r"host \S+",
        "--mask",
        r"version \S+",
    ];
    let same = cli.run(&[&both[..], &["--json"]].concat()).await;
    let same = same.assert_code(0).json();
    assert_eq!(same["groups"].as_array().map(Vec::len), Some(1), "{same}");
    assert_eq!(same["diff_options"]["mask"], json!([r"host \S+", r"version \S+"]));
    let same_text = cli.run(&both).await;
    assert!(
        same_text
            .stdout
            .contains("Every finished job had the same result (success, exit 0)."),
        "{same_text:?}"
    );

    // `fanout show` is the progress and the jobs, without groups.
    let shown = cli.run(&["fanout", "show", &fanout_id]).await;
    shown.assert_code(0);
    assert!(shown.stdout.contains("3 jobs, 3 succeeded, done."), "{shown:?}");
    assert!(
        shown
            .stdout
            .lines()
            .any(|line| line.starts_with("eu-3") && line.contains("success")),
        "{shown:?}"
    );
    assert!(!shown.stdout.contains("Baseline"), "{shown:?}");

    // The API's refusals: exit 1 with its message.
    let bad = cli.run(&["fanout", "diff", &fanout_id, "--mask", "("]).await;
    bad.assert_code(1);
    assert!(
        bad.stderr.contains("mask 1 is not a valid regular expression"),
        "{bad:?}"
    );
    let unknown = cli.run(&["fanout", "diff", "fan_nope"]).await;
    unknown.assert_code(1);
    assert!(unknown.stderr.contains("not found"), "{unknown:?}");
    let usage = cli.run(&["fanout", "diff", &fanout_id, "--context", "x"]).await;
    usage.assert_code(2);
}

#[actix_rt::test]
async fn keys_schedules_and_integrations_round_trip() {
    let app = TestApp::builder().env("ALLOW_PRIVATE_WEBHOOKS", "true").start().await;
    let mut setup = Setup::start(app).await;
    setup.add_agent(setup.agent_spec("web-1")).await;
    let cli = Cli::new(&setup.app);
    cli.login().await;

    // Keys: created (the key alone on stdout), listed, usable, revoked, refused.
    let created = cli.run(&["keys", "create", "ci-runner"]).await;
    created.assert_code(0);
    let key = created.stdout.trim().to_owned();
    assert!(key.starts_with("sm_live_"), "{created:?}");
    assert!(created.stderr.contains("not shown again"));
    let keys = cli.run(&["keys", "list", "--json"]).await.json();
    let key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-runner")
        .and_then(|k| k["id"].as_str())
        .expect("the new key is listed")
        .to_owned();
    let table = cli.run(&["keys", "list"]).await;
    assert!(table.assert_code(0).stdout.contains(&key_id));
    let with_new_key = Cli::with_key(&setup.app, &key);
    with_new_key.run(&["agents"]).await.assert_code(0);
    cli.run(&["keys", "revoke", &key_id]).await.assert_code(0);
    let after = cli.run(&["keys", "list", "--json"]).await.json();
    assert!(!after.to_string().contains(&key_id), "{after}");
    let refused = with_new_key.run(&["agents"]).await;
    refused.assert_code(1);
    assert!(refused.stderr.contains("refused"), "{refused:?}");

    // Schedules: create, list (table and JSON), delete.
    let scheduled = cli
        .run(&[
            "schedules",
            "create",
            "--agent",
            "web-1",
            "--script",
            "ok.sh",
            "--cron",
            "0 2 * * *",
            "--param",
            "name=nightly",
            "--timezone",
            "Europe/Berlin",
            "--json",
        ])
        .await;
    let schedule = scheduled.assert_code(0).json();
    let schedule_id = schedule["id"].as_str().expect("a schedule id").to_owned();
    assert_eq!(schedule["timezone"], "Europe/Berlin");
    assert_eq!(schedule["params"]["name"], "nightly");
    let listed = cli.run(&["schedules", "list"]).await;
    listed.assert_code(0);
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&schedule_id))
        .expect("the schedule's row");
    assert!(
        row.contains("0 2 * * *") && row.contains("Europe/Berlin") && row.contains("active"),
        "{row}"
    );
    let bad_cron = cli
        .run(&[
            "schedules",
            "create",
            "--agent",
            "web-1",
            "--script",
            "ok.sh",
            "--cron",
            "61 * * * *",
        ])
        .await;
    bad_cron.assert_code(1);
    cli.run(&["schedules", "delete", &schedule_id]).await.assert_code(0);
    let remaining = cli.run(&["schedules", "list", "--json"]).await.json();
    assert_eq!(remaining["schedules"], json!([]));

    // Integrations: listed, and a test event sent to a local receiver.
    let receiver = Receiver::start().await;
    let (status, integration) = setup
        .app
        .post_json(
            "/integrations",
            &json!({"type": "webhook", "name": "audit", "config": {"url": receiver.url_for("/hook"), "events": ["job.failed"]}}),
            setup.session.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration_id = integration["id"].as_str().unwrap().to_owned();
    let listed = cli.run(&["integrations", "list"]).await;
    listed.assert_code(0);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&integration_id) && l.contains("webhook")),
        "{listed:?}"
    );
    let tested = cli.run(&["integrations", "test", &integration_id]).await;
    tested.assert_code(0);
    assert!(tested.stdout.contains("delivered"), "{tested:?}");
    let requests = receiver.wait_for_requests(1, WAIT).await;
    assert_eq!(requests[0].path, "/hook");
    // A receiver that answers 500: not delivered, exit 1.
    receiver.respond_with(500);
    let failing = cli.run(&["integrations", "test", &integration_id, "--json"]).await;
    failing.assert_code(1);
    assert_eq!(failing.json()["ok"], false);
}

#[actix_rt::test]
async fn errors_name_the_problem_and_the_exit_status_tells_its_kind() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli {
        url: format!("http://127.0.0.1:{port}"),
        config_dir: tempfile::tempdir().unwrap(),
        api_key: Some("sm_live_whatever".into()),
    };
    let unreachable = cli.run(&["agents"]).await;
    unreachable.assert_code(1);
    assert!(
        unreachable.stderr.contains("cannot reach the orchestrator"),
        "{unreachable:?}"
    );

    let not_a_url = cli.run(&["--url", "localhost:8080", "agents"]).await;
    not_a_url.assert_code(1);
    assert!(not_a_url.stderr.contains("invalid orchestrator URL"), "{not_a_url:?}");

    // Usage errors exit 2 before anything is sent.
    for usage in [
        vec!["run", "ok.sh"],
        vec!["run", "ok.sh", "--agent", "a", "--param", "novalue"],
        vec!["no-such-command"],
        vec!["jobs", "--limit", "many"],
    ] {
        cli.run(&usage).await.assert_code(2);
    }
    let help = cli.run(&["--help"]).await;
    assert!(help.assert_code(0).stdout.contains("run"), "{help:?}");
}

#[actix_rt::test]
async fn keys_have_roles_and_scopes_and_members_and_the_audit_trail_are_managed() {
    let mut setup = Setup::start(TestApp::start().await).await;
    setup.add_agent(setup.agent_spec("web-1")).await;
    let cli = Cli::new(&setup.app);
    cli.login().await;

    // The tenant's creator is its owner, with every permission.
    let me = cli.run(&["whoami", "--json"]).await;
    let me = me.assert_code(0).json();
    assert_eq!(me["role"], "owner", "{me}");
    assert!(
        me["permissions"].as_array().unwrap().contains(&json!("owners.manage")),
        "{me}"
    );
    let shown = cli.run(&["whoami"]).await;
    assert!(row_with(shown.assert_code(0), "role:").contains("owner"), "{shown:?}");

    // Keys with a role and a scope; the list shows both.
    let viewer = cli.run(&["keys", "create", "read-only", "--role", "viewer"]).await;
    let viewer_key = viewer.assert_code(0).stdout.trim().to_owned();
    assert!(viewer.stderr.contains("role viewer"), "{viewer:?}");
    // Agent patterns alone make an agent key.
    let edge = cli
        .run(&["keys", "create", "edge", "--agent", "prod-*", "--agent", "edge-1"])
        .await;
    assert!(edge.assert_code(0).stdout.trim().starts_with("sm_live_"), "{edge:?}");
    assert!(edge.stderr.contains("role agent, agents: prod-*, edge-1"), "{edge:?}");
    let deploy = cli
        .run(&[
            "keys", "create", "deployer", "--tag", "web", "--script", "ok.sh", "--json",
        ])
        .await;
    let deploy = deploy.assert_code(0).json();
    assert_eq!(
        (&deploy["role"], &deploy["tags"], &deploy["scripts"]),
        (&json!("operator"), &json!(["web"]), &json!(["ok.sh"])),
        "{deploy}"
    );
    let table = cli.run(&["keys", "list"]).await;
    let header = table.assert_code(0).stdout.lines().next().unwrap_or_default();
    assert!(header.contains("ROLE") && header.contains("SCOPE"), "{table:?}");
    assert!(row_with(&table, "edge").contains("agents: prod-*, edge-1"), "{table:?}");
    assert!(
        row_with(&table, "deployer").contains("tags: web; scripts: ok.sh"),
        "{table:?}"
    );
    let read_only = row_with(&table, "read-only");
    assert!(read_only.contains("viewer") && read_only.contains(" - "), "{read_only}");
    // The API's rules: an agent key needs patterns; the CLI knows the roles.
    cli.run(&["keys", "create", "nowhere", "--role", "agent"])
        .await
        .assert_code(1);
    cli.run(&["keys", "create", "boss", "--role", "owner"])
        .await
        .assert_code(2);

    // A viewer key reads but may not run a script.
    let as_viewer = Cli::with_key(&setup.app, &viewer_key);
    as_viewer.run(&["agents"]).await.assert_code(0);
    let denied = as_viewer.run(&["run", "ok.sh", "--agent", "web-1"]).await;
    denied.assert_code(1);
    assert!(
        denied.stderr.contains("permission_denied") && denied.stderr.contains("jobs.run"),
        "{denied:?}"
    );

    // Members: invite, accept (by the API, with the emailed code), change the role, remove.
    let invited = cli
        .run(&["members", "invite", "new@example.com", "--role", "viewer", "--json"])
        .await;
    let invited = invited.assert_code(0).json();
    assert!(invited["id"].as_str().unwrap().starts_with("inv_"), "{invited}");
    let listed = cli.run(&["members", "list"]).await;
    let pending = row_with(listed.assert_code(0), "new@example.com");
    assert!(pending.contains("viewer") && pending.contains("invited"), "{pending}");
    let owner_row = row_with(&listed, EMAIL);
    assert!(
        owner_row.contains("owner") && owner_row.contains("active"),
        "{owner_row}"
    );
    let joined = accept_invitation(&setup.app, "new@example.com", 1).await;
    assert_eq!(joined["role"], "viewer", "{joined}");
    let members = cli.run(&["members", "list", "--json"]).await.json();
    let new_id = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "new@example.com")
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("the new member is listed: {members}"))
        .to_owned();
    assert_eq!(members["invitations"], json!([]), "the invitation was used: {members}");
    let promoted = cli.run(&["members", "role", &new_id, "operator"]).await;
    assert!(
        promoted.assert_code(0).stdout.contains("is now operator"),
        "{promoted:?}"
    );
    // A tenant keeps an owner.
    let last = cli.run(&["members", "role", &setup.session.user_id, "viewer"]).await;
    last.assert_code(1);
    assert!(last.stderr.contains("last_owner"), "{last:?}");
    let removed = cli.run(&["members", "remove", &new_id]).await;
    assert!(removed.assert_code(0).stdout.contains("Removed member"), "{removed:?}");
    let later = cli
        .run(&["members", "invite", "later@example.com", "--role", "admin", "--json"])
        .await;
    let later_id = later.assert_code(0).json()["id"].as_str().unwrap().to_owned();
    let withdrawn = cli.run(&["members", "remove", &later_id]).await;
    assert!(
        withdrawn.assert_code(0).stdout.contains("Withdrew invitation"),
        "{withdrawn:?}"
    );
    let remaining = cli.run(&["members", "list", "--json"]).await.json();
    assert!(
        !remaining.to_string().contains("new@example.com") && !remaining.to_string().contains("later@"),
        "{remaining}"
    );

    // The audit trail: newest first, filtered, every page with --all. (The server writes
    // entries in batches every 200 ms.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let audit = cli.run(&["audit"]).await;
    let header = audit.assert_code(0).stdout.lines().next().unwrap_or_default();
    for column in ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "FROM"] {
        assert!(header.contains(column), "{audit:?}");
    }
    assert!(row_with(&audit, "member.invite").contains(EMAIL), "{audit:?}");
    let all = cli.run(&["audit", "--json"]).await.json();
    let entries = all["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["outcome"] == "denied"),
        "the viewer key's refused run is recorded: {all}"
    );
    let created = cli.run(&["audit", "--action", "key.create", "--json"]).await.json();
    let created = created["entries"].as_array().unwrap().clone();
    assert!(created.len() >= 4, "agents, read-only, edge, deployer: {created:?}");
    assert!(created.iter().all(|e| e["action"] == "key.create"), "{created:?}");
    let paged = cli
        .run(&["audit", "--action", "key.create", "--limit", "1", "--all", "--json"])
        .await;
    let paged = paged.assert_code(0).json();
    assert_eq!(
        paged["entries"].as_array().unwrap(),
        &created,
        "--all follows every page"
    );
    assert_eq!(paged["next_cursor"], Value::Null);
    let one = cli.run(&["audit", "--action", "key.create", "--limit", "1"]).await;
    assert_eq!(
        one.assert_code(0).stdout.lines().count(),
        2,
        "a header and one row: {one:?}"
    );
    assert!(one.stderr.contains("--cursor"), "a hint for the next page: {one:?}");
}

#[actix_rt::test]
async fn a_member_of_two_tenants_logs_in_to_either_and_has_its_role_there() {
    let setup = Setup::start(TestApp::start().await).await;
    let app = &setup.app;
    // Someone with a tenant of their own is invited into the first one as an operator.
    let both = "both@example.com";
    let home = app.register_and_login(both).await;
    let (status, invitation) = app
        .post_json(
            "/tenant/members",
            &json!({"email": both, "role": "operator"}),
            setup.session.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    // `join` accepts it with the emailed code and logs in there.
    let code = app.smtp.wait_for_code_in_message(both, 2).await;
    let cli = Cli::new(app);
    let joined = cli
        .run_with_stdin(
            &["join", "--email", both, "--code", &code, "--password-stdin"],
            Some(&format!("{TEST_PASSWORD}\n")),
        )
        .await;
    assert!(joined.assert_code(0).stdout.contains("as operator"), "{joined:?}");
    let me = cli.run(&["whoami", "--json"]).await.json();
    assert_eq!(me["tenant"]["id"], setup.session.tenant_id.as_str(), "{me}");

    // Without --tenant: the home tenant, where they are the owner; both are listed.
    cli.login_as(both, &[]).await;
    let me = cli.run(&["whoami", "--json"]).await.json();
    assert_eq!(me["tenant"]["id"], home.tenant_id.as_str(), "{me}");
    assert_eq!(me["role"], "owner", "{me}");
    assert_eq!(me["memberships"].as_array().map(Vec::len), Some(2), "{me}");
    let shown = cli.run(&["whoami"]).await;
    assert!(row_with(shown.assert_code(0), "memberships:").contains(&setup.session.tenant_id));
    assert!(shown.stderr.contains("login --tenant"), "{shown:?}");

    // With --tenant: the other one, as an operator, who may not manage members or read the audit trail.
    cli.login_as(both, &["--tenant", &setup.session.tenant_id]).await;
    let me = cli.run(&["whoami", "--json"]).await.json();
    assert_eq!(me["tenant"]["id"], setup.session.tenant_id.as_str(), "{me}");
    assert_eq!(me["role"], "operator", "{me}");
    for refused in [vec!["members", "list"], vec!["audit"]] {
        let outcome = cli.run(&refused).await;
        outcome.assert_code(1);
        assert!(outcome.stderr.contains("permission_denied"), "{outcome:?}");
    }
    cli.run(&["agents"]).await.assert_code(0);
}

#[actix_rt::test]
async fn a_changed_password_ends_other_sessions_and_a_forgotten_one_is_reset_by_email() {
    let setup = Setup::start(TestApp::start().await).await;
    let app = &setup.app;
    let new_password = "a different long password";
    let cli = Cli::new(app);
    let elsewhere = Cli::new(app);
    cli.login().await;
    elsewhere.login().await;

    // Changed: this login goes on with its renewed tokens; the other one has ended.
    let stored = cli.credentials();
    let changed = cli
        .run_with_stdin(
            &["password", "change", "--password-stdin"],
            Some(&format!("{TEST_PASSWORD}\n{new_password}\n")),
        )
        .await;
    changed.assert_code(0);
    assert_ne!(cli.credentials()["refresh_token"], stored["refresh_token"], "renewed");
    cli.run(&["agents"]).await.assert_code(0);
    let mut other = elsewhere.credentials();
    other["expires_at"] = json!("2000-01-01T00:00:00Z");
    elsewhere.write_credentials(&other);
    let ended = elsewhere.run(&["agents"]).await;
    ended.assert_code(1);
    assert!(ended.stderr.contains("run `scriptmesh login` again"), "{ended:?}");
    // A wrong current password changes nothing.
    let wrong = cli
        .run_with_stdin(
            &["password", "change", "--password-stdin"],
            Some("not the password\nyet another long password\n"),
        )
        .await;
    wrong.assert_code(1);

    // Forgotten: a code by email, then the reset; the old password no longer logs in.
    let before = app.smtp.messages_to(EMAIL).len();
    let sent = cli.run(&["password", "forgot", "--email", EMAIL]).await;
    assert!(
        sent.assert_code(0).stdout.contains("password reset --email"),
        "{sent:?}"
    );
    let code = app.smtp.wait_for_code_in_message(EMAIL, before + 1).await;
    let bad = cli
        .run_with_stdin(
            &[
                "password",
                "reset",
                "--email",
                EMAIL,
                "--code",
                "000000",
                "--password-stdin",
            ],
            Some(&format!("{TEST_PASSWORD}\n")),
        )
        .await;
    bad.assert_code(1);
    let reset = cli
        .run_with_stdin(
            &[
                "password",
                "reset",
                "--email",
                EMAIL,
                "--code",
                &code,
                "--password-stdin",
            ],
            Some(&format!("{TEST_PASSWORD}\n")),
        )
        .await;
    assert!(reset.assert_code(0).stdout.contains("Password reset"), "{reset:?}");
    let old = cli
        .run_with_stdin(
            &["login", "--email", EMAIL, "--password-stdin"],
            Some(&format!("{new_password}\n")),
        )
        .await;
    old.assert_code(1);
    cli.login().await;
    cli.run(&["agents"]).await.assert_code(0);
}
