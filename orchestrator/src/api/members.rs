//! Teammates: `/tenant/members` (list, invite, change a role, remove) and
//! `/auth/accept-invite`. Admins manage members; only owners make, change or remove owners,
//! and a tenant always keeps one. Removing a member ends their sessions in the tenant at
//! once; their next request with an access token is refused too, since every request reads
//! the membership.

use crate::api::auth::{
    check_code, code_hash, issue_tokens, new_code, normalize_email, rate_limit, CodeCheck, TokenPair,
};
use crate::api::docs::Endpoint;
use crate::auth::permissions::{Permission, Role};
use crate::auth::{passwords, Caller};
use crate::db::members::{self, Change};
use crate::db::models::{Invitation, Membership, User};
use crate::db::{self, accounts};
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

/// How long an invitation's code is good for.
const INVITATION_TTL_MS: i64 = 7 * 86_400_000;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_list, list).and(__path_invite, invite));
    cfg.service(Endpoint::new(__path_change_role, change_role).and(__path_remove, remove));
    cfg.service(Endpoint::new(__path_accept_invite, accept_invite));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct InviteRequest {
    #[schema(example = "teammate@company.com")]
    email: String,
    /// `owner` (owners only), `admin`, `operator` or `viewer`.
    role: Role,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RoleRequest {
    role: Role,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AcceptRequest {
    email: String,
    /// The 6-digit code from the invitation email.
    #[schema(example = "123456")]
    code: String,
    /// A new user's password (at least 8 characters), or an existing user's current one.
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// The user's id.
    id: String,
    email: String,
    role: Role,
    #[schema(example = "active")]
    status: &'static str,
    joined_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// The invitation's id (`inv_...`): `DELETE /tenant/members/{id}` withdraws it.
    id: String,
    email: String,
    role: Role,
    #[schema(example = "invited")]
    status: &'static str,
    invited_at: String,
    expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberList {
    members: Vec<MemberView>,
    /// Invitations not accepted yet.
    invitations: Vec<InvitationView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Removed {
    #[schema(example = "removed")]
    status: &'static str,
    id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JoinedTenant {
    id: String,
    name: String,
}

/// `POST /auth/accept-invite`: the tenant joined and a token pair for it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Joined {
    #[schema(example = "joined")]
    status: &'static str,
    tenant: JoinedTenant,
    role: Role,
    #[serde(flatten)]
    tokens: TokenPair,
}

fn member_view((membership, email): members::Member) -> MemberView {
    MemberView {
        role: Role::parse(&membership.role).unwrap_or(Role::Viewer),
        id: membership.user_id,
        email,
        status: "active",
        joined_at: db::format_time(membership.created_at),
    }
}

fn invitation_view(invitation: Invitation) -> InvitationView {
    InvitationView {
        role: Role::parse(&invitation.role).unwrap_or(Role::Viewer),
        id: invitation.id,
        email: invitation.email,
        status: "invited",
        invited_at: db::format_time(invitation.created_at),
        expires_at: db::format_time(invitation.expires_at),
    }
}

/// What a member role change needs beyond `members.manage`: owners for anything touching
/// the owner role, and never more than the caller's own role.
fn may_grant(caller: &Caller, from: Option<Role>, to: Role) -> Result<()> {
    if to == Role::Agent {
        return Err(Error::Validation(
            "role must be one of owner, admin, operator, viewer".into(),
        ));
    }
    if from == Some(Role::Owner) || to == Role::Owner {
        caller.require(Permission::OwnersManage)?;
    }
    if !to.within(caller.role) {
        return Err(Error::forbidden(
            "permission_denied",
            format!("a {} may not grant the {to} role", caller.role),
        ));
    }
    Ok(())
}

/// List members and open invitations.
#[utoipa::path(
    get, path = "/tenant/members", tag = "members",
    responses((status = 200, description = "Members and invitations", body = MemberList)),
    security(("access_token" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let members = members::list(&state.db, &caller.tenant_id).await?;
    let invitations = members::invitations(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(MemberList {
        members: members.into_iter().map(member_view).collect(),
        invitations: invitations.into_iter().map(invitation_view).collect(),
    }))
}

/// Invite a teammate.
///
/// Emails a 6-digit code; the teammate joins with `POST /auth/accept-invite`. Inviting the
/// same address again sends a new code. Only owners invite owners.
#[utoipa::path(
    post, path = "/tenant/members", tag = "members",
    request_body = InviteRequest,
    responses(
        (status = 201, description = "Invited", body = InvitationView),
        (status = 403, description = "The role is above what the caller may grant (`permission_denied`)"),
        (status = 409, description = "The address belongs to a member already (`already_member`)"),
        (status = 422, description = "A bad email or role"),
    ),
    security(("access_token" = [])),
)]
async fn invite(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<InviteRequest>,
) -> Result<HttpResponse> {
    let email = normalize_email(&body.email)?;
    may_grant(&caller, None, body.role)
        .map_err(|error| caller.refused(&state, "member.invite", email.clone(), error))?;
    if members::is_member_email(&state.db, &caller.tenant_id, &email).await? {
        return Err(Error::conflict(
            "already_member",
            format!("{email} is a member already"),
        ));
    }
    let tenant = accounts::find_tenant(&state.db, &caller.tenant_id)
        .await?
        .ok_or_else(|| Error::unauthorized("the tenant no longer exists"))?;
    let code = new_code();
    let now = db::now_ms();
    let id = db::new_id("inv");
    let invitation = Invitation {
        code_hash: code_hash(&id, &code),
        id,
        tenant_id: caller.tenant_id.clone(),
        email: email.clone(),
        role: body.role.as_str().to_owned(),
        invited_by: caller.user_id.clone(),
        attempts: 0,
        expires_at: now + INVITATION_TTL_MS,
        created_at: now,
    };
    members::put_invitation(&state.db, &invitation).await?;
    caller.did(&state, "member.invite", format!("{email} as {}", body.role));
    let mailer = state.mailer.clone();
    let role = body.role;
    actix_rt::spawn(async move {
        if let Err(error) = mailer.send_invitation(&email, &tenant.name, role.as_str(), &code).await {
            tracing::error!(%error, "could not send the invitation");
        }
    });
    Ok(HttpResponse::Created().json(invitation_view(invitation)))
}

/// Change a member's role.
///
/// Only owners make or unmake owners; the last owner cannot be demoted.
#[utoipa::path(
    patch, path = "/tenant/members/{id}", tag = "members",
    params(("id" = String, Path, description = "The member's user id")),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "Changed", body = MemberView),
        (status = 403, description = "The change needs a higher role (`permission_denied`)"),
        (status = 404, description = "No such member in your tenant"),
        (status = 409, description = "It would leave the tenant without an owner (`last_owner`)"),
    ),
    security(("access_token" = [])),
)]
async fn change_role(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    JsonBody(body): JsonBody<RoleRequest>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let (membership, email) = members::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("member {id}")))?;
    let from = Role::parse(&membership.role);
    may_grant(&caller, from, body.role).map_err(|error| caller.refused(&state, "member.role", email.clone(), error))?;
    match members::change(&state.db, &caller.tenant_id, &id, Some(body.role.as_str())).await? {
        Change::Done => {}
        Change::NoSuchMember => return Err(Error::not_found(format!("member {id}"))),
        Change::LastOwner => return Err(last_owner()),
    }
    caller.did(&state, "member.role", format!("{email} to {}", body.role));
    let member = members::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("member {id}")))?;
    Ok(HttpResponse::Ok().json(member_view(member)))
}

