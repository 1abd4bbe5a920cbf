//! The documentation stays true to the product (issue #23).
//!
//! - The README's "two commands" and its first script are what `./quickstart` runs and
//!   prints: the commands, the address, the agent's name, the credentials file and the
//!   curl lines of the quick start's banner, which the book's Getting started repeats.
//! - Every `curl` example in the book (`docs/src/**/*.md`) and the README that calls the
//!   orchestrator names a method and path that the server's own `/openapi.json` documents,
//!   so an example cannot name an endpoint that does not exist or was renamed.

use scriptmesh_tests::{Method, StatusCode, TestApp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every Markdown file of the book, and the README.
fn documentation_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repository().join("docs/src"), &mut files);
    files.push(repository().join("README.md"));
    files
}

/// The contents of the fenced code blocks of a Markdown text, with their info strings.
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match (&mut current, trimmed.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Shell lines with their `\` continuations joined, white space collapsed, comments and
/// blank lines dropped.
fn logical_lines(script: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in script.lines() {
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let joined = pending.split_whitespace().collect::<Vec<_>>().join(" ");
        pending.clear();
        if !joined.is_empty() && !joined.starts_with('#') {
            lines.push(joined);
        }
    }
    lines
}

/// The value a quickstart line `NAME=...` or `NAME="${NAME:-default}"` gives by default.
fn quickstart_default(quickstart: &str, name: &str) -> String {
    let line = quickstart
        .lines()
        .map(str::trim)
        .map(|line| line.strip_prefix("export ").unwrap_or(line))
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("quickstart sets no {name}"));
    let value = line.trim_matches('"');
    match value.strip_prefix(&format!("${{{name}:-")) {
        Some(rest) => rest.strip_suffix('}').expect("a closed default").to_owned(),
        None => value.to_owned(),
    }
}

/// What the quick start's banner (its `cat <<BANNER` here-document) prints, with the
/// script's variables at their defaults.
fn quickstart_banner(quickstart: &str) -> String {
    let start = quickstart.find("<<BANNER\n").expect("quickstart prints a banner") + "<<BANNER\n".len();
    let end = start + quickstart[start..].find("\nBANNER").expect("the banner ends");
    let state = quickstart_default(quickstart, "STATE");
    let url = format!("http://{}", quickstart_default(quickstart, "BIND_ADDR"));
    quickstart[start..end]
        .replace("$STATE", &state)
        .replace("$URL", &url)
        .replace("\\$", "$")
        .replace("\\\\", "\\")
}

/// The banner's "Try it:" commands: the first script, as the quick start tells users to run it.
fn quickstart_first_script(banner: &str) -> Vec<String> {
    let after = banner
        .split_once("Try it:")
        .expect("the banner has a \"Try it:\" section")
        .1;
    let commands: String = after
        .lines()
        .take_while(|line| line.starts_with("  ") || line.trim().is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    logical_lines(&commands)
}

/// The shell block of a Markdown text that starts with `source .../local.env`.
fn first_script_block(markdown: &str, what: &str) -> Vec<String> {
    code_blocks(markdown)
        .into_iter()
        .map(|(_, body)| logical_lines(&body))
        .find(|lines| lines.first().is_some_and(|line| line.starts_with("source ")))
        .unwrap_or_else(|| panic!("{what} has no first-script block starting with `source ...`"))
}

#[test]
fn the_readme_commands_and_first_script_are_what_the_quickstart_runs_and_prints() {
    let readme = read("README.md");
    let quickstart = read("quickstart");

    // The two commands, as commands of a shell block (not only mentioned in prose).
    let commands: Vec<String> = code_blocks(&readme)
        .into_iter()
        .filter(|(info, _)| info == "sh" || info == "bash")
        .flat_map(|(_, body)| logical_lines(&body))
        .collect();
    for command in ["./quickstart", "cargo test --workspace"] {
        assert!(
            commands
                .iter()
                .any(|line| line == command || line.starts_with(&format!("{command} "))),
            "README.md has no shell line running `{command}`; its shell lines: {commands:#?}"
        );
    }
    assert!(repository().join("quickstart").is_file(), "./quickstart is missing");

    // What the README says the quick start does is what the script does.
    let state = quickstart_default(&quickstart, "STATE");
    let url = format!("http://{}", quickstart_default(&quickstart, "BIND_ADDR"));
    let agent_name = quickstart
        .split("AGENT_NAME=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("quickstart starts an agent with AGENT_NAME=...")
        .to_owned();
    let credentials = format!("{state}/local.env");
    let database = format!("{state}/scriptmesh.db");
    assert!(
        quickstart.contains("sqlite://$STATE/scriptmesh.db"),
        "the quick start no longer runs on {database}: update the README and the book"
    );
    assert!(quickstart.contains("examples/scripts") && quickstart.contains("examples/script_manifest.json"));
    for fact in [url.as_str(), &agent_name, &credentials, &database, "examples/scripts"] {
        assert!(
            readme.contains(fact),
            "README.md does not say {fact:?}, which ./quickstart uses"
        );
    }

    // The first script: the README's block is exactly the banner's "Try it:" lines.
    let banner = quickstart_banner(&quickstart);
    assert!(
        banner.contains(&format!("\"{agent_name}\"")),
        "the banner names the agent: {banner}"
    );
    let printed = quickstart_first_script(&banner);
    assert!(
        printed.len() >= 3 && printed[0] == format!("source {credentials}"),
        "the banner's first script: {printed:#?}"
    );
    assert_eq!(
        first_script_block(&readme, "README.md"),
        printed,
        "README.md's first script differs from what ./quickstart prints"
    );
    assert_eq!(
        first_script_block(&read("docs/src/getting-started.md"), "docs/src/getting-started.md"),
        printed,
        "the book's Getting started differs from what ./quickstart prints"
    );

    // The script it runs is one the example manifest whitelists.
    let script = printed
        .iter()
        .find_map(|line| line.split("\"run_script\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the first script runs a script");
    let manifest: Value = serde_json::from_str(&read("examples/script_manifest.json")).expect("the manifest is JSON");
    assert!(
        manifest["scripts"]
            .as_array()
            .expect("scripts")
            .iter()
            .any(|entry| entry["name"] == script),
        "{script} is not in examples/script_manifest.json"
    );
    assert!(repository().join("examples/scripts").join(script).is_file());
}

/// A shell word or an operator between commands.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Separator,
}

/// Shell-like words: quotes group (their contents kept, unexpanded), `|`, `;`, `&&`, `||`
/// and `)` separate commands, an unquoted `#` word starts a comment.
fn shell_tokens(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_word = true;
                for inner in chars.by_ref() {
                    if inner == '\'' {
                        break;
                    }
                    word.push(inner);
                }
            }
            '"' => {
                in_word = true;
                while let Some(inner) = chars.next() {
                    match inner {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        other => word.push(other),
                    }
                }
            }
            '#' if !in_word => break,
            '|' | ';' | '&' | ')' | '(' => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
                if matches!(ch, '|' | '&') && chars.peek() == Some(&ch) {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            c if c.is_whitespace() => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        tokens.push(Token::Word(word));
    }
    tokens
}

