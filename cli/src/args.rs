//! The command line, as clap parses it.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use shared_protocol::api::MaxConcurrency;

/// Command-line client for the ScriptMesh API.
///
/// Authenticates with SCRIPTMESH_API_KEY when it is set, else with the login stored by
/// `scriptmesh login`. Exit status: 0 on success, 1 on an error (the API's message is
/// printed), 2 on a usage error; `run --wait` exits with the script's exit code.
#[derive(Debug, Parser)]
#[command(name = "scriptmesh", version, propagate_version = true)]
pub struct Cli {
    /// Orchestrator URL [default: the stored login's, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "SCRIPTMESH_URL", value_name = "URL")]
    pub url: Option<String>,

    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and store the tokens (or check SCRIPTMESH_API_KEY when it is set)
    Login(LoginArgs),
    /// Accept an invitation to a tenant with the emailed code, and store the login
    Join(JoinArgs),
    /// End the stored login's session and delete its tokens
    Logout,
    /// Show who the requests are made as
    Whoami,
    /// List agents, or show one
    Agents(AgentsArgs),
    /// Run a script on one agent, or on several (by name or tag)
    Run(RunArgs),
    /// List jobs, newest first
    Jobs(JobsArgs),
    /// Show one job with its output, or follow its output live
    Job {
        /// The job id (job_...)
        id: String,
        /// Print the output as the script writes it (stdout to stdout, stderr to stderr)
        /// until the job ends; exit with its exit status as `run --wait` does
        #[arg(long)]
        follow: bool,
    },
    /// Show a fan-out's jobs, or its agents grouped by outcome with diffs
    #[command(subcommand)]
    Fanout(FanoutCommand),
    /// Manage cron schedules
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Manage API keys (needs a login: keys cannot manage keys)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List integrations and send test events
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// The tenant's teammates and invitations (admins and owners)
    #[command(subcommand)]
    Members(MembersCommand),
    /// Who did what, newest first (admins and owners)
    Audit(AuditArgs),
    /// Change the password, or reset a forgotten one with a code sent by email
    #[command(subcommand)]
    Password(PasswordCommand),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Account email (asked for on a terminal when left out)
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of stdin instead of prompting
    #[arg(long)]
    pub password_stdin: bool,
    /// The tenant to work in (ten_...), for a member of several [default: the home tenant]
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The email the invitation went to
    #[arg(long)]
    pub email: String,
    /// The code from the invitation email
    #[arg(long)]
    pub code: String,
    /// Read the password from the first line of stdin instead of prompting: an existing
    /// account's own, else the new account's
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents (the default)
    List,
    /// Show one agent with its scripts
    Show {
        /// The agent's name
        name: String,
    },
}

/// A `key=value` script parameter.
pub type Param = (String, String);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).multiple(true).args(["agents", "tags"])))]
pub struct RunArgs {
    /// The script's name in the agents' manifests
    pub script: String,
    /// Agent to run it on; repeat for several (a fan-out)
    #[arg(long = "agent", value_name = "NAME")]
    pub agents: Vec<String>,
    /// Run it on every online agent carrying this tag; repeat to require several tags
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Script parameter, passed to the script as an environment variable
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<Param>,
    /// A secret script parameter: passed as --param is, masked in the job's output (by the
    /// agent) and never shown in job views
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub secrets: Vec<Param>,
    /// Seconds before the agent kills the script
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Wait for the end, print the output and exit with the script's exit code
    #[arg(long)]
    pub wait: bool,
    /// Fan-out: also queue jobs for offline agents
    #[arg(long)]
    pub include_offline: bool,
    /// Fan-out: most jobs queued or running at once, a number or a percentage ("25%")
    #[arg(long, value_name = "N|P%", value_parser = parse_max_concurrency)]
    pub max_concurrency: Option<MaxConcurrency>,
    /// Fan-out: after this many failed jobs, cancel those not yet handed out
    #[arg(long, value_name = "N")]
    pub max_errors: Option<i64>,
}

