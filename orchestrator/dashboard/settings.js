// Settings: API keys (a role and a scope each; a new key is shown once; revoke) and
// integrations (create, send a test, see deliveries, enable/disable, delete). Members and
// the audit trail have their own modules.

import { api, can, query } from "./api.js";
import { announce, badge, errorBox, field, h, localTime, pageTitle, replace, splitList, submitting, table, timeAgo } from "./dom.js";

const KEY_ROLES = [
  ["agent", "agent — runs the agent protocol as the named agents"],
  ["operator", "operator — reads, runs scripts, manages schedules"],
  ["viewer", "viewer — reads only"],
  ["admin", "admin — everything but keys and members"],
];

/** What a key is narrowed to: "agents: prod-*, edge-1", "tags: web; scripts: deploy.sh", or "—". */
export function keyScope(key) {
  const parts = ["agents", "tags", "scripts"]
    .filter((name) => Array.isArray(key[name]) && key[name].length > 0)
    .map((name) => `${name}: ${key[name].join(", ")}`);
  return parts.length ? parts.join("; ") : "—";
}

export async function apiKeysPage(main, context) {
  const listBox = errorBox();
  const list = h("div", {});
  const reveal = h("div", { class: "reveal-slot" });

  const load = async () => {
    const keys = await api("GET", "/auth/api-keys");
    if (!context.active) return;
    replace(
      list,
      table(
        "API keys",
        ["Name", "Role", "Scope", "Key", "Created", "Last used", "Expires", ""],
        keys.map((key) =>
          h(
            "tr",
            { dataset: { key: key.id } },
            h("th", { scope: "row" }, key.name, key.created_by ? h("span", { class: "muted" }, ` by ${key.created_by}`) : null),
            h("td", { class: "key-role" }, key.role || "—"),
            h("td", { class: "key-scope" }, keyScope(key)),
            h("td", {}, h("code", {}, `${key.key_prefix}…`)),
            h("td", {}, timeAgo(key.created_at)),
            h("td", {}, timeAgo(key.last_used_at)),
            h("td", {}, key.expires_at ? localTime(key.expires_at) : "never"),
            h(
              "td",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "button-quiet danger",
                  "aria-label": `Revoke key ${key.name}`,
                  onclick: async () => {
                    if (!window.confirm(`Revoke the key "${key.name}"? Agents using it stop working at once.`)) return;
                    listBox.clear();
                    try {
                      await api("DELETE", `/auth/api-keys/${encodeURIComponent(key.id)}`);
                      announce(`Key "${key.name}" revoked.`, "success");
                      await load();
                    } catch (error) {
                      listBox.show(error);
                    }
                  },
                },
                "Revoke",
              ),
            ),
          ),
        ),
        "No API keys yet. Agents need one to connect.",
      ),
    );
  };

  const name = h("input", { id: "key-name", type: "text", required: true, maxlength: 100, autocomplete: "off", placeholder: "web-1" });
  const expires = h("input", { id: "key-expires", type: "number", min: 1, max: 3650, step: 1 });
  const role = h(
    "select",
    { id: "key-role" },
    KEY_ROLES.map(([value, label]) => h("option", { value, selected: value === "operator" }, label)),
  );
  const agents = h("input", { id: "key-agents", type: "text", autocomplete: "off", placeholder: "prod-*, edge-1" });
  const tags = h("input", { id: "key-tags", type: "text", autocomplete: "off", placeholder: "web" });
  const scripts = h("input", { id: "key-scripts", type: "text", autocomplete: "off", placeholder: "deploy.sh" });
  const agentsField = field("Agents (patterns, comma-separated)", agents, "The agent names it may connect as; * matches any characters.");
  const operatorFields = h(
    "div",
    { class: "key-scope-fields" },
    field("Only agents with tags (optional, comma-separated)", tags),
    field("Only scripts (optional, comma-separated)", scripts),
  );
  // Agent keys need their patterns; only operator keys can be narrowed by tags and scripts.
  const showScope = () => {
    agentsField.hidden = role.value !== "agent";
    agents.required = role.value === "agent";
    operatorFields.hidden = role.value !== "operator";
  };
  role.addEventListener("change", showScope);
  showScope();
  const box = errorBox();
  const form = h(
    "form",
    { class: "inline-form", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, "New API key"),
    field("Name", name, "Usually the agent that will use it. One key per agent."),
    field("Role", role),
    agentsField,
    operatorFields,
    field("Expires after (days, optional)", expires),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Create key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const body = { name: name.value.trim(), role: role.value };
      if (expires.value) body.expires_days = Number(expires.value);
      if (role.value === "agent") body.agents = splitList(agents.value);
      if (role.value === "operator") {
        if (splitList(tags.value).length) body.tags = splitList(tags.value);
        if (splitList(scripts.value).length) body.scripts = splitList(scripts.value);
      }
      const created = await api("POST", "/auth/api-keys", body);
      form.reset();
      showScope();
      showNewKey(reveal, created);
      await load();
    });
  });

  replace(
    main,
    pageTitle("API keys"),
    h("p", { class: "muted" }, "Agents authenticate with an API key. Keys are managed with your login, never with a key."),
    reveal,
    form,
    h("h2", {}, "Active keys"),
    listBox.element,
    list,
  );
  await load();
}

