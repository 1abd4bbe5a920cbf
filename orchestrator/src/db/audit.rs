//! The audit log of security events (logins, key creation and revocation, ...).

use super::models::AuditEntry;
use super::schema::audit_log;
use super::{new_id, now_ms, Db};
use crate::error::Result;
use crate::with_conn;
use diesel_async::RunQueryDsl;

pub struct AuditEvent<'a> {
    pub tenant_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub event: &'a str,
    pub detail: String,
    pub client_addr: Option<String>,
}

pub async fn record(db: &Db, event: AuditEvent<'_>) -> Result<()> {
    let entry = AuditEntry {
        id: new_id("aud"),
        tenant_id: event.tenant_id.map(str::to_owned),
        user_id: event.user_id.map(str::to_owned),
        event: event.event.to_owned(),
        detail: event.detail,
        client_addr: event.client_addr,
        created_at: now_ms(),
    };
    with_conn!(db, |conn| {
        diesel::insert_into(audit_log::table)
            .values(&entry)
            .execute(conn)
            .await?;
        Ok(())
    })
}
