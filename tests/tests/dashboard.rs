//! The embedded web dashboard: served at `/` with its security headers, and driven end to
//! end in headless Chromium (through chromedriver) the way a person uses it: sign up,
//! verify, create an API key, see the agent online, run a script and read its output;
//! invite a teammate and read the audit trail; and see only what one's role allows.

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use scriptmesh_tests::{AgentSpec, Method, StatusCode, TestApp, TEST_PASSWORD};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Plain HTTP: what the server sends, without a browser.

#[actix_rt::test]
async fn the_page_is_html_with_strict_security_headers() {
    let app = TestApp::start().await;
    let page = app.request(Method::GET, "/").send().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page
        .text
        .contains("<script type=\"module\" src=\"/assets/app.js\"></script>"));
    let policy = page.header("content-security-policy").expect("a CSP header");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{policy}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    // A strong ETag, and a 304 when the browser already has this version.
    let etag = page.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let again = app
        .request(Method::GET, "/")
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.text.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = app
        .request(Method::GET, "/")
        .header("if-none-match", "\"something-else\"")
        .send()
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[actix_rt::test]
async fn assets_have_their_content_types_and_unknown_ones_are_a_json_404() {
    let app = TestApp::start().await;
    for (path, content_type, needle) in [
        ("/assets/app.js", "text/javascript; charset=utf-8", "import"),
        ("/assets/api.js", "text/javascript; charset=utf-8", "/auth/refresh"),
        ("/assets/app.css", "text/css; charset=utf-8", ":root"),
        ("/assets/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let asset = app.request(Method::GET, path).send().await;
        assert_eq!(asset.status, StatusCode::OK, "{path}: {}", asset.text);
        assert_eq!(asset.header("content-type"), Some(content_type), "{path}");
        assert!(asset.text.contains(needle), "{path}");
        assert_eq!(asset.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(asset.header("etag").is_some(), "{path}");
        assert!(asset.header("content-security-policy").is_some(), "{path}");
    }
    for missing in ["/assets/nope.js", "/assets/..%2Fmain.rs", "/assets/index.html"] {
        let answer = app.request(Method::GET, missing).send().await;
        answer.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    // The API is untouched by the dashboard: an unknown path is still the JSON 404.
    app.request(Method::GET, "/no-such-page")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------
// In a real browser.

/// chromedriver as a child process, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    profile_path: PathBuf,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the Chromium it starts joins: dropping the driver
            // ends them all, even when a failed test never closed its browser session.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::Builder::new()
            .prefix("scriptmesh-chromium-")
            .tempdir()
            .expect("a temporary profile directory");
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile_path: profile.path().to_owned(),
            _profile: profile,
        };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    async fn browser(&self) -> Client {
        let arguments = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", self.profile_path.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": arguments},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // SAFETY: killpg only sends a signal, to the group this driver leads.
        unsafe {
            libc::killpg(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page as a person sees it: find, type, click, and wait for what should appear.
struct Page<'a> {
    browser: &'a Client,
}

impl Page<'_> {
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css} on the page within {WAIT:?}: {error}"))
    }

    async fn fill(&self, css: &str, text: &str) {
        let input = self.wait_for(css).await;
        input.clear().await.expect("clear the field");
        input.send_keys(text).await.expect("type into the field");
    }

    /// Chooses the option with this value in a `<select>`.
    async fn select(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|error| panic!("choose {value:?} in {css}: {error}"));
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("click");
    }

    /// Waits until the element's text contains `expected`; returns the text.
    async fn wait_for_text(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(element) = self.browser.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if text.contains(expected) {
                        return text;
                    }
                    last = text;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{css} did not show {expected:?} within {WAIT:?}; it shows {last:?}");
    }

    async fn wait_until_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.browser.find(Locator::Css(css)).await.is_ok() {
            assert!(Instant::now() < deadline, "{css} is still on the page after {WAIT:?}");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts that nothing on the page matches `css` (markup that must not exist).
    async fn assert_absent(&self, css: &str, why: &str) {
        let found = self.browser.find_all(Locator::Css(css)).await.expect("query");
        assert!(found.is_empty(), "{css}: {why}");
    }

    async fn go(&self, base: &str, hash: &str) {
        self.browser.goto(&format!("{base}/{hash}")).await.expect("navigate");
    }

    /// Accepts the confirm() dialog a destructive button opens.
    async fn accept_dialog(&self) {
        let deadline = Instant::now() + WAIT;
        while self.browser.accept_alert().await.is_err() {
            assert!(Instant::now() < deadline, "no confirmation dialog appeared");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn session_token(&self) -> String {
        let token = self
            .browser
            .execute("return sessionStorage.getItem('scriptmesh.access_token');", vec![])
            .await
            .expect("read sessionStorage");
        token.as_str().expect("logged in: an access token").to_owned()
    }
}

/// Chromium and chromedriver from Debian's packages; CI must have them, a developer may not.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} and {CHROMEDRIVER} are required in CI (apt-get install chromium chromium-driver)"
        );
        eprintln!("NOTICE: {CHROMIUM} or {CHROMEDRIVER} is missing; the browser test is skipped");
    }
    present
}

