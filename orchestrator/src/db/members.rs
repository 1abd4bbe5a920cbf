//! A tenant's members (memberships: who belongs, with which role) and its open invitations.
//! Every change that could leave a tenant without an owner runs in a transaction that
//! first locks the tenant's row, so two concurrent demotions cannot both pass the check.

use super::models::{Invitation, Membership};
use super::schema::{invitations, memberships, tenants, users};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// A member as listed: the membership and the user's email.
pub type Member = (Membership, String);

pub async fn list(db: &Db, tenant_id: &str) -> Result<Vec<Member>> {
    with_conn!(db, |conn| {
        Ok(memberships::table
            .inner_join(users::table)
            .filter(memberships::tenant_id.eq(tenant_id))
            .order(memberships::created_at.asc())
            .select((Membership::as_select(), users::email))
            .load(conn)
            .await?)
    })
}

pub async fn find(db: &Db, tenant_id: &str, user_id: &str) -> Result<Option<Member>> {
    with_conn!(db, |conn| {
        Ok(memberships::table
            .inner_join(users::table)
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::user_id.eq(user_id))
            .select((Membership::as_select(), users::email))
            .first(conn)
            .await
            .optional()?)
    })
}

/// Whether the address already belongs to a member of the tenant.
pub async fn is_member_email(db: &Db, tenant_id: &str, email: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        let count: i64 = memberships::table
            .inner_join(users::table)
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(users::email.eq(email))
            .count()
            .get_result(conn)
            .await?;
        Ok(count > 0)
    })
}

/// What a change to a membership did.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    NoSuchMember,
    /// It would have left the tenant without an owner; nothing was changed.
    LastOwner,
}

/// Sets a member's role (`None`: removes the member), unless that leaves no owner.
pub async fn change(db: &Db, tenant_id: &str, user_id: &str, role: Option<&str>) -> Result<Change> {
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            // Locks the tenant's row (PostgreSQL) or takes the write lock (SQLite): member
            // changes of one tenant run one at a time.
            diesel::update(tenants::table.filter(tenants::id.eq(tenant_id)))
                .set(tenants::name.eq(tenants::name))
                .execute(conn)
                .await?;
            let target = memberships::table
                .filter(memberships::tenant_id.eq(tenant_id))
                .filter(memberships::user_id.eq(user_id));
            let changed = match role {
                Some(role) => {
                    diesel::update(target)
                        .set(memberships::role.eq(role))
                        .execute(conn)
                        .await?
                }
                None => diesel::delete(target).execute(conn).await?,
            };
            if changed == 0 {
                return Ok(Change::NoSuchMember);
            }
            let owners: i64 = memberships::table
                .filter(memberships::tenant_id.eq(tenant_id))
                .filter(memberships::role.eq("owner"))
                .count()
                .get_result(conn)
                .await?;
            if owners == 0 {
                // Rolls the change back.
                return Err(Error::conflict(
                    "last_owner",
                    "a tenant keeps at least one owner; make someone else owner first",
                ));
            }
            Ok(Change::Done)
        })
        .await
    })
    .or_else(|error| match error {
        Error::Conflict { code: "last_owner", .. } => Ok(Change::LastOwner),
        other => Err(other),
    })
}

/// Adds a membership; false when the user already is a member.
pub async fn add(db: &Db, membership: &Membership) -> Result<bool> {
    with_conn!(db, |conn| {
        let inserted = diesel::insert_into(memberships::table)
            .values(membership)
            .on_conflict((memberships::tenant_id, memberships::user_id))
            .do_nothing()
            .execute(conn)
            .await?;
        Ok(inserted == 1)
    })
}

/// Stores an invitation, replacing an open one to the same address (a new code).
pub async fn put_invitation(db: &Db, invitation: &Invitation) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(invitations::table)
            .values(invitation)
            .on_conflict((invitations::tenant_id, invitations::email))
            .do_update()
            .set((
                invitations::id.eq(&invitation.id),
                invitations::role.eq(&invitation.role),
                invitations::code_hash.eq(&invitation.code_hash),
                invitations::invited_by.eq(&invitation.invited_by),
                invitations::attempts.eq(0),
                invitations::expires_at.eq(invitation.expires_at),
                invitations::created_at.eq(invitation.created_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn invitations(db: &Db, tenant_id: &str) -> Result<Vec<Invitation>> {
    with_conn!(db, |conn| {
        Ok(invitations::table
            .filter(invitations::tenant_id.eq(tenant_id))
            .order(invitations::created_at.asc())
            .select(Invitation::as_select())
            .load(conn)
            .await?)
    })
}

/// Every open invitation to an address, in whichever tenant.
pub async fn invitations_to(db: &Db, email: &str) -> Result<Vec<Invitation>> {
    with_conn!(db, |conn| {
        Ok(invitations::table
            .filter(invitations::email.eq(email))
            .select(Invitation::as_select())
            .load(conn)
            .await?)
    })
}

/// Withdraws (or, once accepted, closes) an invitation; false when there was none.
pub async fn delete_invitation(db: &Db, tenant_id: &str, id: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        let deleted = diesel::delete(
            invitations::table
                .filter(invitations::tenant_id.eq(tenant_id))
                .filter(invitations::id.eq(id)),
        )
        .execute(conn)
        .await?;
        Ok(deleted == 1)
    })
}

/// Counts a wrong code against every open invitation to the address.
pub async fn count_wrong_code(db: &Db, email: &str) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(invitations::table.filter(invitations::email.eq(email)))
            .set(invitations::attempts.eq(invitations::attempts + 1))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Creates a user who joins a tenant by invitation, with their membership, in one
/// transaction; a taken email is a 409.
pub async fn create_user(db: &Db, user: &super::models::User, membership: &Membership) -> Result<()> {
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            diesel::insert_into(users::table).values(user).execute(conn).await?;
            diesel::insert_into(memberships::table)
                .values(membership)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    })
}
