// Building the page from data. Everything from the API (names, script output, error
// messages) is hostile input: it only ever goes into text nodes and attribute values,
// never into innerHTML, so it cannot become markup or code.

/**
 * Creates an element: h("a", {href: "#/jobs", class: "x"}, "text", child, [more]).
 * Attributes starting with "on" are event listeners; null/false attributes are left out;
 * strings and numbers among the children become text nodes.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** A labelled form field: <div class="field"><label for=id>..</label><input id=id ..></div>. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintElement = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintElement) control.setAttribute("aria-describedby", hintElement.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintElement);
}

/** A table with a caption, column headers (th scope=col) and rows of cells. */
export function table(caption, headers, rows, emptyText = "Nothing here yet.") {
  if (rows.length === 0) return h("p", { class: "empty" }, emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows),
    ),
  );
}

/** A status badge, coloured by the status' meaning. */
export function badge(status) {
  const tone =
    {
      online: "good",
      success: "good",
      delivered: "good",
      active: "good",
      fired: "good",
      caught_up: "good",
      ok: "good",
      offline: "bad",
      denied: "bad",
      failed: "bad",
      timeout: "bad",
      lost: "bad",
      missed: "bad",
      running: "busy",
      dispatched: "busy",
      pending: "wait",
      paused: "wait",
      invited: "wait",
      skipped: "wait",
      cancelled: "wait",
    }[status] || "neutral";
  return h("span", { class: `badge badge-${tone}` }, status ?? "—");
}

/** "3 min ago"-style text for an RFC 3339 time, with the exact time as a tooltip. */
export function timeAgo(text) {
  if (!text) return h("span", { class: "muted" }, "never");
  const then = new Date(text);
  const seconds = Math.round((Date.now() - then.getTime()) / 1000);
  let shown;
  if (Math.abs(seconds) < 5) shown = "just now";
  else if (seconds < 0) shown = `in ${describeSeconds(-seconds)}`;
  else shown = `${describeSeconds(seconds)} ago`;
  return h("time", { datetime: text, title: then.toLocaleString() }, shown);
}

function describeSeconds(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

/** A local, readable form of an RFC 3339 time. */
export function localTime(text) {
  if (!text) return "—";
  return h("time", { datetime: text, title: text }, new Date(text).toLocaleString());
}

/** Editable key/value rows for script params; `read()` gives an object of strings. */
export function paramsEditor(legend = "Params") {
  const rows = h("div", { class: "param-rows" });
  let count = 0;
  const addRow = (key = "", value = "") => {
    count += 1;
    const keyInput = h("input", { type: "text", class: "param-key", value: key, autocomplete: "off" });
    const valueInput = h("input", { type: "text", class: "param-value", value, autocomplete: "off" });
    const row = h(
      "div",
      { class: "param-row" },
      field(`Name ${count}`, keyInput),
      field(`Value ${count}`, valueInput),
      h(
        "button",
        { type: "button", class: "button-quiet", "aria-label": `Remove param ${count}`, onclick: () => row.remove() },
        "Remove",
      ),
    );
    rows.appendChild(row);
    return keyInput;
  };
  const element = h(
    "fieldset",
    { class: "params" },
    h("legend", {}, legend),
    h("p", { class: "hint" }, "Each param reaches the script as an environment variable of that name."),
    rows,
    h("button", { type: "button", class: "button-secondary", onclick: () => addRow().focus() }, "Add param"),
  );
  return {
    element,
    addRow,
    read() {
      const params = {};
      for (const row of rows.querySelectorAll(".param-row")) {
        const key = row.querySelector(".param-key").value.trim();
        if (key) params[key] = row.querySelector(".param-value").value;
      }
      return params;
    },
  };
}

/** Comma-separated text to a list of trimmed, non-empty items. */
export function splitList(text) {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

/** Says something in the page's live region (read out by screen readers, shown as a toast). */
export function announce(message, tone = "info") {
  const region = document.getElementById("status");
  if (!region) return;
  region.className = `status status-${tone}`;
  region.textContent = message;
  clearTimeout(announce.timer);
  if (tone !== "error") {
    announce.timer = setTimeout(() => {
      region.textContent = "";
      region.className = "status";
    }, 6000);
  }
}

/** An error box for a form or a section: `box.show(error)` shows the API's message. */
export function errorBox() {
  const element = h("p", { class: "error", role: "alert", hidden: true });
  return {
    element,
    show(error) {
      element.textContent = error && error.message ? error.message : String(error);
      element.hidden = false;
    },
    clear() {
      element.textContent = "";
      element.hidden = true;
    },
  };
}

/** Disables a form's submit button while `work` runs, and reports its error in `box`. */
export async function submitting(form, box, work) {
  const buttons = form.querySelectorAll("button[type=submit]");
  buttons.forEach((button) => (button.disabled = true));
  box.clear();
  try {
    return await work();
  } catch (error) {
    box.show(error);
    return undefined;
  } finally {
    buttons.forEach((button) => (button.disabled = false));
  }
}

/** A page heading that receives focus after navigation (keyboard and screen-reader users land on it). */
export function pageTitle(text, ...extra) {
  return h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, text), ...extra);
}