/// Runs `flow` in the browser; if it panics, saves a screenshot and the page source
/// (paths printed) before failing the test with the original panic.
async fn with_failure_capture<F: std::future::Future<Output = ()>>(browser: &Client, flow: F) {
    let outcome = AssertUnwindSafe(flow).catch_unwind().await;
    if let Err(panic) = outcome {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let screenshot = dir.join("dashboard-failure.png");
        let source = dir.join("dashboard-failure.html");
        match browser.screenshot().await {
            Ok(png) => match std::fs::write(&screenshot, png) {
                Ok(()) => eprintln!("dashboard test failed: screenshot saved to {}", screenshot.display()),
                Err(error) => eprintln!("could not write {}: {error}", screenshot.display()),
            },
            Err(error) => eprintln!("could not take a screenshot: {error}"),
        }
        if let Ok(html) = browser.source().await {
            if std::fs::write(&source, html).is_ok() {
                eprintln!("dashboard test failed: page source saved to {}", source.display());
            }
        }
        std::panic::resume_unwind(panic);
    }
}

#[actix_rt::test]
async fn a_person_signs_up_connects_an_agent_and_runs_a_script_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = TestApp::start().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    with_failure_capture(&browser, the_whole_flow(&app, &browser)).await;
    let _ = browser.close().await;
}