/// `5` or `25%`; the orchestrator checks the range.
fn parse_max_concurrency(value: &str) -> std::result::Result<MaxConcurrency, String> {
    if value.ends_with('%') {
        Ok(MaxConcurrency::Percent(value.to_owned()))
    } else {
        value
            .parse()
            .map(MaxConcurrency::Count)
            .map_err(|_| format!("{value:?} is neither a number nor a percentage such as 25%"))
    }
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only this agent's jobs
    #[arg(long)]
    pub agent: Option<String>,
    /// Only jobs in this status (pending, dispatched, running, success, failed, timeout, cancelled, lost)
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of this script
    #[arg(long)]
    pub script: Option<String>,
    /// Only jobs created at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only jobs created before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// How many (1-500)
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Continue after this page (the cursor a previous page printed)
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FanoutCommand {
    /// The fan-out's progress and every agent's job
    Show {
        /// The fan-out id (fan_...)
        id: String,
    },
    /// Agents grouped by outcome (status, exit code, stdout, stderr), each group's output
    /// diffed against the largest group's
    Diff(FanoutDiffArgs),
}

#[derive(Debug, Args)]
pub struct FanoutDiffArgs {
    /// The fan-out id (fan_...)
    pub id: String,
    /// Regular expression whose matches are replaced by <masked> in every line before
    /// comparing (timestamps, host names); repeat for several
    #[arg(long = "mask", value_name = "REGEX")]
    pub masks: Vec<String>,
    /// Ignore white space at line ends and blank lines at the end
    #[arg(long)]
    pub ignore_trailing_whitespace: bool,
    /// Unchanged lines shown around each change (0-20)
    #[arg(long, value_name = "LINES", default_value_t = 3)]
    pub context: u8,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List schedules
    List,
    /// Create a schedule
    Create(ScheduleCreateArgs),
    /// Delete a schedule
    Delete {
        /// The schedule id (sched_...)
        id: String,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["agent", "tags"])))]
pub struct ScheduleCreateArgs {
    /// The agent to run on
    #[arg(long)]
    pub agent: Option<String>,
    /// Run on every online agent carrying this tag at fire time; repeat to require several
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The script's name
    #[arg(long)]
    pub script: String,
    /// Five-field cron expression, e.g. "0 2 * * *", or @daily
    #[arg(long, value_name = "EXPRESSION")]
    pub cron: String,
    /// Script parameter
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<Param>,
    /// IANA time zone of the cron expression [default: UTC]
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Seconds before the agent kills each run
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// URL that gets each run's result
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List API keys
    List,
    /// Create an API key and print it (shown only once)
    Create(KeyCreateArgs),
    /// Revoke an API key
    Revoke {
        /// The key's id (key_...)
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// A name to recognise it by, e.g. the agent that will use it
    pub name: String,
    /// Days until it expires (1-3650) [default: never]
    #[arg(long, value_name = "DAYS")]
    pub expires_days: Option<u32>,
    /// What the key may do [default: agent with --agent, else operator]
    #[arg(long, value_enum)]
    pub role: Option<KeyRole>,
    /// An agent name the key may connect as, `*` a wildcard ("prod-*"); repeat for several.
    /// Required for, and only for, role agent
    #[arg(long = "agent", value_name = "PATTERN")]
    pub agents: Vec<String>,
    /// Operator keys: only trigger on agents with this tag; repeat for several
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Operator keys: only trigger this script; repeat for several
    #[arg(long = "script", value_name = "NAME")]
    pub scripts: Vec<String>,
}

/// An API key's role, as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyRole {
    /// What an admin may do, but keys and members (those need a login)
    Admin,
    /// Read, trigger and schedule jobs
    Operator,
    /// Read only
    Viewer,
    /// Only the agent protocol, as the agents its --agent patterns name
    Agent,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Admin => "admin",
            KeyRole::Operator => "operator",
            KeyRole::Viewer => "viewer",
            KeyRole::Agent => "agent",
        }
    }
}

