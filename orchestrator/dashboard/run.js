// Run a script: on one agent (then follow its job) or fanned out to every agent with some tags.

import { api } from "./api.js";
import { announce, badge, errorBox, field, h, pageTitle, paramsEditor, replace, splitList, submitting, table } from "./dom.js";

export async function page(main, context) {
  const agents = Object.values(await api("GET", "/agents")).sort((a, b) => a.name.localeCompare(b.name));
  if (!context.active) return;
  const wantedAgent = context.query.get("agent") || "";
  const wantedScript = context.query.get("script") || "";

  const modeOne = h("input", { type: "radio", name: "mode", value: "agent", id: "mode-agent", checked: true });
  const modeTags = h("input", { type: "radio", name: "mode", value: "tags", id: "mode-tags" });
  const mode = h(
    "fieldset",
    { class: "mode" },
    h("legend", {}, "Where"),
    h("div", { class: "choice" }, modeOne, h("label", { for: "mode-agent" }, "One agent")),
    h("div", { class: "choice" }, modeTags, h("label", { for: "mode-tags" }, "Every agent with tags (fan-out)")),
  );

  const agentSelect = h(
    "select",
    { id: "run-agent", name: "agent" },
    agents.map((agent) =>
      h("option", { value: agent.name, selected: agent.name === wantedAgent }, `${agent.name} (${agent.status})`),
    ),
  );
  const tagsInput = h("input", { id: "run-tags", type: "text", name: "tags", autocomplete: "off", placeholder: "production, backend" });
  const scriptSelect = h("select", { id: "run-script", name: "script" });
  const scriptInput = h("input", { id: "run-script-name", type: "text", name: "script-name", list: "known-scripts", autocomplete: "off" });
  const knownScripts = [...new Set(agents.flatMap((agent) => agent.scripts))].sort();
  const datalist = h("datalist", { id: "known-scripts" }, knownScripts.map((name) => h("option", { value: name })));
  const onlyOnline = h("input", { type: "checkbox", id: "run-only-online", checked: true });
  const timeout = h("input", { id: "run-timeout", type: "number", min: 1, step: 1, name: "timeout", inputmode: "numeric" });
  const params = paramsEditor();
  params.addRow();

  const agentField = field("Agent", agentSelect);
  const scriptField = field("Script", scriptSelect, "Only the scripts in the agent's manifest can run.");
  const tagsField = field("Tags", tagsInput, "Comma-separated. An agent must carry every tag listed.");
  const scriptNameField = field("Script", scriptInput);
  const onlineField = h("div", { class: "choice" }, onlyOnline, h("label", { for: "run-only-online" }, "Only agents that are online"));

  const fillScripts = () => {
    const agent = agents.find((candidate) => candidate.name === agentSelect.value);
    const scripts = agent ? agent.scripts : [];
    replace(
      scriptSelect,
      scripts.length
        ? scripts.map((name) => h("option", { value: name, selected: name === wantedScript }, name))
        : h("option", { value: "" }, "No scripts reported"),
    );
  };
  const showMode = () => {
    const fanOut = modeTags.checked;
    agentField.hidden = fanOut;
    scriptField.hidden = fanOut;
    tagsField.hidden = !fanOut;
    scriptNameField.hidden = !fanOut;
    onlineField.hidden = !fanOut;
  };
  agentSelect.addEventListener("change", fillScripts);
  modeOne.addEventListener("change", showMode);
  modeTags.addEventListener("change", showMode);

  const box = errorBox();
  const result = h("div", { class: "run-result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "stack run-form" },
    mode,
    agentField,
    scriptField,
    tagsField,
    scriptNameField,
    datalist,
    onlineField,
    params.element,
    field("Timeout in seconds (optional)", timeout, "Left empty, the agent's default applies."),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Run"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const body = { params: params.read() };
      if (timeout.value) body.timeout = Number(timeout.value);
      if (modeOne.checked) {
        if (!agentSelect.value) throw new Error("Choose an agent first.");
        if (!scriptSelect.value) throw new Error("This agent has reported no scripts yet.");
        const job = await api("POST", "/trigger-script", {
          ...body,
          agent: agentSelect.value,
          run_script: scriptSelect.value,
          async_exec: true,
        });
        announce(job.message || `Job ${job.job_id} queued.`, job.agent_status === "offline" ? "error" : "success");
        location.hash = `#/jobs/${job.job_id}`;
      } else {
        const tags = splitList(tagsInput.value);
        if (tags.length === 0) throw new Error("Give at least one tag.");
        if (!scriptInput.value.trim()) throw new Error("Name the script to run.");
        const fanned = await api("POST", "/fan-out", {
          ...body,
          tags,
          run_script: scriptInput.value.trim(),
          only_online: onlyOnline.checked,
        });
        announce(`Fan-out started on ${fanned.jobs.length} agent(s).`, "success");
        followFanOut(context, result, fanned);
      }
    });
  });

  replace(
    main,
    pageTitle("Run a script"),
    agents.length === 0
      ? h("p", { class: "empty" }, "No agents yet: start one with an API key from ", h("a", { href: "#/settings/api-keys" }, "Settings → API keys"), ".")
      : null,
    form,
    result,
  );
  fillScripts();
  if (wantedScript && !agents.some((agent) => agent.name === wantedAgent)) scriptInput.value = wantedScript;
  showMode();
}

/** Shows a fan-out's jobs and follows its summary until every job has ended. */
function followFanOut(context, container, fanned) {
  const skipped = fanned.skipped || [];
  const render = (status) => {
    const byAgent = new Map((status ? status.jobs : []).map((job) => [job.agent, job]));
    replace(
      container,
      h("h2", {}, "Fan-out ", h("span", { class: "mono" }, fanned.fanout_id)),
      h(
        "p",
        {},
        h("a", { href: `#/fan-out/${fanned.fanout_id}`, id: "fanout-compare" }, "Compare the results by agent"),
        " (grouped by outcome, with diffs)",
      ),
      status
        ? h(
            "p",
            { id: "fanout-summary" },
            `${status.summary.succeeded} succeeded, ${status.summary.failed} failed, ${status.summary.running} running, ${status.summary.pending} waiting of ${status.summary.total}`,
            status.done ? " — done." : "…",
          )
        : null,
      table(
        "Jobs of the fan-out",
        ["Agent", "Job", "Status"],
        fanned.jobs.map((job) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, job.agent),
            h("td", {}, h("a", { href: `#/jobs/${job.job_id}`, class: "mono" }, job.job_id)),
            h("td", {}, badge(byAgent.get(job.agent)?.status || "pending")),
          ),
        ),
        "No agent matched.",
      ),
      skipped.length
        ? h(
            "div",
            {},
            h("h3", {}, "Skipped"),
            h("ul", {}, skipped.map((entry) => h("li", {}, `${entry.agent}: ${entry.reason}`))),
          )
        : null,
    );
  };
  render(null);
  if (fanned.jobs.length === 0) return;
  context.poll(async () => {
    // Progress only: the comparison page reads the outputs.
    const status = await api("GET", `/fan-out/${encodeURIComponent(fanned.fanout_id)}?groups=false`);
    if (!context.active) return false;
    render(status);
    return !status.done;
  }, 2000);
}