async fn the_whole_flow(app: &TestApp, browser: &Client) {
    let page = Page { browser };
    let email = "dashboard-user@example.com";

    // Not logged in: the dashboard opens on the login page, which links to sign-up.
    page.go(&app.url, "").await;
    page.wait_for_text("h1", "Log in").await;
    page.click("a[href='#/signup']").await;
    page.wait_for_text("h1", "Create your account").await;
    page.fill("input[name=email]", email).await;
    page.fill("input[name=new-password]", TEST_PASSWORD).await;
    page.click("button[type=submit]").await;

    // The verification code arrives by email; entering it leads to the login.
    page.wait_for_text("h1", "Verify your email").await;
    let code = app.smtp.wait_for_code(email).await;
    page.fill("input[name=code]", &code).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("h1", "Log in").await;
    page.fill("input[name=password]", TEST_PASSWORD).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("main h1", "Agents").await;
    page.wait_for_text(".empty", "No agents yet").await;

    // Settings -> API keys: a new key is shown once.
    page.click("nav a[href='#/settings/api-keys']").await;
    page.wait_for_text("main h1", "API keys").await;
    page.fill("#key-name", "web-1").await;
    // An agent key, for the agents whose names match its pattern.
    page.select("#key-role", "agent").await;
    page.fill("#key-agents", "web-*").await;
    page.click("form button[type=submit]").await;
    let key = page.wait_for_text("#new-api-key", "sm_live_").await;
    assert!(key.starts_with("sm_live_"), "{key}");
    page.wait_for_text("tr[data-key] th", "web-1").await;
    page.wait_for_text("tr[data-key] .key-role", "agent").await;
    page.wait_for_text("tr[data-key] .key-scope", "agents: web-*").await;

    // A real agent connects with that key and shows up online.
    let _agent = app
        .start_agent(AgentSpec::new("web-1", &key).tag("edge").script(
            "hello.sh",
            "#!/bin/sh\necho \"dashboard says hello to ${name}\"\necho oops >&2\n",
        ))
        .await;
    page.click("nav a[href='#/agents']").await;
    page.wait_for_text("tr[data-agent='web-1'] .agent-status", "online")
        .await;
    page.wait_for_text("tr[data-agent='web-1']", "hello.sh").await;

    // Run the script with a param; the job page follows it to the end. The param is
    // markup on purpose: the page must show it as text, never as HTML.
    page.click("a[aria-label='Run a script on web-1']").await;
    page.wait_for_text("main h1", "Run a script").await;
    page.wait_for_text("#run-script", "hello.sh").await;
    page.fill(".param-key", "name").await;
    page.fill(".param-value", "<b>browser</b>").await;
    page.click("form button[type=submit]").await;
    page.wait_for_text("#job-status", "success").await;
    let stdout = page.wait_for_text("#job-stdout", "dashboard says hello to").await;
    assert_eq!(stdout.trim(), "dashboard says hello to <b>browser</b>");
    page.assert_absent("#job-stdout b", "script output must not be parsed as HTML")
        .await;
    page.wait_for_text("#job-stderr", "oops").await;

    // The jobs list shows it, finished.
    page.click("nav a[href='#/jobs']").await;
    page.wait_for_text("tbody tr .job-status", "success").await;

    // Fan out by tag, to web-1 and a second agent whose output differs in one line.
    let _second = app
        .start_agent(AgentSpec::new("web-2", &key).tag("edge").script(
            "hello.sh",
            "#!/bin/sh\necho \"<i>web-2</i> says hello\"\necho oops >&2\n",
        ))
        .await;
    let token = page.session_token().await;
    app.wait_for_agent_status(&token, "web-2", "online", WAIT).await;
    page.click("nav a[href='#/run']").await;
    page.click("#mode-tags").await;
    page.fill("#run-tags", "edge").await;
    page.fill("#run-script-name", "hello.sh").await;
    page.click("form button[type=submit]").await;
    page.wait_for_text("#fanout-summary", "2 succeeded").await;
    page.wait_for_text("#fanout-summary", "done").await;

    // The comparison page: two groups of one, web-1's the baseline (the tie goes to the
    // first name), web-2's diffed against it, its output shown as text.
    page.click("#fanout-compare").await;
    page.wait_for_text("main h1", "Fan-out fan_").await;
    page.wait_for_text("#fanout-groups", "2 different results").await;
    let baseline = page.wait_for_text(".fanout-group:nth-of-type(1)", "Baseline").await;
    assert!(baseline.contains("web-1") && !baseline.contains("web-2"), "{baseline}");
    let other = page.wait_for_text(".fanout-group:nth-of-type(2)", "Group").await;
    assert!(
        other.contains("web-2") && other.contains("differs in stdout"),
        "{other}"
    );
    page.wait_for_text(".fanout-group .diff .diff-del", "-dashboard says hello to")
        .await;
    let added = page
        .wait_for_text(".fanout-group .diff .diff-add", "+<i>web-2</i> says hello")
        .await;
    assert_eq!(added.trim(), "+<i>web-2</i> says hello");
    page.assert_absent(".diff i", "diff text must not be parsed as HTML")
        .await;
    page.wait_for_text("#fanout-progress tr[data-agent='web-2']", "success")
        .await;
    // A mask that hides the differing line: one result.
    page.fill("#fanout-masks", "^.*hello.*$").await;
    page.click("#main form button[type=submit]").await;
    page.wait_for_text("#fanout-groups", "Every finished job had the same result.")
        .await;
    // A job of the fan-out links back to this page.
    page.click(".fanout-group a.tag").await;
    page.wait_for_text("#job-status", "success").await;
    page.click("#job-fanout").await;
    page.wait_for_text("#fanout-groups", "different results").await;

    // A schedule's next fires are previewed as the expression is typed; a bad one says why.
    page.click("nav a[href='#/schedules']").await;
    page.fill("#schedule-cron", "0 2 * * *").await;
    page.wait_for_text("#schedule-preview", "Next fires (UTC)").await;
    let fires = browser
        .find_all(Locator::Css("#schedule-preview li"))
        .await
        .expect("query");
    assert_eq!(fires.len(), 5);
    assert!(fires[0].text().await.expect("text").contains("T02:00:00Z"));
    page.fill("#schedule-cron", "61 * * * *").await;
    page.wait_for_text("#schedule-preview .error", "not valid").await;

    // Revoke the key in the UI: it leaves the list, and the API agrees.
    let token = page.session_token().await;
    page.click("nav a[href='#/settings/api-keys']").await;
    page.click("button[aria-label='Revoke key web-1']").await;
    page.accept_dialog().await;
    page.wait_until_gone("tr[data-key]").await;
    let (status, keys) = app.get("/auth/api-keys", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys, json!([]), "the revoked key is gone");

    // The API docs render in the same browser, offline and under their CSP: Swagger UI
    // loads /openapi.json and lists the operations.
    browser.goto(&format!("{}/docs/", app.url)).await.expect("open /docs/");
    page.wait_for_text(".swagger-ui .info .title", "ScriptMesh API").await;
    page.wait_for_text(".swagger-ui", "/trigger-script").await;
    let operations = browser
        .find_all(Locator::Css(".swagger-ui .opblock"))
        .await
        .expect("query");
    assert!(
        operations.len() > 30,
        "Swagger UI lists {} operations",
        operations.len()
    );
}

