#!/bin/sh
# The compose stack's one-shot `bootstrap` service (docker-compose.yml). On the stack's
# first start it creates the first account, a verified local login, and API keys:
#   $CREDENTIALS_DIR/admin/admin.env   SCRIPTMESH_EMAIL, SCRIPTMESH_PASSWORD and API_KEY
#                                      (shell lines) for your own API calls
#   $CREDENTIALS_DIR/<agent>/api_key   one agent key per agent, read through API_KEY_FILE:
#                                      it can do that agent's work and nothing else
# Each directory is its own volume, so an agent sees only its own key. Files that exist
# are kept: later starts change nothing. Runs as root in the orchestrator image (fresh
# volumes are root-owned) and hands the files to the images' user, uid 10001.
set -eu

CREDENTIALS_DIR="${CREDENTIALS_DIR:-/run/scriptmesh}"
EMAIL="${BOOTSTRAP_EMAIL:-admin@scriptmesh.local}"
AGENTS="${BOOTSTRAP_AGENTS:-agent-1 agent-2}"
OWNER=10001
umask 077

# Writes stdin to $1 readable only by the images' user, atomically.
store() {
    tmp="$1.tmp"
    cat > "$tmp"
    chown "$OWNER:$OWNER" "$tmp"
    chmod 0400 "$tmp"
    mv -f "$tmp" "$1"
}

admin_env="$CREDENTIALS_DIR/admin/admin.env"
if [ -s "$admin_env" ]; then
    echo "kept $admin_env"
else
    # The account is created on the first run only; its password is printed only then.
    # (An assignment, not a pipe, so that a failure stops the script under `set -e`.)
    lines="$(scriptmesh-orchestrator bootstrap "$EMAIL")"
    printf '%s\n' "$lines" | store "$admin_env"
    echo "created $admin_env (login $EMAIL and an API key)"
fi

for agent in $AGENTS; do
    key_file="$CREDENTIALS_DIR/$agent/api_key"
    if [ -s "$key_file" ]; then
        echo "kept $key_file"
        continue
    fi
    lines="$(scriptmesh-orchestrator bootstrap "$EMAIL" --agent "$agent")"
    # Among its lines is AGENT_API_KEY='sm_live_...'; the file holds the bare key.
    key="$(printf '%s\n' "$lines" | sed -n "s/^AGENT_API_KEY='\(sm_live_[A-Za-z0-9_]*\)'\$/\1/p")"
    if [ -z "$key" ]; then
        echo "scriptmesh-orchestrator bootstrap printed no AGENT_API_KEY line" >&2
        exit 1
    fi
    printf '%s\n' "$key" | store "$key_file"
    echo "created $key_file"
done
