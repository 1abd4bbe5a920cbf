//! Tenants, users, email verification and password reset codes, refresh tokens and API
//! keys. Memberships and invitations are in `members`.

use super::models::{ApiKey, EmailCode, Membership, PasswordReset, RefreshToken, Tenant, User};
use super::schema::{api_keys, email_codes, memberships, password_resets, refresh_tokens, tenants, users};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Creates a tenant and its owner in one transaction; a taken email is a 409.
pub async fn create_tenant_with_owner(db: &Db, tenant: &Tenant, user: &User) -> Result<()> {
    let membership = Membership {
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        role: "owner".into(),
        created_at: user.created_at,
    };
    let outcome: Result<()> = with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            diesel::insert_into(tenants::table).values(tenant).execute(conn).await?;
            diesel::insert_into(users::table).values(user).execute(conn).await?;
            diesel::insert_into(memberships::table)
                .values(&membership)
                .execute(conn)
                .await?;
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

pub async fn find_user(db: &Db, user_id: &str) -> Result<Option<User>> {
    with_conn!(db, |conn| {
        Ok(users::table
            .filter(users::id.eq(user_id))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The user's role in the tenant and their email; none when they are not a member.
pub async fn membership_role(db: &Db, tenant_id: &str, user_id: &str) -> Result<Option<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(memberships::table
            .inner_join(users::table)
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::user_id.eq(user_id))
            .select((memberships::role, users::email))
            .first(conn)
            .await
            .optional()?)
    })
}

/// The user's memberships with their tenants, the oldest first.
pub async fn memberships_of(db: &Db, user_id: &str) -> Result<Vec<(Membership, Tenant)>> {
    with_conn!(db, |conn| {
        Ok(memberships::table
            .inner_join(tenants::table)
            .filter(memberships::user_id.eq(user_id))
            .order(memberships::created_at.asc())
            .select((Membership::as_select(), Tenant::as_select()))
            .load(conn)
            .await?)
    })
}

/// Sets the user's password, drops any reset code, and revokes every refresh token of
/// theirs: a reset or change ends all sessions.
pub async fn set_password(db: &Db, user_id: &str, password_hash: &str, now: i64) -> Result<()> {
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            diesel::update(users::table.filter(users::id.eq(user_id)))
                .set((users::password_hash.eq(password_hash), users::email_verified.eq(true)))
                .execute(conn)
                .await?;
            diesel::delete(password_resets::table.filter(password_resets::user_id.eq(user_id)))
                .execute(conn)
                .await?;
            diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::user_id.eq(user_id))
                    .filter(refresh_tokens::revoked_at.is_null()),
            )
            .set(refresh_tokens::revoked_at.eq(now))
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
    })
}

/// Stores a fresh password reset code for the user, replacing any earlier one.
pub async fn replace_password_reset(db: &Db, reset: &PasswordReset) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(password_resets::table)
            .values(reset)
            .on_conflict(password_resets::user_id)
            .do_update()
            .set((
                password_resets::code_hash.eq(&reset.code_hash),
                password_resets::expires_at.eq(reset.expires_at),
                password_resets::attempts.eq(0),
                password_resets::created_at.eq(reset.created_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn find_password_reset(db: &Db, user_id: &str) -> Result<Option<PasswordReset>> {
    with_conn!(db, |conn| {
        Ok(password_resets::table
            .filter(password_resets::user_id.eq(user_id))
            .select(PasswordReset::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Counts a wrong try against the reset code.
pub async fn count_wrong_reset(db: &Db, user_id: &str) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(password_resets::table.filter(password_resets::user_id.eq(user_id)))
            .set(password_resets::attempts.eq(password_resets::attempts + 1))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Revokes the user's refresh tokens for one tenant (a member removed from it).
pub async fn revoke_user_sessions(db: &Db, tenant_id: &str, user_id: &str, now: i64) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::user_id.eq(user_id))
                .filter(refresh_tokens::tenant_id.eq(tenant_id))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn)
        .await?;
        Ok(())
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

/// One of the tenant's keys by id (revoked or not).
pub async fn find_api_key(db: &Db, tenant_id: &str, key_id: &str) -> Result<Option<ApiKey>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(key_id))
            .select(ApiKey::as_select())
            .first(conn)
            .await
            .optional()?)
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

/// The tenant's keys that are not revoked, newest first, each with its creator's email.
pub async fn list_api_keys_with_creators(db: &Db, tenant_id: &str) -> Result<Vec<(ApiKey, Option<String>)>> {
    with_conn!(db, |conn| {
        Ok(api_keys::table
            .left_join(users::table)
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::revoked_at.is_null())
            .order(api_keys::created_at.desc())
            .select((ApiKey::as_select(), users::email.nullable()))
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