/// Logs in through the login form and waits for the agents page.
async fn log_in(page: &Page<'_>, base: &str, email: &str) {
    page.go(base, "#/login").await;
    page.wait_for_text("h1", "Log in").await;
    page.fill("input[name=email]", email).await;
    page.fill("input[name=password]", TEST_PASSWORD).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("main h1", "Agents").await;
}

#[actix_rt::test]
async fn an_owner_invites_a_teammate_and_reads_the_audit_trail_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = TestApp::start().await;
    let owner = app.register_and_login("owner@example.com").await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    with_failure_capture(&browser, invite_flow(&app, &browser, &owner.access_token)).await;
    let _ = browser.close().await;
}

async fn invite_flow(app: &TestApp, browser: &Client, owner_token: &str) {
    let page = Page { browser };
    log_in(&page, &app.url, "owner@example.com").await;
    page.wait_for_text("#account-role", "owner").await;

    // Members: the owner is listed; an invitation appears as pending with its role.
    page.click("nav a[href='#/settings/members']").await;
    page.wait_for_text("main h1", "Members").await;
    page.wait_for_text("tr[data-email='owner@example.com']", "active").await;
    page.fill("#member-email", "teammate@example.com").await;
    page.select("#member-role", "viewer").await;
    page.click("#main form button[type=submit]").await;
    let row = page
        .wait_for_text("tr[data-email='teammate@example.com']", "invited")
        .await;
    assert!(row.contains("viewer"), "{row}");
    let code = app.smtp.wait_for_code("teammate@example.com").await;
    assert_eq!(code.len(), 6);
    let (status, listed) = app.get("/tenant/members", Some(owner_token)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["invitations"][0]["email"], "teammate@example.com", "{listed}");

    // The audit trail records it (the server writes entries in batches every 200 ms).
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    page.click("nav a[href='#/audit']").await;
    page.wait_for_text("main h1", "Audit trail").await;
    page.wait_for_text("tr[data-action='member.invite']", "owner@example.com")
        .await;
    page.fill("#audit-action", "member.invite").await;
    page.click("#main form[role=search] button[type=submit]").await;
    // Only that action is left (the logins are gone).
    page.wait_until_gone("tr[data-action='user.login']").await;
    page.wait_for_text("tr[data-action='member.invite']", "ok").await;

    // Withdrawn, the invitation leaves the list.
    page.click("nav a[href='#/settings/members']").await;
    page.click("button[aria-label='Withdraw the invitation to teammate@example.com']")
        .await;
    page.accept_dialog().await;
    page.wait_until_gone("tr[data-email='teammate@example.com']").await;
}

