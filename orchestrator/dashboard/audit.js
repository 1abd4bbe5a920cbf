// The audit trail: who did what, where and when, with refused attempts marked denied.

import { api, query } from "./api.js";
import { badge, errorBox, field, h, localTime, pageTitle, replace, table } from "./dom.js";
import { toLocalInput, toRfc3339 } from "./jobs.js";

const AUDIT_FILTERS = ["actor", "action", "since", "until"];

function entryRow(entry) {
  return h(
    "tr",
    { dataset: { entry: entry.id, action: entry.action } },
    h("td", {}, localTime(entry.at)),
    h("td", {}, entry.actor || "—"),
    h("th", { scope: "row" }, h("code", {}, entry.action)),
    h("td", {}, entry.target || "—"),
    h("td", { class: "audit-outcome" }, badge(entry.outcome)),
    h("td", { class: "mono" }, entry.client_addr || "—"),
    h("td", {}, detailText(entry.detail)),
  );
}

/** The entry's detail as text: a string as is, anything else as compact JSON. */
function detailText(detail) {
  if (detail === null || detail === undefined || detail === "") return "—";
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

export async function auditPage(main, context) {
  const values = Object.fromEntries(AUDIT_FILTERS.map((name) => [name, context.query.get(name) || ""]));
  const actor = h("input", { type: "text", name: "actor", id: "audit-actor", value: values.actor, autocomplete: "off" });
  const action = h("input", {
    type: "text",
    name: "action",
    id: "audit-action",
    value: values.action,
    autocomplete: "off",
    placeholder: "job.trigger",
  });
  const since = h("input", { type: "datetime-local", name: "since", value: toLocalInput(values.since) });
  const until = h("input", { type: "datetime-local", name: "until", value: toLocalInput(values.until) });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the audit trail" },
    field("Actor (email or key id)", actor),
    field("Action", action),
    field("After", since),
    field("Before", until),
    h(
      "div",
      { class: "filter-actions" },
      h("button", { type: "submit", class: "button-secondary" }, "Apply filters"),
      h("a", { href: "#/audit", class: "button button-quiet" }, "Clear"),
    ),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/audit${query({
      actor: actor.value.trim(),
      action: action.value.trim(),
      since: toRfc3339(since.value),
      until: toRfc3339(until.value),
    })}`;
  });
  const box = errorBox();
  const body = h("div", {});
  const more = h("div", { class: "more" });
  replace(
    main,
    pageTitle("Audit trail"),
    h("p", { class: "muted" }, "Every change and every refused request in this workspace, newest first."),
    filters,
    box.element,
    body,
    more,
  );

  let entries = [];
  let nextCursor = null;
  const fetchPage = async (cursor) => {
    const page = await api("GET", `/audit${query({ ...values, cursor })}`);
    entries = entries.concat(page.entries);
    nextCursor = page.next_cursor;
  };
  const render = () => {
    replace(
      body,
      table(
        "Audit trail",
        ["At", "Actor", "Action", "Target", "Outcome", "From", "Detail"],
        entries.map(entryRow),
        "No entries match.",
      ),
    );
    replace(
      more,
      nextCursor
        ? h(
            "button",
            {
              type: "button",
              class: "button-secondary",
              id: "audit-more",
              onclick: async () => {
                box.clear();
                try {
                  await fetchPage(nextCursor);
                  if (context.active) render();
                } catch (error) {
                  box.show(error);
                }
              },
            },
            "Load more",
          )
        : null,
    );
  };
  try {
    await fetchPage(null);
  } catch (error) {
    box.show(error);
  }
  if (context.active) render();
}
