// Schedules: the list (pause, resume, delete, recent runs) and a create form that previews
// the next fire times as the cron expression is typed.

import { api, can, query } from "./api.js";
import { announce, badge, errorBox, field, h, localTime, pageTitle, paramsEditor, replace, splitList, submitting, table } from "./dom.js";
import { tagList } from "./agents.js";

const PREVIEW_DELAY_MS = 300;

export async function page(main, context) {
  const listBox = errorBox();
  const list = h("div", {});
  const runs = h("div", { class: "schedule-runs", "aria-live": "polite" });
  const agents = Object.values(await api("GET", "/agents")).sort((a, b) => a.name.localeCompare(b.name));
  if (!context.active) return;

  const load = async () => {
    const { schedules } = await api("GET", "/schedules");
    if (!context.active) return;
    replace(
      list,
      table(
        "Schedules",
        ["Script", "Where", "Cron", "Status", "Next fire", "Last fire", "Actions"],
        schedules.map((schedule) => scheduleRow(schedule, listBox, load, runs)),
        "No schedules yet. Create one below.",
      ),
    );
  };

  replace(
    main,
    pageTitle("Schedules"),
    listBox.element,
    list,
    runs,
    can("schedules.write") ? createForm(agents, load) : null,
  );
  await load();
  context.poll(async () => {
    await load();
    return true;
  }, 15000);
}

function scheduleRow(schedule, box, reload, runsContainer) {
  const act = (label, method, path, done) =>
    h(
      "button",
      {
        type: "button",
        class: method === "DELETE" ? "button-quiet danger" : "button-quiet",
        "aria-label": `${label} schedule ${schedule.script} (${schedule.cron_expression})`,
        onclick: async () => {
          if (method === "DELETE" && !window.confirm(`Delete the schedule of ${schedule.script}?`)) return;
          box.clear();
          try {
            await api(method, path);
            announce(done, "success");
            await reload();
          } catch (error) {
            box.show(error);
          }
        },
      },
      label,
    );
  const base = `/schedules/${encodeURIComponent(schedule.id)}`;
  return h(
    "tr",
    { dataset: { schedule: schedule.id } },
    h("th", { scope: "row" }, schedule.script),
    h("td", {}, schedule.agent ? schedule.agent : tagList(schedule.tags)),
    h("td", {}, h("code", {}, schedule.cron_expression), schedule.timezone !== "UTC" ? ` (${schedule.timezone})` : ""),
    h("td", {}, badge(schedule.status)),
    h("td", {}, schedule.enabled ? localTime(schedule.next_fire) : "—"),
    h("td", {}, localTime(schedule.last_fire)),
    h(
      "td",
      { class: "row-actions" },
      !can("schedules.write")
        ? null
        : schedule.enabled
          ? act("Pause", "POST", `${base}/pause`, "Schedule paused.")
          : act("Resume", "POST", `${base}/resume`, "Schedule resumed."),
      h(
        "button",
        {
          type: "button",
          class: "button-quiet",
          "aria-label": `Runs of schedule ${schedule.script}`,
          onclick: () => showRuns(schedule, runsContainer, box),
        },
        "Runs",
      ),
      can("schedules.write") ? act("Delete", "DELETE", base, "Schedule deleted.") : null,
    ),
  );
}

async function showRuns(schedule, container, box) {
  try {
    const { runs } = await api("GET", `/schedules/${encodeURIComponent(schedule.id)}/runs${query({ limit: 20 })}`);
    replace(
      container,
      h("h2", { tabindex: "-1" }, `Recent runs of ${schedule.script}`),
      table(
        "Runs",
        ["Due", "Fired", "Outcome", "Jobs", "Reason"],
        runs.map((run) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, localTime(run.scheduled_for)),
            h("td", {}, localTime(run.fired_at)),
            h("td", {}, badge(run.outcome)),
            h(
              "td",
              {},
              run.job_ids.map((id) => [h("a", { href: `#/jobs/${id}`, class: "mono" }, id), " "]),
            ),
            h("td", {}, run.reason || ""),
          ),
        ),
        "This schedule has not fired yet.",
      ),
    );
    container.querySelector("h2").focus();
  } catch (error) {
    box.show(error);
  }
}

