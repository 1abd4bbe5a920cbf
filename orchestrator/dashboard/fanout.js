// A fan-out: its progress, every agent's job, and the agents grouped by outcome with each
// group's unified diff against the baseline (the largest group). Diff lines are text nodes
// in spans whose class says what kind of line they are: output never becomes markup.

import { api } from "./api.js";
import { badge, errorBox, field, h, pageTitle, replace, submitting, table } from "./dom.js";

const POLL_MS = 2000;

export async function page(main, context) {
  const [fanoutId] = context.params;
  const path = `/fan-out/${encodeURIComponent(fanoutId)}`;

  const masks = h("textarea", { id: "fanout-masks", rows: 2, spellcheck: "false", autocomplete: "off" });
  const trailing = h("input", { type: "checkbox", id: "fanout-trailing" });
  const contextLines = h("input", { type: "number", id: "fanout-context", min: 0, max: 20, step: 1, value: 3, inputmode: "numeric" });
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack", "aria-label": "How to compare" },
    field(
      "Masks, one regular expression per line",
      masks,
      "Matches become <masked> in every line before comparing: timestamps, host names, ids.",
    ),
    h("div", { class: "choice" }, trailing, h("label", { for: "fanout-trailing" }, "Ignore trailing white space")),
    field("Context lines", contextLines),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Compare"),
  );
  const progress = h("div", { id: "fanout-progress" });
  const groups = h("div", { id: "fanout-groups", "aria-live": "polite" });
  replace(main, pageTitle(`Fan-out ${fanoutId}`), progress, h("h2", {}, "Results by outcome"), form, groups);

  const comparison = () => {
    const search = new URLSearchParams();
    masks.value
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean)
      .forEach((mask) => search.append("mask", mask));
    if (trailing.checked) search.set("ignore_trailing_whitespace", "true");
    if (contextLines.value !== "") search.set("context", contextLines.value);
    return search.toString();
  };
  const compare = async () => {
    const state = await api("GET", `${path}?${comparison()}`);
    if (!context.active) return state;
    renderProgress(progress, state);
    renderGroups(groups, state);
    return state;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, compare);
  });

  const first = await compare();
  if (first.done) return;
  // Progress without outputs while jobs run; the groups once more when the last one ends.
  context.poll(async () => {
    const state = await api("GET", `${path}?groups=false`);
    if (!context.active) return false;
    renderProgress(progress, state);
    if (!state.done) return true;
    await compare();
    return false;
  }, POLL_MS);
}

function renderProgress(container, state) {
  const summary = state.summary;
  replace(
    container,
    h(
      "p",
      { id: "fanout-summary" },
      h("span", { class: "mono" }, state.script),
      `: ${summary.succeeded} succeeded, ${summary.failed} failed, ${summary.running} running, ${summary.pending} waiting of ${summary.total}`,
      state.done ? " — done." : "…",
    ),
    table(
      "Jobs of the fan-out",
      ["Agent", "Status", "Exit code", "Job"],
      state.jobs.map((job) =>
        h(
          "tr",
          { dataset: { agent: job.agent } },
          h("th", { scope: "row" }, job.agent),
          h("td", {}, badge(job.status)),
          h("td", {}, job.exit_code ?? "—"),
          h("td", {}, h("a", { href: `#/jobs/${job.job_id}`, class: "mono" }, job.job_id)),
        ),
      ),
      "This fan-out has no jobs.",
    ),
  );
}

function renderGroups(container, state) {
  const groups = state.groups || [];
  const heading =
    groups.length === 0
      ? "No job has finished yet: nothing to compare."
      : groups.length === 1
        ? "Every finished job had the same result."
        : `${groups.length} different results; each group is compared with the baseline, the largest.`;
  const unfinished = state.unfinished || [];
  replace(
    container,
    h("p", { class: "fanout-verdict" }, heading),
    groups.map(groupSection),
    unfinished.length
      ? h("p", { class: "muted" }, "Not finished, not compared: ", unfinished.map((job) => `${job.agent} (${job.status})`).join(", "))
      : null,
  );
}

function groupSection(group) {
  const size = `${group.size} agent${group.size === 1 ? "" : "s"}`;
  const differs = group.differs_in.length ? `differs in ${group.differs_in.join(", ").replaceAll("_", " ")}` : null;
  return h(
    "section",
    { class: "fanout-group", dataset: { group: group.id }, "aria-label": `${group.baseline ? "Baseline" : "Group"} ${group.id}` },
    h("h3", {}, group.baseline ? "Baseline" : "Group", " ", h("span", { class: "mono" }, group.id), ` · ${size}`),
    h(
      "p",
      {},
      badge(group.status),
      group.exit_code === null || group.exit_code === undefined ? null : ` exit ${group.exit_code}`,
      differs ? ` · ${differs}` : null,
    ),
    h(
      "ul",
      { class: "tags" },
      group.agents.map((member) =>
        h("li", {}, h("a", { href: `#/jobs/${member.job_id}`, class: "tag", title: member.job_id }, member.agent)),
      ),
    ),
    group.stdout_diff ? diffBlock(group.stdout_diff) : null,
    group.stderr_diff ? diffBlock(group.stderr_diff) : null,
    group.diff_truncated ? h("p", { class: "muted" }, "The diff was cut at 256 KiB.") : null,
    group.diff_omitted ? h("p", { class: "muted" }, "No diff: beyond the first 50 groups or the answer's diff budget.") : null,
  );
}

/** A unified diff in a <pre>, one span (a text node inside) per line, classed by its kind. */
function diffBlock(text) {
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return h(
    "pre",
    { class: "diff", tabindex: "0" },
    lines.map((line, index) => h("span", { class: diffLineClass(line, index) }, `${line}\n`)),
  );
}

function diffLineClass(line, index) {
  // Only the first two lines are headers: a removed line may start with "--" too.
  if (index < 2 && (line.startsWith("--- ") || line.startsWith("+++ "))) return "diff-head";
  if (line.startsWith("@@")) return "diff-hunk";
  if (line.startsWith("+")) return "diff-add";
  if (line.startsWith("-")) return "diff-del";
  return "diff-same";
}
