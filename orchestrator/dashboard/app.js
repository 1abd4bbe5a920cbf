// The dashboard's shell: hash routing (the server only serves `/` and assets), the
// navigation (only the pages the role may use), the account bar (role, workspace and a
// switcher between workspaces), and per-page polling that stops when the page changes or
// the tab is hidden.

import { can, currentMe, forgetMe, loadMe, logOut, session, whenSessionEnds } from "./api.js";
import { announce, h, replace } from "./dom.js";
import * as agents from "./agents.js";
import * as auth from "./auth.js";
import * as fanout from "./fanout.js";
import * as jobs from "./jobs.js";
import * as run from "./run.js";
import * as schedules from "./schedules.js";
import * as settings from "./settings.js";
import * as members from "./members.js";
import * as audit from "./audit.js";

// `permission`: what `/auth/me` must list for the page (see `can` in api.js).
const ROUTES = [
  { pattern: /^\/login$/, view: auth.login, title: "Log in", public: true },
  { pattern: /^\/signup$/, view: auth.signup, title: "Sign up", public: true },
  { pattern: /^\/verify$/, view: auth.verify, title: "Verify your email", public: true },
  { pattern: /^\/forgot$/, view: auth.forgot, title: "Forgot your password", public: true },
  { pattern: /^\/reset$/, view: auth.reset, title: "Reset your password", public: true },
  { pattern: /^\/join$/, view: auth.join, title: "Join a workspace", public: true },
  { pattern: /^\/agents$/, view: agents.page, title: "Agents", nav: "agents", permission: "agents.read" },
  { pattern: /^\/jobs$/, view: jobs.listPage, title: "Jobs", nav: "jobs", permission: "jobs.read" },
  { pattern: /^\/jobs\/([A-Za-z0-9_-]+)$/, view: jobs.detailPage, title: "Job", nav: "jobs", permission: "jobs.read" },
  { pattern: /^\/run$/, view: run.page, title: "Run a script", nav: "run", permission: "jobs.run" },
  { pattern: /^\/fan-out\/([A-Za-z0-9_-]+)$/, view: fanout.page, title: "Fan-out", nav: "run", permission: "jobs.read" },
  { pattern: /^\/schedules$/, view: schedules.page, title: "Schedules", nav: "schedules", permission: "schedules.read" },
  {
    pattern: /^\/settings\/api-keys$/,
    view: settings.apiKeysPage,
    title: "API keys",
    nav: "api-keys",
    permission: "keys.manage",
  },
  {
    pattern: /^\/settings\/integrations$/,
    view: settings.integrationsPage,
    title: "Integrations",
    nav: "integrations",
    permission: "integrations.manage",
  },
  { pattern: /^\/settings\/members$/, view: members.membersPage, title: "Members", nav: "members", permission: "members.manage" },
  { pattern: /^\/audit$/, view: audit.auditPage, title: "Audit trail", nav: "audit", permission: "audit.read" },
];

// [key, href, label, permission]
const NAV = [
  ["agents", "#/agents", "Agents", "agents.read"],
  ["jobs", "#/jobs", "Jobs", "jobs.read"],
  ["run", "#/run", "Run", "jobs.run"],
  ["schedules", "#/schedules", "Schedules", "schedules.read"],
  ["api-keys", "#/settings/api-keys", "API keys", "keys.manage"],
  ["integrations", "#/settings/integrations", "Integrations", "integrations.manage"],
  ["members", "#/settings/members", "Members", "members.manage"],
  ["audit", "#/audit", "Audit", "audit.read"],
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
    NAV.filter(([, , , permission]) => can(permission)).map(([key, href, label]) =>
      h("li", {}, h("a", { href, "aria-current": key === route.nav ? "page" : null }, label)),
    ),
  );
  const me = currentMe();
  replace(
    account,
    h("span", { class: "account-email" }, session.email || ""),
    me && me.role ? h("span", { class: "account-role badge badge-neutral", id: "account-role", title: "Your role here" }, me.role) : null,
    me && me.tenant ? workspace(me) : null,
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

/**
 * The workspace (tenant) name; for a member of several, a switcher: a login token belongs
 * to one workspace, so switching logs out and asks for the password again for the chosen one.
 */
function workspace(me) {
  const memberships = me.memberships || [];
  if (memberships.length < 2) {
    return h("span", { class: "account-tenant", id: "account-tenant", title: me.tenant.id }, me.tenant.name);
  }
  const select = h(
    "select",
    {
      id: "account-tenant",
      class: "account-tenant",
      onchange: async () => {
        const chosen = memberships.find((membership) => membership.tenant_id === select.value);
        const email = session.email || "";
        await logOut();
        announce(`Log in again to switch to ${chosen ? chosen.tenant_name : "that workspace"}.`);
        location.hash = `#/login?email=${encodeURIComponent(email)}&tenant=${encodeURIComponent(select.value)}&tenant_name=${encodeURIComponent(chosen ? chosen.tenant_name : "")}`;
      },
    },
    memberships.map((membership) =>
      h(
        "option",
        { value: membership.tenant_id, selected: membership.tenant_id === me.tenant.id },
        `${membership.tenant_name} (${membership.role})`,
      ),
    ),
  );
  return h("span", { class: "account-switch" }, h("label", { for: "account-tenant", class: "visually-hidden" }, "Workspace"), select);
}

/** Instead of a page the role may not use (a bookmark, a typed address). */
function notAllowed(main, route) {
  const me = currentMe();
  replace(
    main,
    h("h1", { tabindex: "-1" }, route.title),
    h(
      "p",
      { class: "error", role: "alert", id: "not-allowed" },
      `Your role${me && me.role ? ` (${me.role})` : ""} does not allow this page: it needs the permission ${route.permission}.`,
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
  const main = document.getElementById("main");
  if (!route.public && !currentMe()) {
    // Once per login (and after a reload of the tab): what this session may do.
    replace(main, h("p", { class: "muted" }, "Loading…"));
    try {
      await loadMe();
    } catch (error) {
      announce(error.message, "error");
    }
    if (!context.active) return;
  }
  renderShell(route);
  document.title = `${route.title} · ScriptMesh`;
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    if (route.permission && !can(route.permission)) notAllowed(main, route);
    else await route.view(main, context);
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
  forgetMe();
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
