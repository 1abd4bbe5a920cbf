// Jobs: a filtered list with live status, and one job's detail with its stdout and stderr.

import { api, can, followEvents, isFinished, JOB_STATUSES, query } from "./api.js";
import { announce, badge, errorBox, field, h, localTime, pageTitle, replace, table, timeAgo } from "./dom.js";

const POLL_MS = 2000;
const FILTERS = ["agent", "status", "script", "since", "until"];

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** datetime-local value (local time) to RFC 3339 in UTC, as the API's since/until expect. */
export function toRfc3339(localValue) {
  if (!localValue) return "";
  const time = new Date(localValue);
  return Number.isNaN(time.getTime()) ? "" : time.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** RFC 3339 back to a datetime-local value (local time), to show the active filter. */
export function toLocalInput(text) {
  const time = new Date(text);
  if (!text || Number.isNaN(time.getTime())) return "";
  const local = new Date(time.getTime() - time.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function jobRow(job) {
  return h(
    "tr",
    { dataset: { job: job.job_id } },
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.job_id}`, class: "mono" }, job.job_id)),
    h("td", {}, job.agent),
    h("td", {}, job.script),
    h("td", { class: "job-status" }, badge(job.status)),
    h("td", {}, job.exit_code ?? "—"),
    h("td", {}, duration(job.duration_ms)),
    h("td", {}, timeAgo(job.created_at)),
  );
}

export async function listPage(main, context) {
  const values = Object.fromEntries(FILTERS.map((name) => [name, context.query.get(name) || ""]));
  const agent = h("input", { type: "text", name: "agent", value: values.agent, autocomplete: "off" });
  const script = h("input", { type: "text", name: "script", value: values.script, autocomplete: "off" });
  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "Any status"),
    JOB_STATUSES.map((name) => h("option", { value: name, selected: name === values.status }, name)),
  );
  const since = h("input", { type: "datetime-local", name: "since", value: toLocalInput(values.since) });
  const until = h("input", { type: "datetime-local", name: "until", value: toLocalInput(values.until) });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("Agent", agent),
    field("Script", script),
    field("Status", status),
    field("Created after", since),
    field("Created before", until),
    h(
      "div",
      { class: "filter-actions" },
      h("button", { type: "submit", class: "button-secondary" }, "Apply filters"),
      h("a", { href: "#/jobs", class: "button button-quiet" }, "Clear"),
    ),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/jobs${query({
      agent: agent.value.trim(),
      script: script.value.trim(),
      status: status.value,
      since: toRfc3339(since.value),
      until: toRfc3339(until.value),
    })}`;
  });
  const box = errorBox();
  const body = h("div", {});
  const more = h("div", { class: "more" });
  replace(
    main,
    pageTitle("Jobs", can("jobs.run") ? h("a", { class: "button button-primary", href: "#/run" }, "Run a script") : null),
    filters,
    box.element,
    body,
    more,
  );

  // Every job loaded so far (pages appended with "Load more"), refreshed in place.
  let jobs = [];
  let nextCursor = null;
  const filter = Object.fromEntries(FILTERS.map((name) => [name, values[name]]));
  const render = () => {
    replace(
      body,
      table(
        "Jobs",
        ["Job", "Agent", "Script", "Status", "Exit code", "Duration", "Created"],
        jobs.map(jobRow),
        "No jobs match. Run a script to create one.",
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
              onclick: async () => {
                try {
                  const page = await api("GET", `/jobs${query({ ...filter, cursor: nextCursor })}`);
                  jobs = jobs.concat(page.jobs);
                  nextCursor = page.next_cursor;
                  render();
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
    const first = await api("GET", `/jobs${query(filter)}`);
    jobs = first.jobs;
    nextCursor = first.next_cursor;
  } catch (error) {
    box.show(error);
  }
  render();

  // Live status: while any shown job is unfinished, refresh the newest page and the
  // unfinished ones beyond it.
  let ticks = 0;
  context.poll(async () => {
    ticks += 1;
    // Nothing moving: still look for new jobs, at a third of the pace.
    if (!jobs.some((job) => !isFinished(job.status)) && ticks % 3 !== 0) return true;
    const fresh = await api("GET", `/jobs${query({ ...filter, limit: Math.max(50, Math.min(jobs.length, 500)) })}`);
    if (!context.active) return false;
    const byId = new Map(fresh.jobs.map((job) => [job.job_id, job]));
    const known = new Set(jobs.map((job) => job.job_id));
    const added = fresh.jobs.filter((job) => !known.has(job.job_id));
    jobs = added.concat(jobs.map((job) => byId.get(job.job_id) || job));
    render();
    return true;
  }, POLL_MS);
}

export async function detailPage(main, context) {
  const [jobId] = context.params;
  const box = errorBox();
  const body = h("div", {});
  replace(main, pageTitle(`Job ${jobId}`), box.element, body);
  let job = await api("GET", `/jobs/${encodeURIComponent(jobId)}`);

  const render = () => {
    const rows = [
      ["Status", h("span", { id: "job-status" }, badge(job.status))],
      ["Agent", job.agent],
      ["Script", job.script],
      ["Params", Object.keys(job.params || {}).length ? h("code", {}, JSON.stringify(job.params)) : "—"],
      ["Exit code", job.exit_code ?? "—"],
      ["Duration", duration(job.duration_ms)],
      ["Created", localTime(job.created_at)],
      ["Started", localTime(job.started_at)],
      ["Completed", localTime(job.completed_at)],
      ["Timeout", job.timeout ? `${job.timeout} s` : "agent default"],
      job.reason ? ["Reason", job.reason] : null,
      job.fanout_id
        ? ["Fan-out", h("a", { href: `#/fan-out/${job.fanout_id}`, class: "mono", id: "job-fanout" }, job.fanout_id)]
        : null,
      job.schedule_id ? ["Schedule", job.schedule_id] : null,
    ].filter(Boolean);
    const cancel = isFinished(job.status) || !can("jobs.run")
      ? null
      : h(
          "button",
          {
            type: "button",
            class: "button-danger",
            onclick: async () => {
              if (!window.confirm(`Cancel job ${job.job_id}?`)) return;
              try {
                job = await api("POST", `/jobs/${encodeURIComponent(job.job_id)}/cancel`);
                announce("Cancellation requested.", "success");
                render();
              } catch (error) {
                box.show(error);
              }
            },
          },
          "Cancel job",
        );
    replace(
      body,
      h("dl", { class: "details" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
      h(
        "div",
        { class: "actions" },
        cancel,
        can("jobs.run")
          ? h("a", { href: `#/run?agent=${encodeURIComponent(job.agent)}&script=${encodeURIComponent(job.script)}`, class: "button button-secondary" }, "Run again")
          : null,
      ),
      // While the job runs its output arrives live; once it finished, the stored result shows.
      isFinished(job.status) ? null : live.section,
      isFinished(job.status) ? output("stdout", job.stdout, job.stdout_truncated) : null,
      isFinished(job.status) ? output("stderr", job.stderr, job.stderr_truncated) : null,
    );
  };
  const live = liveOutput();
  render();
  if (!isFinished(job.status)) {
    context.poll(async () => {
      job = await api("GET", `/jobs/${encodeURIComponent(jobId)}`);
      if (!context.active) return false;
      render();
      if (isFinished(job.status)) {
        announce(`Job finished: ${job.status}.`, job.status === "success" ? "success" : "error");
        return false;
      }
      return true;
    }, POLL_MS);
    const abort = new AbortController();
    context.onLeave(() => abort.abort());
    followEvents(
      `/jobs/${encodeURIComponent(jobId)}/output?follow=true`,
      (name, data) => {
        if (name === "output" && data) live.append(data.stream, data.data);
        else if (name === "gap" && data) live.append("note", `\n[${data.to - data.from} bytes of output not kept]\n`);
        return name !== "end";
      },
      abort.signal,
    ).catch((error) => box.show(error));
  }
}

/** The live output of a running job: both pipes interleaved as a terminal shows them. */
function liveOutput() {
  const pre = h("pre", { id: "job-live", tabindex: "0", "aria-live": "off" });
  const empty = h("p", { class: "muted", id: "job-live-empty" }, "Waiting for output…");
  const section = h(
    "section",
    { class: "output", "aria-labelledby": "job-live-title" },
    h("h2", { id: "job-live-title" }, "Output ", h("span", { class: "muted" }, "(live)")),
    empty,
    pre,
  );
  return {
    section,
    append(stream, text) {
      empty.hidden = true;
      // Text nodes only: script output is untrusted and must never be parsed as HTML.
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(stream === "stdout" ? document.createTextNode(text) : h("span", { class: `live-${stream}` }, text));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    },
  };
}

function output(name, text, truncated) {
  const id = `job-${name}`;
  return h(
    "section",
    { class: "output", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, name, truncated ? h("span", { class: "muted" }, " (truncated)") : null),
    // textContent only: script output is untrusted and must never be parsed as HTML.
    text ? h("pre", { id, tabindex: "0" }, text) : h("p", { class: "muted", id }, "(empty)"),
  );
}