fn last_owner() -> Error {
    Error::conflict(
        "last_owner",
        "a tenant keeps at least one owner; make someone else owner first",
    )
}

/// Remove a member, or withdraw an invitation.
///
/// A `usr_` id removes the member and revokes their sessions in this tenant at once; an
/// `inv_` id withdraws the invitation. The last owner cannot be removed.
#[utoipa::path(
    delete, path = "/tenant/members/{id}", tag = "members",
    params(("id" = String, Path, description = "The member's user id, or an invitation's id")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 403, description = "Removing an owner needs an owner (`permission_denied`)"),
        (status = 404, description = "No such member or invitation in your tenant"),
        (status = 409, description = "It would leave the tenant without an owner (`last_owner`)"),
    ),
    security(("access_token" = [])),
)]
async fn remove(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let id = id.into_inner();
    if id.starts_with("inv_") {
        if !members::delete_invitation(&state.db, &caller.tenant_id, &id).await? {
            return Err(Error::not_found(format!("invitation {id}")));
        }
        caller.did(&state, "member.uninvite", id.clone());
        return Ok(HttpResponse::Ok().json(Removed { status: "removed", id }));
    }
    let (membership, email) = members::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("member {id}")))?;
    if membership.role == Role::Owner.as_str() {
        caller
            .require(Permission::OwnersManage)
            .map_err(|error| caller.refused(&state, "member.remove", email.clone(), error))?;
    }
    match members::change(&state.db, &caller.tenant_id, &id, None).await? {
        Change::Done => {}
        Change::NoSuchMember => return Err(Error::not_found(format!("member {id}"))),
        Change::LastOwner => return Err(last_owner()),
    }
    accounts::revoke_user_sessions(&state.db, &caller.tenant_id, &id, db::now_ms()).await?;
    caller.did(&state, "member.remove", email);
    Ok(HttpResponse::Ok().json(Removed { status: "removed", id }))
}