/// One `curl` call of the documentation that targets the orchestrator.
#[derive(Debug)]
struct Example {
    file: String,
    method: String,
    path: String,
    line: String,
}

/// Where the examples put the orchestrator (the others, e.g. an agent's own port, are not
/// its API).
const ORCHESTRATOR_BASES: [&str; 5] = [
    "$URL",
    "${URL}",
    "http://127.0.0.1:8080",
    "http://localhost:8080",
    "https://scriptmesh.example.com",
];

fn curl_examples(file: &Path) -> Vec<Example> {
    let markdown = std::fs::read_to_string(file).expect("read");
    let name = file.strip_prefix(repository()).unwrap_or(file).display().to_string();
    let mut examples = Vec::new();
    for (info, body) in code_blocks(&markdown) {
        if !matches!(info.as_str(), "" | "sh" | "bash" | "console" | "shell") {
            continue;
        }
        for line in logical_lines(&body) {
            let tokens = shell_tokens(&line);
            let mut index = 0;
            while index < tokens.len() {
                if tokens[index] != Token::Word("curl".into()) {
                    index += 1;
                    continue;
                }
                let mut method: Option<String> = None;
                let mut has_data = false;
                let mut head = false;
                let mut url: Option<String> = None;
                index += 1;
                while let Some(Token::Word(word)) = tokens.get(index) {
                    match word.as_str() {
                        "-X" | "--request" => {
                            if let Some(Token::Word(value)) = tokens.get(index + 1) {
                                method = Some(value.to_ascii_lowercase());
                            }
                            index += 1;
                        }
                        "-I" | "--head" => head = true,
                        "-d" | "--data" | "--data-raw" | "--data-binary" | "--json" => {
                            has_data = true;
                            index += 1;
                        }
                        "-H" | "--header" | "-o" | "--output" | "-u" | "--user" | "-w" | "--write-out" => index += 1,
                        other if ORCHESTRATOR_BASES.iter().any(|base| other.starts_with(base)) => {
                            url = Some(other.to_owned());
                        }
                        _ => {}
                    }
                    index += 1;
                }
                let Some(url) = url else { continue };
                let base = ORCHESTRATOR_BASES
                    .iter()
                    .filter(|base| url.starts_with(*base))
                    .max_by_key(|base| base.len())
                    .expect("matched a base");
                let path = url[base.len()..]
                    .split(['?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let method = method.unwrap_or_else(|| {
                    if head {
                        "head".into()
                    } else if has_data {
                        "post".into()
                    } else {
                        "get".into()
                    }
                });
                examples.push(Example {
                    file: name.clone(),
                    method,
                    path: if path.is_empty() { "/".into() } else { path },
                    line: line.clone(),
                });
            }
        }
    }
    examples
}

