// Agents: status, tags, scripts and last heartbeat, refreshed while the page is shown.

import { api, can } from "./api.js";
import { badge, h, pageTitle, replace, table, timeAgo } from "./dom.js";

const REFRESH_MS = 5000;

export async function page(main, context) {
  const body = h("div", { class: "agents-body" });
  replace(
    main,
    pageTitle("Agents", can("jobs.run") ? h("a", { class: "button button-primary", href: "#/run" }, "Run a script") : null),
    h(
      "p",
      { class: "muted" },
      "Agents connect to the orchestrator on their own and report every heartbeat. Start one with an API key from ",
      can("keys.manage") ? h("a", { href: "#/settings/api-keys" }, "Settings → API keys") : "an admin",
      ".",
    ),
    body,
  );
  const load = async () => {
    const agents = Object.values(await api("GET", "/agents"));
    if (!context.active) return false;
    agents.sort((a, b) => a.name.localeCompare(b.name));
    replace(
      body,
      table(
        "Agents",
        ["Name", "Status", "Tags", "Scripts", "Last heartbeat", "Host", ""],
        agents.map((agent) =>
          h(
            "tr",
            { dataset: { agent: agent.name } },
            h("th", { scope: "row" }, agent.name),
            h("td", { class: "agent-status" }, badge(agent.status)),
            h("td", {}, tagList(agent.tags)),
            h("td", {}, agent.scripts.length ? agent.scripts.join(", ") : h("span", { class: "muted" }, "none reported")),
            h("td", {}, timeAgo(agent.last_heartbeat)),
            h("td", {}, [agent.hostname, agent.os, agent.version && `v${agent.version}`].filter(Boolean).join(" · ")),
            h(
              "td",
              {},
              can("jobs.run")
                ? [
                    h(
                      "a",
                      { href: `#/run?agent=${encodeURIComponent(agent.name)}`, "aria-label": `Run a script on ${agent.name}` },
                      "Run",
                    ),
                    " ",
                  ]
                : null,
              h("a", { href: `#/jobs?agent=${encodeURIComponent(agent.name)}`, "aria-label": `Jobs of ${agent.name}` }, "Jobs"),
            ),
          ),
        ),
        "No agents yet. Create an API key, then start an agent with it: it appears here at its first heartbeat.",
      ),
    );
    return true;
  };
  await load();
  context.poll(load, REFRESH_MS);
}

export function tagList(tags) {
  if (!tags || tags.length === 0) return h("span", { class: "muted" }, "—");
  return h(
    "ul",
    { class: "tags" },
    tags.map((tag) => h("li", { class: "tag" }, tag)),
  );
}