/// A teammate's role, as the API spells it (owner > admin > operator > viewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MemberRole {
    /// Everything, including managing owners
    Owner,
    /// Everything but managing owners: agents, keys, integrations, members, the audit trail
    Admin,
    /// Read, trigger and schedule jobs
    Operator,
    /// Read only
    Viewer,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Operator => "operator",
            MemberRole::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List members and pending invitations
    List,
    /// Invite someone by email: they get a code to join with
    Invite {
        /// Their email address
        email: String,
        /// The role they join with
        #[arg(long, value_enum)]
        role: MemberRole,
    },
    /// Change a member's role
    Role {
        /// The member's id (usr_...)
        id: String,
        /// The new role
        #[arg(value_enum)]
        role: MemberRole,
    },
    /// Remove a member (usr_...) or withdraw an invitation (inv_...)
    Remove {
        /// The member's or invitation's id
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries by this actor (an email or a key id)
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action, e.g. job.trigger, key.create, member.invite
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries about this target (a job, key, member, agent id or name)
    #[arg(long)]
    pub target: Option<String>,
    /// Only entries at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// How many per page (1-500)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Continue after this page (the cursor a previous page printed)
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow the pages to the oldest matching entry
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Change the stored login's password (every other session ends; this one is renewed)
    Change {
        /// Read the current and then the new password from the first two lines of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Email a reset code to the account
    Forgot {
        /// The account's email
        #[arg(long)]
        email: String,
    },
    /// Set a new password with the emailed code
    Reset {
        /// The account's email
        #[arg(long)]
        email: String,
        /// The code from the email
        #[arg(long)]
        code: String,
        /// Read the new password from the first line of stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// List integrations
    List,
    /// Send a test event now; exits 1 when it was not delivered
    Test {
        /// The integration's id
        id: String,
    },
}

fn parse_param(text: &str) -> Result<Param, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
    }

    #[test]
    fn run_needs_an_agent_or_a_tag() {
        assert!(Cli::try_parse_from(["scriptmesh", "run", "x.sh"]).is_err());
        assert!(Cli::try_parse_from(["scriptmesh", "run", "x.sh", "--tag", "prod", "--tag", "eu"]).is_ok());
    }

    #[test]
    fn keys_take_a_role_and_repeated_scopes() {
        let parsed = Cli::try_parse_from([
            "scriptmesh",
            "keys",
            "create",
            "edge",
            "--role",
            "agent",
            "--agent",
            "prod-*",
            "--agent",
            "edge-1",
        ])
        .unwrap();
        let Command::Keys(KeysCommand::Create(args)) = parsed.command else {
            panic!("not keys create: {parsed:?}");
        };
        assert_eq!(args.role, Some(KeyRole::Agent));
        assert_eq!(args.agents, ["prod-*", "edge-1"]);
        assert!(Cli::try_parse_from(["scriptmesh", "keys", "create", "x", "--role", "owner"]).is_err());
    }

    #[test]
    fn members_and_audit_parse() {
        assert!(Cli::try_parse_from(["scriptmesh", "members", "invite", "a@example.com", "--role", "viewer"]).is_ok());
        assert!(
            Cli::try_parse_from(["scriptmesh", "members", "invite", "a@example.com"]).is_err(),
            "an invitation needs a role"
        );
        assert!(Cli::try_parse_from(["scriptmesh", "members", "role", "usr_1", "admin"]).is_ok());
        assert!(Cli::try_parse_from(["scriptmesh", "members", "role", "usr_1", "agent"]).is_err());
        let parsed = Cli::try_parse_from(["scriptmesh", "audit", "--action", "key.create", "--all"]).unwrap();
        let Command::Audit(args) = parsed.command else {
            panic!("not audit: {parsed:?}");
        };
        assert!(args.all && args.limit == 50 && args.action.as_deref() == Some("key.create"));
        assert!(Cli::try_parse_from(["scriptmesh", "audit", "--all", "--cursor", "c"]).is_err());
    }

    #[test]
    fn rollout_flags_take_a_count_or_a_percentage() {
        let parsed = |extra: &[&str]| {
            let mut argv = vec!["scriptmesh", "run", "x.sh", "--tag", "prod"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        assert!(parsed(&["--max-concurrency", "25%", "--max-errors", "2"]).is_ok());
        assert!(parsed(&["--max-concurrency", "3"]).is_ok());
        assert!(parsed(&["--max-concurrency", "three"]).is_err());
        assert!(parsed(&["--max-errors", "x"]).is_err());
        assert_eq!(parse_max_concurrency("25%"), Ok(MaxConcurrency::Percent("25%".into())));
        assert_eq!(parse_max_concurrency("4"), Ok(MaxConcurrency::Count(4)));
    }
}
