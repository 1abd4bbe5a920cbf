// The dashboard's shell: hash routing (the server only serves `/` and assets), the
// navigation, and per-page polling that stops when the page changes or the tab is hidden.

import { logOut, session, whenSessionEnds } from "./api.js";
import { announce, h, replace } from "./dom.js";
import * as agents from "./agents.js";
import * as auth from "./auth.js";
import * as fanout from "./fanout.js";
import * as jobs from "./jobs.js";
import * as run from "./run.js";
import * as schedules from "./schedules.js";
import * as settings from "./settings.js";

const ROUTES = [
  { pattern: /^\/login$/, view: auth.login, title: "Log in", public: true },
  { pattern: /^\/signup$/, view: auth.signup, title: "Sign up", public: true },
  { pattern: /^\/verify$/, view: auth.verify, title: "Verify your email", public: true },
  { pattern: /^\/agents$/, view: agents.page, title: "Agents", nav: "agents" },
  { pattern: /^\/jobs$/, view: jobs.listPage, title: "Jobs", nav: "jobs" },
  { pattern: /^\/jobs\/([A-Za-z0-9_-]+)$/, view: jobs.detailPage, title: "Job", nav: "jobs" },
  { pattern: /^\/run$/, view: run.page, title: "Run a script", nav: "run" },
  { pattern: /^\/fan-out\/([A-Za-z0-9_-]+)$/, view: fanout.page, title: "Fan-out", nav: "run" },
  { pattern: /^\/schedules$/, view: schedules.page, title: "Schedules", nav: "schedules" },
  { pattern: /^\/settings\/api-keys$/, view: settings.apiKeysPage, title: "API keys", nav: "api-keys" },
  {
    pattern: /^\/settings\/integrations$/,
    view: settings.integrationsPage,
    title: "Integrations",
    nav: "integrations",
  },
];

const NAV = [
  ["agents", "#/agents", "Agents"],
  ["jobs", "#/jobs", "Jobs"],
  ["run", "#/run", "Run"],
  ["schedules", "#/schedules", "Schedules"],
  ["api-keys", "#/settings/api-keys", "API keys"],
  ["integrations", "#/settings/integrations", "Integrations"],
];

/** What a page may use while it is shown; everything it started stops when it is left. */
class PageContext {
  constructor(params, query) {
    this.params = params;
    this.query = query;
    this.active = true;
    this.cleanups = [];
  }

  /** Runs `task` every `intervalMs` while the page is shown and the tab visible, until it returns false. */
  poll(task, intervalMs) {
    let timer = null;
    const schedule = () => {
      if (!this.active) return;
      if (document.visibilityState !== "visible") return; // resumed by the listener below
      timer = setTimeout(tick, intervalMs);
    };
    const tick = async () => {
      timer = null;
      if (!this.active) return;
      let again = true;
      try {
        again = (await task()) !== false;
      } catch (error) {
        announce(error.message, "error");
      }
      if (again) schedule();
      else stop();
    };
    const onVisibility = () => {
      if (document.visibilityState === "visible" && timer === null && this.active) tick();
    };
    const stop = () => {
      clearTimeout(timer);
      timer = null;
      document.removeEventListener("visibilitychange", onVisibility);
    };
    document.addEventListener("visibilitychange", onVisibility);
    this.cleanups.push(stop);
    schedule();
    return stop;
  }

  onLeave(cleanup) {
    this.cleanups.push(cleanup);
  }

  leave() {
    this.active = false;
    this.cleanups.forEach((cleanup) => cleanup());
  }
}

let current = null;

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, "")) || "/agents";
  const [path, search = ""] = raw.split("?");
  return { path, query: new URLSearchParams(search) };
}

function renderShell(route) {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (route.public || !session.isLoggedIn()) {
    nav.hidden = true;
    replace(account);
    return;
  }
  nav.hidden = false;
  replace(
    nav.querySelector("ul"),
    NAV.map(([key, href, label]) =>
      h("li", {}, h("a", { href, "aria-current": key === route.nav ? "page" : null }, label)),
    ),
  );
  replace(
    account,
    h("span", { class: "account-email" }, session.email || ""),
    h(
      "button",
      {
        type: "button",
        class: "button-quiet",
        onclick: async () => {
          await logOut();
          announce("You are logged out.");
          location.hash = "#/login";
        },
      },
      "Log out",
    ),
  );
}

async function navigate() {
  const { path, query } = parseHash();
  const route = ROUTES.find((candidate) => candidate.pattern.test(path));
  if (!route) {
    location.replace("#/agents");
    return;
  }
  if (!route.public && !session.isLoggedIn()) {
    location.replace("#/login");
    return;
  }
  if (route.public && session.isLoggedIn() && path === "/login") {
    location.replace("#/agents");
    return;
  }
  if (current) current.leave();
  const params = path.match(route.pattern).slice(1);
  const context = new PageContext(params, query);
  current = context;
  renderShell(route);
  document.title = `${route.title} · ScriptMesh`;
  const main = document.getElementById("main");
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    await route.view(main, context);
  } catch (error) {
    if (context.active) {
      replace(main, h("h1", { tabindex: "-1" }, route.title), h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  if (context.active) {
    const heading = main.querySelector("h1");
    // Move focus to the new page's heading, as a full page load would, unless the page
    // put it somewhere on purpose (an autofocus field).
    if (heading && !main.contains(document.activeElement)) heading.focus({ preventScroll: false });
  }
}

whenSessionEnds(() => {
  announce("Your session has ended. Please log in again.", "error");
  location.hash = "#/login";
});

// The skip link must not change the hash (that is the router's): it only moves focus.
document.querySelector(".skip-link")?.addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});

window.addEventListener("hashchange", navigate);
navigate();