function createForm(agents, reload) {
  const modeAgent = h("input", { type: "radio", name: "schedule-target", id: "schedule-mode-agent", checked: true });
  const modeTags = h("input", { type: "radio", name: "schedule-target", id: "schedule-mode-tags" });
  const agent = h(
    "select",
    { id: "schedule-agent" },
    agents.map((candidate) => h("option", { value: candidate.name }, candidate.name)),
  );
  const tags = h("input", { id: "schedule-tags", type: "text", autocomplete: "off", placeholder: "production, backend" });
  const script = h("input", { id: "schedule-script", type: "text", required: true, list: "schedule-scripts", autocomplete: "off" });
  const scripts = h(
    "datalist",
    { id: "schedule-scripts" },
    [...new Set(agents.flatMap((candidate) => candidate.scripts))].sort().map((name) => h("option", { value: name })),
  );
  const cron = h("input", { id: "schedule-cron", type: "text", required: true, autocomplete: "off", placeholder: "0 2 * * *", class: "mono" });
  const timezone = h("input", { id: "schedule-timezone", type: "text", value: "UTC", autocomplete: "off", list: "timezones" });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const timezoneList = h("datalist", { id: "timezones" }, ["UTC", ...zones].map((zone) => h("option", { value: zone })));
  const overlap = h(
    "select",
    { id: "schedule-overlap" },
    h("option", { value: "skip" }, "Skip a fire while the previous run is going"),
    h("option", { value: "queue" }, "Queue it anyway"),
  );
  const timeout = h("input", { id: "schedule-timeout", type: "number", min: 1, step: 1 });
  const webhook = h("input", { id: "schedule-webhook", type: "url", autocomplete: "off", placeholder: "https://hooks.example.com/job-done" });
  const params = paramsEditor();
  const preview = h("div", { class: "preview", id: "schedule-preview", "aria-live": "polite" }, h("p", { class: "muted" }, "Type a cron expression to see its next fire times."));
  const agentField = field("Agent", agent);
  const tagsField = field("Tags", tags, "Every online agent carrying all of them at fire time.");
  tagsField.hidden = true;
  const showTarget = () => {
    agentField.hidden = modeTags.checked;
    tagsField.hidden = !modeTags.checked;
  };
  modeAgent.addEventListener("change", showTarget);
  modeTags.addEventListener("change", showTarget);

  // Debounced, and only the latest answer is shown (answers can arrive out of order).
  let timer = null;
  let latest = 0;
  const updatePreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const expression = cron.value.trim();
      const request = ++latest;
      if (!expression) {
        replace(preview, h("p", { class: "muted" }, "Type a cron expression to see its next fire times."));
        return;
      }
      try {
        const answer = await api(
          "GET",
          `/schedules/preview${query({ cron_expression: expression, timezone: timezone.value.trim() || "UTC", count: 5 })}`,
        );
        if (request !== latest) return;
        replace(
          preview,
          h("p", {}, `Next fires (${answer.timezone}):`),
          h(
            "ol",
            { class: "fires" },
            answer.next_fires.map((time) =>
              h("li", {}, h("time", { datetime: time }, `${new Date(time).toLocaleString()} `), h("span", { class: "muted" }, time)),
            ),
          ),
        );
      } catch (error) {
        if (request !== latest) return;
        replace(preview, h("p", { class: "error" }, error.message));
      }
    }, PREVIEW_DELAY_MS);
  };
  cron.addEventListener("input", updatePreview);
  timezone.addEventListener("input", updatePreview);

  const box = errorBox();
  const form = h(
    "form",
    { class: "stack schedule-form", "aria-labelledby": "new-schedule-title" },
    h("h2", { id: "new-schedule-title" }, "New schedule"),
    h(
      "fieldset",
      { class: "mode" },
      h("legend", {}, "Where"),
      h("div", { class: "choice" }, modeAgent, h("label", { for: "schedule-mode-agent" }, "One agent")),
      h("div", { class: "choice" }, modeTags, h("label", { for: "schedule-mode-tags" }, "Agents with tags")),
    ),
    agentField,
    tagsField,
    field("Script", script),
    scripts,
    field("Cron expression", cron, "minute hour day-of-month month day-of-week, e.g. 0 2 * * * or @daily."),
    field("Time zone", timezone),
    timezoneList,
    preview,
    field("When a run is still going", overlap),
    field("Timeout in seconds (optional)", timeout),
    field("Webhook URL (optional)", webhook, "Receives the job when a run ends."),
    params.element,
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Create schedule"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const body = {
        script: script.value.trim(),
        cron_expression: cron.value.trim(),
        timezone: timezone.value.trim() || "UTC",
        overlap: overlap.value,
        params: params.read(),
      };
      if (modeTags.checked) body.tags = splitList(tags.value);
      else body.agent = agent.value;
      if (timeout.value) body.timeout = Number(timeout.value);
      if (webhook.value.trim()) body.webhook_url = webhook.value.trim();
      const created = await api("POST", "/schedules", body);
      announce(`Schedule created; next fire ${created.next_fire ? new Date(created.next_fire).toLocaleString() : "—"}.`, "success");
      form.reset();
      showTarget();
      updatePreview();
      await reload();
    });
  });
  return form;
}