function showNewKey(slot, created) {
  const value = h("code", { id: "new-api-key", class: "secret" }, created.key);
  const copy = h(
    "button",
    {
      type: "button",
      class: "button-secondary",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(created.key);
          announce("Key copied to the clipboard.", "success");
        } catch {
          // Clipboard access can be refused (insecure context, permissions): select it instead.
          const range = document.createRange();
          range.selectNodeContents(value);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          announce("Select-and-copy the key: the clipboard is not available here.");
        }
      },
    },
    "Copy",
  );
  const heading = h("h2", { tabindex: "-1" }, `Key "${created.name}" created`);
  replace(
    slot,
    h(
      "section",
      { class: "reveal", role: "region", "aria-label": "New API key" },
      heading,
      h("p", { class: "warning" }, created.warning || "Store this key securely. It will not be shown again."),
      h("div", { class: "secret-row" }, value, copy),
      h("p", { class: "hint" }, "Give it to the agent as API_KEY, e.g. ", h("code", {}, `API_KEY=${created.key_prefix}… scriptmesh-agent`)),
      h("button", { type: "button", class: "button-quiet", onclick: () => replace(slot) }, "I have stored it — hide"),
    ),
  );
  heading.focus();
}

const EVENTS = [
  "job.succeeded",
  "job.failed",
  "job.completed",
  "job.cancelled",
  "agent.online",
  "agent.offline",
  "agent.registered",
  "schedule.missed",
];

// Each type's config fields: [name, label, required, input type, hint].
const TYPES = {
  slack: [["webhook_url", "Incoming webhook URL", true, "url"]],
  discord: [
    ["webhook_url", "Webhook URL", true, "url"],
    ["username", "Username (optional)", false, "text"],
  ],
  teams: [["webhook_url", "Webhook URL", true, "url"]],
  pagerduty: [
    ["routing_key", "Routing key", true, "password"],
    ["events_url", "Events API URL (optional)", false, "url"],
  ],
  datadog: [
    ["api_key", "API key", true, "password"],
    ["site", "Site (optional), e.g. datadoghq.eu", false, "text"],
    ["api_url", "API URL (optional)", false, "url"],
  ],
  splunk: [
    ["hec_url", "HEC URL", true, "url"],
    ["token", "HEC token", true, "password"],
    ["index", "Index (optional)", false, "text"],
  ],
  prometheus: [
    ["pushgateway_url", "Pushgateway URL", true, "url"],
    ["job", "Job label (optional, default scriptmesh)", false, "text"],
  ],
  webhook: [
    ["url", "URL", true, "url"],
    ["secret", "Signing secret (optional, 16+ characters; generated if empty)", false, "password"],
  ],
};

export async function integrationsPage(main, context) {
  const listBox = errorBox();
  const list = h("div", {});
  const detail = h("div", { class: "integration-detail", "aria-live": "polite" });

  const load = async () => {
    const { integrations } = await api("GET", "/integrations");
    if (!context.active) return;
    replace(
      list,
      table(
        "Integrations",
        ["Name", "Type", "Events", "Status", "Actions"],
        integrations.map((integration) => integrationRow(integration, listBox, load, detail)),
        "No integrations yet. Create one below to send job and agent events to Slack, PagerDuty, a webhook, …",
      ),
    );
  };

  replace(
    main,
    pageTitle("Integrations"),
    listBox.element,
    list,
    detail,
    createIntegrationForm(load, detail),
  );
  await load();
}