/// Whether a concrete path (`/jobs/job_0193/cancel`) fits a documented template
/// (`/jobs/{job_id}/cancel`): same segments, a `{param}` standing for any one segment.
fn fits(path: &str, template: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    segments.len() == template.len()
        && segments.iter().zip(&template).all(|(segment, expected)| {
            segment == expected || (expected.starts_with('{') && expected.ends_with('}') && !segment.is_empty())
        })
}

#[actix_rt::test]
async fn every_curl_example_in_the_book_names_a_documented_operation() {
    let app = TestApp::start().await;
    let response = app.request(Method::GET, "/openapi.json").send().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let paths = response.body["paths"]
        .as_object()
        .expect("the document has paths")
        .clone();
    // Served outside the document (OpenAPI does not describe itself, nor the dashboard).
    let undocumented: BTreeSet<(&str, &str)> = [
        ("get", "/openapi.json"),
        ("get", "/docs"),
        ("get", "/docs/"),
        ("get", "/"),
    ]
    .into_iter()
    .collect();

    let examples: Vec<Example> = documentation_files()
        .iter()
        .flat_map(|file| curl_examples(file))
        .collect();
    let api_chapter = examples.iter().filter(|e| e.file.ends_with("docs/src/api.md")).count();
    assert!(
        examples.len() >= 50 && api_chapter >= 15,
        "too few curl examples found ({} in all, {api_chapter} in api.md): is the extraction broken?",
        examples.len()
    );

    let mut wrong = Vec::new();
    let mut operations = BTreeSet::new();
    for example in &examples {
        if undocumented.contains(&(example.method.as_str(), example.path.as_str())) {
            continue;
        }
        let documented = paths.iter().find(|(template, item)| {
            fits(&example.path, template)
                && (item.get(&example.method).is_some() || (example.method == "head" && item.get("get").is_some()))
        });
        match documented {
            Some((template, _)) => {
                operations.insert(format!("{} {template}", example.method));
            }
            None => wrong.push(format!(
                "{}: {} {} is not in /openapi.json\n    {}",
                example.file,
                example.method.to_uppercase(),
                example.path,
                example.line
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "curl examples naming no documented operation:\n{}",
        wrong.join("\n")
    );
    // The examples cover the API broadly, not one endpoint many times.
    assert!(
        operations.len() >= 30,
        "only {} operations have an example: {operations:#?}",
        operations.len()
    );
}

#[test]
fn the_example_extraction_reads_methods_paths_and_ids() {
    let markdown = "```sh\ncurl -s -X POST $URL/jobs/job_0193/cancel -H \"Authorization: Bearer $TOKEN\"\n\
                    curl -s \"$URL/jobs?status=failed&limit=50\" | jq .\n\
                    curl -s -X POST http://127.0.0.1:8080/trigger-script -H 'x: y' \\\n     -d '{\"a\": 1}'\n\
                    curl -I $URL/health\ncurl -s http://127.0.0.1:8001/health   # the agent's port: not the API\n```\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("example.md");
    std::fs::write(&file, markdown).expect("write");
    let found: Vec<(String, String)> = curl_examples(&file)
        .into_iter()
        .map(|example| (example.method, example.path))
        .collect();
    let expected: Vec<(String, String)> = [
        ("post", "/jobs/job_0193/cancel"),
        ("get", "/jobs"),
        ("post", "/trigger-script"),
        ("head", "/health"),
    ]
    .iter()
    .map(|(method, path)| (method.to_string(), path.to_string()))
    .collect();
    assert_eq!(found, expected);
    assert!(fits("/jobs/job_0193/cancel", "/jobs/{job_id}/cancel"));
    assert!(!fits("/jobs/job_0193/cancel", "/jobs/{job_id}"));
    assert!(!fits("/jobz", "/jobs"));
}
