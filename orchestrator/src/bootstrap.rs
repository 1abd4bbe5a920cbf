//! `scriptmesh-orchestrator bootstrap`: the quick start's first-run set-up. Creates (once) a
//! verified local account and tenant, and issues two API keys: an `agent` key that only
//! `local-agent` can use, and an `admin` key for the user's own scripts and curl, so that a
//! new user has a working fleet without an email round trip.

use crate::auth::permissions::{KeyScope, Role};
use crate::auth::{api_keys, passwords, sha256_hex};
use crate::config::Config;
use crate::db::models::{ApiKey, Tenant, User};
use crate::db::{self, accounts, Db};
use crate::error::{Error, Result};
use rand::distr::{Alphanumeric, SampleString};

/// The name of the quick start's agent, whom its agent key is for.
pub const LOCAL_AGENT: &str = "local-agent";

pub struct Bootstrapped {
    pub email: String,
    /// Only when the account was created now.
    pub password: Option<String>,
    /// An `admin` key, for the user's scripts.
    pub api_key: String,
    /// An `agent` key for [`LOCAL_AGENT`] only.
    pub agent_key: String,
}

pub async fn bootstrap(config: &Config, email: &str) -> Result<Bootstrapped> {
    let db = Db::connect(&config.database_url, 2).await?;
    let email = crate::api::auth::normalize_email(email)?;
    let (user, password) = local_account(config, &db, &email).await?;
    let api_key = issue_key(&db, &user, "local-admin", Role::Admin, None).await?;
    let agent_key = issue_key(&db, &user, LOCAL_AGENT, Role::Agent, Some(LOCAL_AGENT)).await?;
    Ok(Bootstrapped {
        email,
        password,
        api_key,
        agent_key,
    })
}

/// Like [`bootstrap`], with an `agent` key for each of `agents`: one per agent of a fleet
/// (the bench's idle fleet, keyed as the documentation advises).
pub async fn bootstrap_fleet_keys(config: &Config, email: &str, agents: &[String]) -> Result<Vec<String>> {
    let db = Db::connect(&config.database_url, 2).await?;
    let email = crate::api::auth::normalize_email(email)?;
    let (user, _) = local_account(config, &db, &email).await?;
    let mut keys = Vec::with_capacity(agents.len());
    for agent in agents {
        keys.push(issue_key(&db, &user, agent, Role::Agent, Some(agent)).await?);
    }
    Ok(keys)
}

/// The verified account of `email`, created now (with its tenant and a random password,
/// returned) if it does not exist yet.
async fn local_account(config: &Config, db: &Db, email: &str) -> Result<(User, Option<String>)> {
    if let Some(user) = accounts::find_user_by_email(db, email).await? {
        return Ok((user, None));
    }
    let now = db::now_ms();
    let password = Alphanumeric.sample_string(&mut rand::rng(), 16);
    let tenant = Tenant {
        id: db::new_id("ten"),
        name: "Local".into(),
        created_at: now,
    };
    let user = User {
        id: db::new_id("usr"),
        tenant_id: tenant.id.clone(),
        email: email.to_owned(),
        password_hash: passwords::hash(password.clone(), config.bcrypt_cost).await?,
        email_verified: true,
        created_at: now,
    };
    accounts::create_tenant_with_owner(db, &tenant, &user).await?;
    Ok((user, Some(password)))
}

/// A new `sm_live_` key of the user's tenant with `role` (an `agent` key for the agent
/// named `agent`); the raw key is returned (only its hash is stored).
async fn issue_key(db: &Db, user: &User, name: &str, role: Role, agent: Option<&str>) -> Result<String> {
    let raw = api_keys::generate();
    let scope = agent.map(|agent| KeyScope {
        agents: vec![agent.to_owned()],
        ..KeyScope::default()
    });
    accounts::insert_api_key(
        db,
        &ApiKey {
            id: db::new_id("key"),
            tenant_id: user.tenant_id.clone(),
            user_id: Some(user.id.clone()),
            name: name.to_owned(),
            key_prefix: api_keys::display_prefix(&raw),
            key_hash: sha256_hex(&raw),
            created_at: db::now_ms(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            role: role.as_str().to_owned(),
            scope: scope.map(|scope| serde_json::to_string(&scope)).transpose()?,
        },
    )
    .await
    .map_err(|e| Error::Internal(format!("creating the {name} key: {e}")))?;
    Ok(raw)
}
