//! The diesel schema, written for both backends: portable column types only
//! (`Text`, `BigInt`, `Integer`, `Bool`); ids are prefixed text, times BIGINT ms, JSON text.

diesel::table! {
    tenants (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        tenant_id -> Text,
        email -> Text,
        password_hash -> Text,
        email_verified -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    email_codes (user_id) {
        user_id -> Text,
        code_hash -> Text,
        expires_at -> BigInt,
        attempts -> Integer,
        created_at -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        token_hash -> Text,
        family_id -> Text,
        user_id -> Text,
        tenant_id -> Text,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Nullable<Text>,
        name -> Text,
        key_prefix -> Text,
        key_hash -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        role -> Text,
        scope -> Nullable<Text>,
    }
}

diesel::table! {
    memberships (tenant_id, user_id) {
        tenant_id -> Text,
        user_id -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    invitations (id) {
        id -> Text,
        tenant_id -> Text,
        email -> Text,
        role -> Text,
        code_hash -> Text,
        invited_by -> Nullable<Text>,
        attempts -> Integer,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    password_resets (user_id) {
        user_id -> Text,
        code_hash -> Text,
        expires_at -> BigInt,
        attempts -> Integer,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        tenant_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        action -> Text,
        detail -> Text,
        client_addr -> Nullable<Text>,
        created_at -> BigInt,
        actor -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        target -> Nullable<Text>,
        outcome -> Text,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    agents (tenant_id, name) {
        tenant_id -> Text,
        name -> Text,
        tags -> Text,
        url -> Nullable<Text>,
        hostname -> Nullable<Text>,
        os -> Nullable<Text>,
        version -> Nullable<Text>,
        scripts -> Text,
        manifest_reported -> Bool,
        api_key_id -> Nullable<Text>,
        agent_key_hash -> Nullable<Text>,
        status -> Text,
        heartbeat_interval -> BigInt,
        last_heartbeat -> Nullable<BigInt>,
        registered_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        tenant_id -> Text,
        agent_name -> Text,
        script -> Text,
        params -> Text,
        status -> Text,
        exit_code -> Nullable<Integer>,
        stdout -> Text,
        stderr -> Text,
        stdout_truncated -> Bool,
        stderr_truncated -> Bool,
        duration_ms -> Nullable<BigInt>,
        timeout_secs -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        fanout_id -> Nullable<Text>,
        schedule_id -> Nullable<Text>,
        cancel_requested -> Bool,
        attempts -> Integer,
        created_at -> BigInt,
        dispatched_at -> Nullable<BigInt>,
        started_at -> Nullable<BigInt>,
        completed_at -> Nullable<BigInt>,
        awaiting_slot -> Bool,
        secret_params -> Nullable<Text>,
    }
}

diesel::table! {
    job_output (job_id, start_offset) {
        job_id -> Text,
        tenant_id -> Text,
        start_offset -> BigInt,
        end_offset -> BigInt,
        stream -> Text,
        data -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    fanouts (id) {
        id -> Text,
        tenant_id -> Text,
        script -> Text,
        params -> Text,
        selector -> Text,
        created_at -> BigInt,
        max_concurrency -> Nullable<Integer>,
        max_errors -> Nullable<Integer>,
        secret_params -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        tenant_id -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(memberships -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    email_codes,
    refresh_tokens,
    api_keys,
    memberships,
    invitations,
    password_resets,
    audit_log,
    agents,
    jobs,
    job_output
);

diesel::table! {
    schedules (id) {
        id -> Text,
        tenant_id -> Text,
        agent_name -> Nullable<Text>,
        tags -> Nullable<Text>,
        script -> Text,
        cron_expression -> Text,
        timezone -> Text,
        params -> Text,
        webhook_url -> Nullable<Text>,
        timeout_secs -> Nullable<BigInt>,
        enabled -> Bool,
        overlap -> Text,
        misfire_grace_secs -> BigInt,
        next_fire_at -> Nullable<BigInt>,
        last_fire_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    schedule_runs (id) {
        id -> Text,
        tenant_id -> Text,
        schedule_id -> Text,
        scheduled_for -> BigInt,
        fired_at -> Nullable<BigInt>,
        outcome -> Text,
        job_ids -> Text,
        reason -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    integrations (id) {
        id -> Text,
        tenant_id -> Text,
        kind -> Text,
        name -> Text,
        config -> Text,
        events -> Text,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        tenant_id -> Text,
        integration_id -> Nullable<Text>,
        schedule_id -> Nullable<Text>,
        event_id -> Nullable<Text>,
        event_type -> Text,
        target_url -> Text,
        status -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        last_response_code -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        payload -> Text,
    }
}

diesel::table! {
    delivery_attempts (delivery_id, attempt) {
        delivery_id -> Text,
        attempt -> Integer,
        tenant_id -> Text,
        at -> BigInt,
        response_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
    }
}

diesel::table! {
    integration_alerts (integration_id, dedup_key) {
        integration_id -> Text,
        dedup_key -> Text,
        tenant_id -> Text,
        opened_at -> BigInt,
    }
}
