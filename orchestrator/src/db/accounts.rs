//! Tenants, users, email verification codes, refresh tokens and API keys.

use super::models::{ApiKey, EmailCode, RefreshToken, Tenant, User};
use super::schema::{api_keys, email_codes, refresh_tokens, tenants, users};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Creates a tenant and its owner in one transaction; a taken email is a 409.
pub async fn create_tenant_with_owner(db: &Db, tenant: &Tenant, user: &User) -> Result<()> {
    let outcome: Result<()> = with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            diesel::insert_into(tenants::table).values(tenant).execute(conn).await?;
            diesel::insert_into(users::table).values(user).execute(conn).await?;
            Ok(())
        })
        .await
    });
    outcome.map_err(|error| match error {
        Error::Conflict { .. } => Error::conflict(
            "email_taken",
            "an account with this email already exists; log in instead",
        ),
        other => other,
    })
}

pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<User>> {
    with_conn!(db, |conn| {
        Ok(users::table
            .filter(users::email.eq(email))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn find_user(db: &Db, tenant_id: &str, user_id: &str) -> Result<Option<User>> {
    with_conn!(db, |conn| {
        Ok(users::table
            .filter(users::id.eq(user_id))
            .filter(users::tenant_id.eq(tenant_id))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn find_tenant(db: &Db, tenant_id: &str) -> Result<Option<Tenant>> {
    with_conn!(db, |conn| {
        Ok(tenants::table
            .filter(tenants::id.eq(tenant_id))
            .select(Tenant::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn mark_email_verified(db: &Db, user_id: &str) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(users::table.filter(users::id.eq(user_id)))
            .set(users::email_verified.eq(true))
            .execute(conn)
            .await?;
        diesel::delete(email_codes::table.filter(email_codes::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Stores a fresh code for the user, replacing any earlier one.
pub async fn replace_email_code(db: &Db, code: &EmailCode) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(email_codes::table)
            .values(code)
            .on_conflict(email_codes::user_id)
            .do_update()
            .set((
                email_codes::code_hash.eq(&code.code_hash),
                email_codes::expires_at.eq(code.expires_at),
                email_codes::attempts.eq(0),
                email_codes::created_at.eq(code.created_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn find_email_code(db: &Db, user_id: &str) -> Result<Option<EmailCode>> {
    with_conn!(db, |conn| {
        Ok(email_codes::table
            .filter(email_codes::user_id.eq(user_id))
            .select(EmailCode::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Counts a wrong try against the code.
pub async fn count_wrong_code(db: &Db, user_id: &str) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(email_codes::table.filter(email_codes::user_id.eq(user_id)))
            .set(email_codes::attempts.eq(email_codes::attempts + 1))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn insert_refresh_token(db: &Db, token: &RefreshToken) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(refresh_tokens::table)
            .values(token)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn find_refresh_token(db: &Db, token_hash: &str) -> Result<Option<RefreshToken>> {
    with_conn!(db, |conn| {
        Ok(refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .select(RefreshToken::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Marks a refresh token used; false when it was already used or revoked (a replay), so
/// that of two concurrent refreshes with one token exactly one wins.
pub async fn consume_refresh_token(db: &Db, id: &str, now: i64) -> Result<bool> {
    with_conn!(db, |conn| {
        let changed = diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::id.eq(id))
                .filter(refresh_tokens::used_at.is_null())
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::used_at.eq(now))
        .execute(conn)
        .await?;
        Ok(changed == 1)
    })
}

pub async fn revoke_refresh_family(db: &Db, family_id: &str, now: i64) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(family_id))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn)
        .await?;
        Ok(())
    })
}

pub async fn insert_api_key(db: &Db, key: &ApiKey) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(api_keys::table).values(key).execute(conn).await?;
        Ok(())
    })
}

/// The tenant's keys that are not revoked, newest first.
pub async fn list_api_keys(db: &Db, tenant_id: &str) -> Result<Vec<ApiKey>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::revoked_at.is_null())
            .order(api_keys::created_at.desc())
            .select(ApiKey::as_select())
            .load(conn)
            .await?)
    })
}

pub async fn find_api_key_by_hash(db: &Db, key_hash: &str) -> Result<Option<ApiKey>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .filter(api_keys::key_hash.eq(key_hash))
            .select(ApiKey::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Revokes one of the tenant's keys; false when there is no such live key in this tenant.
pub async fn revoke_api_key(db: &Db, tenant_id: &str, key_id: &str, now: i64) -> Result<bool> {
    with_conn!(db, |conn| {
        let changed = diesel::update(
            api_keys::table
                .filter(api_keys::id.eq(key_id))
                .filter(api_keys::tenant_id.eq(tenant_id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(now))
        .execute(conn)
        .await?;
        Ok(changed == 1)
    })
}

/// Records the keys' use at `now`, each unless one was recorded after `stale_before`:
/// replicas that all saw a stale time write once.
pub async fn touch_api_keys(db: &Db, key_ids: &[String], now: i64, stale_before: i64) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(
            api_keys::table.filter(api_keys::id.eq_any(key_ids)).filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(stale_before)),
            ),
        )
        .set(api_keys::last_used_at.eq(now))
        .execute(conn)
        .await?;
        Ok(())
    })
}

/// Ids of keys revoked at or after `since`, for the re-check of other replicas' changes.
pub async fn keys_changed_since(db: &Db, since: i64) -> Result<Vec<String>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .filter(api_keys::revoked_at.ge(since))
            .select(api_keys::id)
            .load(conn)
            .await?)
    })
}