function integrationRow(integration, box, reload, detail) {
  const base = `/integrations/${encodeURIComponent(integration.id)}`;
  const button = (label, onclick, extra = "") =>
    h("button", { type: "button", class: `button-quiet ${extra}`, "aria-label": `${label}: ${integration.name}`, onclick }, label);
  return h(
    "tr",
    { dataset: { integration: integration.id } },
    h("th", { scope: "row" }, integration.name),
    h("td", {}, integration.type),
    h("td", {}, integration.events.join(", ")),
    h("td", {}, badge(integration.enabled ? "active" : "paused")),
    h(
      "td",
      { class: "row-actions" },
      button("Send test", async () => {
        box.clear();
        try {
          const result = await api("POST", `${base}/test`);
          const detailText = result.ok
            ? `Test delivered${result.response_code ? ` (HTTP ${result.response_code})` : ""}.`
            : `Test failed: ${result.error || `HTTP ${result.response_code}`}`;
          announce(`${integration.name}: ${detailText}`, result.ok ? "success" : "error");
          await showDeliveries(integration, detail);
        } catch (error) {
          box.show(error);
        }
      }),
      button("Deliveries", () => showDeliveries(integration, detail)),
      button(integration.enabled ? "Disable" : "Enable", async () => {
        box.clear();
        try {
          await api("PATCH", base, { enabled: !integration.enabled });
          await reload();
        } catch (error) {
          box.show(error);
        }
      }),
      button(
        "Delete",
        async () => {
          if (!window.confirm(`Delete the integration "${integration.name}"?`)) return;
          box.clear();
          try {
            await api("DELETE", base);
            announce(`Integration "${integration.name}" deleted.`, "success");
            replace(detail);
            await reload();
          } catch (error) {
            box.show(error);
          }
        },
        "danger",
      ),
    ),
  );
}

async function showDeliveries(integration, container) {
  const box = errorBox();
  try {
    const page = await api("GET", `/integrations/${encodeURIComponent(integration.id)}/deliveries${query({ limit: 50 })}`);
    replace(
      container,
      h("h2", { tabindex: "-1" }, `Deliveries of ${integration.name}`),
      table(
        "Deliveries",
        ["Event", "Status", "Attempts", "Last answer", "Created"],
        page.deliveries.map((delivery) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, delivery.event),
            h("td", {}, badge(delivery.status)),
            h("td", {}, `${delivery.attempts} / ${delivery.max_attempts}`),
            h("td", {}, delivery.last_response_code ? `HTTP ${delivery.last_response_code}` : delivery.last_error || "—"),
            h("td", {}, timeAgo(delivery.created_at)),
          ),
        ),
        "Nothing delivered yet.",
      ),
    );
  } catch (error) {
    replace(container, box.element);
    box.show(error);
  }
  container.querySelector("h2")?.focus();
}

function createIntegrationForm(reload, detail) {
  const type = h("select", { id: "integration-type" }, Object.keys(TYPES).map((name) => h("option", { value: name }, name)));
  const name = h("input", { id: "integration-name", type: "text", required: true, maxlength: 100, autocomplete: "off" });
  const configFields = h("div", { class: "config-fields" });
  let inputs = {};
  const showFields = () => {
    inputs = {};
    replace(
      configFields,
      TYPES[type.value].map(([key, label, required, inputType]) => {
        const input = h("input", { id: `integration-${key}`, type: inputType, required, autocomplete: "off" });
        inputs[key] = input;
        return field(label, input);
      }),
    );
  };
  type.addEventListener("change", showFields);
  showFields();
  const events = h(
    "fieldset",
    { class: "events" },
    h("legend", {}, "Events to send"),
    EVENTS.map((event) => {
      const id = `event-${event.replace(".", "-")}`;
      return h(
        "div",
        { class: "choice" },
        h("input", { type: "checkbox", id, value: event, checked: event === "job.failed" }),
        h("label", { for: id }, event),
      );
    }),
  );
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack", "aria-labelledby": "new-integration-title" },
    h("h2", { id: "new-integration-title" }, "New integration"),
    field("Type", type),
    field("Name", name),
    configFields,
    events,
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Create integration"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const config = {};
      for (const [key, input] of Object.entries(inputs)) {
        if (input.value.trim()) config[key] = input.value.trim();
      }
      const chosen = [...events.querySelectorAll("input:checked")].map((input) => input.value);
      const created = await api("POST", "/integrations", { type: type.value, name: name.value.trim(), config, events: chosen });
      announce(`Integration "${created.name}" created.`, "success");
      if (created.secret) {
        // A generated webhook signing secret is shown once, like an API key.
        replace(
          detail,
          h(
            "section",
            { class: "reveal" },
            h("h2", { tabindex: "-1" }, `Signing secret of ${created.name}`),
            h("p", { class: "warning" }, created.warning),
            h("code", { class: "secret" }, created.secret),
          ),
        );
      }
      form.reset();
      showFields();
      await reload();
    });
  });
  return form;
}