#[actix_rt::test]
async fn a_viewer_joins_and_sees_only_what_the_role_allows() {
    if !browser_available() {
        return;
    }
    let app = TestApp::start().await;
    let owner = app.register_and_login("owner@example.com").await;
    let key = app
        .create_api_key_details(&owner, &json!({"name": "web", "role": "agent", "agents": ["web-*"]}))
        .await
        .key;
    let _agent = app
        .start_agent(AgentSpec::new("web-1", &key).script("hello.sh", "#!/bin/sh\necho hi\n"))
        .await;
    app.wait_for_agent_status(&owner.access_token, "web-1", "online", WAIT)
        .await;
    let (status, invitation) = app
        .post_json(
            "/tenant/members",
            &json!({"email": "viewer@example.com", "role": "viewer"}),
            owner.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    with_failure_capture(&browser, viewer_flow(&app, &browser)).await;
    let _ = browser.close().await;
}

async fn viewer_flow(app: &TestApp, browser: &Client) {
    let page = Page { browser };
    // Joining with the emailed code and a new password logs the viewer in.
    page.go(&app.url, "#/join?email=viewer@example.com").await;
    page.wait_for_text("h1", "Join a workspace").await;
    let code = app.smtp.wait_for_code("viewer@example.com").await;
    page.fill("input[name=code]", &code).await;
    page.fill("input[name=password]", TEST_PASSWORD).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("main h1", "Agents").await;
    page.wait_for_text("#account-role", "viewer").await;

    // What a viewer reads is there; what it may not do is not offered.
    page.wait_for_text("tr[data-agent='web-1'] .agent-status", "online")
        .await;
    for allowed in ["#/agents", "#/jobs", "#/schedules"] {
        page.wait_for(&format!("nav a[href='{allowed}']")).await;
    }
    for hidden in [
        "#/run",
        "#/settings/api-keys",
        "#/settings/integrations",
        "#/settings/members",
        "#/audit",
    ] {
        page.assert_absent(&format!("nav a[href='{hidden}']"), "not for a viewer")
            .await;
    }
    page.assert_absent("a[aria-label='Run a script on web-1']", "a viewer cannot run scripts")
        .await;
    page.assert_absent("main a[href='#/run']", "no Run button").await;
    page.click("nav a[href='#/schedules']").await;
    page.wait_for_text("main h1", "Schedules").await;
    page.assert_absent("#new-schedule-title", "a viewer cannot create schedules")
        .await;

    // A page typed in by address says why it is not shown.
    page.go(&app.url, "#/settings/members").await;
    page.wait_for_text("#not-allowed", "members.manage").await;

    // The same person logs in again through the form: the role is fetched again.
    page.click("#account button").await;
    page.wait_for_text("h1", "Log in").await;
    log_in(&page, &app.url, "viewer@example.com").await;
    page.wait_for_text("#account-role", "viewer").await;
    page.assert_absent("nav a[href='#/run']", "still a viewer").await;
}

#[actix_rt::test]
async fn a_forgotten_password_is_reset_and_a_member_of_two_workspaces_switches_between_them() {
    if !browser_available() {
        return;
    }
    let app = TestApp::start().await;
    let owner = app.register_and_login("owner@example.com").await;
    // Someone with a workspace of their own is also an operator in the owner's.
    let both = app.register_and_login("both@example.com").await;
    let (status, invitation) = app
        .post_json(
            "/tenant/members",
            &json!({"email": "both@example.com", "role": "operator"}),
            owner.token(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let code = app.smtp.wait_for_code_in_message("both@example.com", 2).await;
    let (status, joined) = app
        .post_json(
            "/auth/accept-invite",
            &json!({"email": "both@example.com", "code": code, "password": TEST_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    with_failure_capture(
        &browser,
        account_flow(&app, &browser, &owner.tenant_id, &both.tenant_id),
    )
    .await;
    let _ = browser.close().await;
}

async fn account_flow(app: &TestApp, browser: &Client, owners_tenant: &str, home_tenant: &str) {
    let page = Page { browser };
    let email = "both@example.com";
    let new_password = "a brand new long password";

    // Forgot password: a code by email, then a new password, then the login.
    page.go(&app.url, "#/login").await;
    page.click("#forgot-link").await;
    page.wait_for_text("h1", "Forgot your password").await;
    page.fill("input[name=email]", email).await;
    let before = app.smtp.messages_to(email).len();
    page.click("button[type=submit]").await;
    page.wait_for_text("h1", "Reset your password").await;
    let code = app.smtp.wait_for_code_in_message(email, before + 1).await;
    page.fill("input[name=code]", &code).await;
    page.fill("input[name=new-password]", new_password).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("h1", "Log in").await;
    page.fill("input[name=password]", new_password).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("main h1", "Agents").await;

    // The home workspace first, as its owner; the switcher offers the other one.
    page.wait_for_text("#account-role", "owner").await;
    let home = page
        .wait_for(&format!("#account-tenant option[value='{home_tenant}']"))
        .await;
    assert!(
        home.is_selected().await.expect("selected"),
        "the home workspace is current"
    );
    page.select("#account-tenant", owners_tenant).await;
    page.wait_for_text("#login-tenant", "owner's workspace").await;
    page.fill("input[name=password]", new_password).await;
    page.click("button[type=submit]").await;
    page.wait_for_text("main h1", "Agents").await;
    page.wait_for_text("#account-role", "operator").await;
    let current = page
        .wait_for(&format!("#account-tenant option[value='{owners_tenant}']"))
        .await;
    assert!(
        current.is_selected().await.expect("selected"),
        "now in the owner's workspace"
    );
    // An operator runs scripts but does not manage members.
    page.wait_for("nav a[href='#/run']").await;
    page.assert_absent("nav a[href='#/settings/members']", "not for an operator")
        .await;
}

#[actix_rt::test]
async fn a_running_jobs_output_shows_live_in_the_browser() {
    if !browser_available() {
        return;
    }
    let app = TestApp::start().await;
    let session = app.register_and_login("live@example.com").await;
    let key = app.create_api_key(&session, "web-1").await;
    let _agent = app
        .start_agent(AgentSpec::new("web-1", &key).script(
            "ticks.sh",
            "#!/bin/sh\nfor i in 1 2 3 4 5; do\n  echo \"tick $i $(date +%s%3N) <b>bold</b>\"\n  sleep 1\ndone\n",
        ))
        .await;
    app.wait_for_agent_status(&session.access_token, "web-1", "online", WAIT)
        .await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    with_failure_capture(
        &browser,
        live_output_flow(&app, &browser, &session.access_token, &session.refresh_token),
    )
    .await;
    let _ = browser.close().await;
}

/// Opens a running job's page (logged in with the session's tokens) and notes, by the
/// machine's clock, when each change of its live output appeared: every line must show
/// within 500 ms of the script printing it.
async fn live_output_flow(app: &TestApp, browser: &Client, access: &str, refresh: &str) {
    let page = Page { browser };
    page.go(&app.url, "#/login").await;
    page.wait_for_text("h1", "Log in").await;
    browser
        .execute(
            "sessionStorage.setItem('scriptmesh.access_token', arguments[0]);\
             sessionStorage.setItem('scriptmesh.refresh_token', arguments[1]);",
            vec![json!(access), json!(refresh)],
        )
        .await
        .expect("store the session");
    let (status, queued) = app
        .post_json(
            "/trigger-script",
            &json!({"agent": "web-1", "run_script": "ticks.sh"}),
            Some(access),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let job_id = queued["job_id"].as_str().unwrap().to_owned();
    page.go(&app.url, &format!("#/jobs/{job_id}")).await;
    page.wait_for("#job-live").await;
    // Every change of the live output, with the time it was made.
    browser
        .execute(
            "window.liveSeen = [];\
             const live = document.getElementById('job-live');\
             new MutationObserver(() => window.liveSeen.push([Date.now(), live.textContent]))\
                 .observe(live, {childList: true, subtree: true, characterData: true});",
            vec![],
        )
        .await
        .expect("observe the live output");
    page.wait_for_text("#job-live", "tick 5 ").await;
    let seen = browser
        .execute("return window.liveSeen;", vec![])
        .await
        .expect("read the changes");
    let mut first_seen: Vec<(u32, i64)> = Vec::new();
    for change in seen.as_array().expect("an array") {
        let at = change[0].as_i64().unwrap();
        for line in change[1].as_str().unwrap().lines() {
            let mut words = line.split(' ');
            if words.next() != Some("tick") {
                continue;
            }
            let n: u32 = words.next().unwrap().parse().unwrap();
            let printed: i64 = words.next().unwrap().parse().unwrap();
            if !first_seen.iter().any(|(seen, _)| *seen == n) {
                first_seen.push((n, at - printed));
            }
        }
    }
    eprintln!("browser: ticks seen after {first_seen:?} ms");
    // The first tick may be printed before the page was observing; the others are timed.
    for (n, late) in first_seen.iter().filter(|(n, _)| *n > 1) {
        assert!(
            *late <= 500,
            "tick {n} showed {late} ms after it was printed: {first_seen:?}"
        );
    }
    assert!(first_seen.len() >= 4, "{first_seen:?}");
    page.assert_absent("#job-live b", "live output must not be parsed as HTML")
        .await;
    // When the job ends, the page shows the stored result.
    page.wait_for_text("#job-status", "success").await;
    page.wait_for_text("#job-stdout", "tick 5").await;
}