/// Accept an invitation.
///
/// With the emailed code: a new address becomes a user (the password given is theirs from
/// now on); an existing user gives their current password and gains the membership. Answers
/// a token pair for the tenant joined.
#[utoipa::path(
    post, path = "/auth/accept-invite", tag = "auth",
    request_body = AcceptRequest,
    responses(
        (status = 200, description = "Joined; the token pair is for the tenant joined", body = Joined),
        (status = 400, description = "Wrong, expired or used-up code (`invalid_code`)"),
        (status = 401, description = "An existing user's password is wrong (`invalid_credentials`)"),
        (status = 422, description = "A weak password for a new user"),
        (status = 429, description = "Too many attempts (`rate_limited`); see Retry-After"),
    ),
)]
async fn accept_invite(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<AcceptRequest>,
) -> Result<HttpResponse> {
    rate_limit(&state, &req, "accept", &body.email)?;
    let invalid = || {
        Error::bad_request(
            "invalid_code",
            "the code is invalid or has expired; ask the tenant's admin to invite you again",
        )
    };
    let email = normalize_email(&body.email).map_err(|_| invalid())?;
    let code = body.code.trim();
    let now = db::now_ms();
    let invitation = members::invitations_to(&state.db, &email)
        .await?
        .into_iter()
        .find(|inv| check_code(code, &inv.id, &inv.code_hash, inv.attempts, inv.expires_at) == CodeCheck::Good);
    let Some(invitation) = invitation else {
        members::count_wrong_code(&state.db, &email).await?;
        return Err(invalid());
    };
    let role = Role::parse(&invitation.role).unwrap_or(Role::Viewer);
    let user = match accounts::find_user_by_email(&state.db, &email).await? {
        Some(user) => {
            let password_ok = body.password.len() <= passwords::MAX_PASSWORD_BYTES
                && passwords::verify(
                    body.password,
                    Some(user.password_hash.clone()),
                    state.config.bcrypt_cost,
                )
                .await?;
            if !password_ok {
                return Err(Error::Unauthorized {
                    code: "invalid_credentials",
                    message: "this address has an account: give its current password to accept".into(),
                });
            }
            if !user.email_verified {
                // The code came by email: the address is proven.
                accounts::mark_email_verified(&state.db, &user.id).await?;
            }
            let added = members::add(
                &state.db,
                &Membership {
                    tenant_id: invitation.tenant_id.clone(),
                    user_id: user.id.clone(),
                    role: role.as_str().to_owned(),
                    created_at: now,
                },
            )
            .await?;
            if !added {
                members::delete_invitation(&state.db, &invitation.tenant_id, &invitation.id).await?;
                return Err(Error::conflict(
                    "already_member",
                    format!("{email} is a member already"),
                ));
            }
            user
        }
        None => {
            passwords::validate(&body.password)?;
            let user = User {
                id: db::new_id("usr"),
                tenant_id: invitation.tenant_id.clone(),
                email: email.clone(),
                password_hash: passwords::hash(body.password, state.config.bcrypt_cost).await?,
                email_verified: true,
                created_at: now,
            };
            let membership = Membership {
                tenant_id: invitation.tenant_id.clone(),
                user_id: user.id.clone(),
                role: role.as_str().to_owned(),
                created_at: now,
            };
            members::create_user(&state.db, &user, &membership).await?;
            user
        }
    };
    members::delete_invitation(&state.db, &invitation.tenant_id, &invitation.id).await?;
    state.audit.record(crate::api::auth::person_record(
        &req,
        Some(&invitation.tenant_id),
        Some(&user.id),
        &email,
        "member.join",
        crate::audit::Outcome::Ok,
        format!("as {role}"),
    ));
    let tenant = accounts::find_tenant(&state.db, &invitation.tenant_id)
        .await?
        .ok_or_else(invalid)?;
    let tokens = issue_tokens(&state, &user.id, &tenant.id, db::new_id("fam")).await?;
    Ok(HttpResponse::Ok().json(Joined {
        status: "joined",
        tenant: JoinedTenant {
            id: tenant.id,
            name: tenant.name,
        },
        role,
        tokens,
    }))
}
