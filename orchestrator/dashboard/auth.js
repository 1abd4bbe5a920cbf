// Sign up, email verification, log in (into one of several workspaces), a forgotten
// password's reset, and joining a workspace with an invitation's code.

import { forgetMe, publicApi, session } from "./api.js";
import { announce, errorBox, field, h, replace, submitting } from "./dom.js";

function card(title, intro, form, footer) {
  return h(
    "section",
    { class: "auth-card", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title", tabindex: "-1" }, title),
    intro ? h("p", { class: "muted" }, intro) : null,
    form,
    footer ? h("p", { class: "auth-footer" }, footer) : null,
  );
}

export async function login(main, page) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
    value: page.query.get("email") || "",
  });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  // Set by the workspace switcher: log in to that workspace rather than the home one.
  const tenant = page.query.get("tenant");
  const tenantName = page.query.get("tenant_name") || tenant;
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack", novalidate: false },
    tenant ? h("p", { class: "muted", id: "login-tenant" }, `Logging in to the workspace ${tenantName}.`) : null,
    field("Email", email),
    field("Password", password),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Log in"),
    h("p", {}, h("a", { href: "#/forgot", id: "forgot-link" }, "Forgot password?")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      try {
        const body = { email: email.value, password: password.value };
        if (tenant) body.tenant = tenant;
        const tokens = await publicApi("POST", "/auth/login", body);
        session.store(tokens, email.value.trim().toLowerCase());
        forgetMe();
        announce("Welcome back.", "success");
        location.hash = "#/agents";
      } catch (error) {
        if (error.code === "email_not_verified") {
          box.show(error);
          box.element.append(
            " ",
            h("a", { href: `#/verify?email=${encodeURIComponent(email.value.trim())}` }, "Enter your code"),
          );
          return;
        }
        throw error;
      }
    });
  });
  replace(
    main,
    card(
      "Log in to ScriptMesh",
      null,
      form,
      h("span", {}, "No account yet? ", h("a", { href: "#/signup" }, "Sign up")),
    ),
  );
  (email.value ? password : email).focus();
}

export async function signup(main) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password",
    name: "new-password",
    autocomplete: "new-password",
    required: true,
    minlength: 10,
  });
  const workspace = h("input", { type: "text", name: "workspace", autocomplete: "organization", maxlength: 100 });
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack" },
    field("Email", email),
    field("Password", password, "At least 10 characters."),
    field("Workspace name (optional)", workspace),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Create account"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const body = { email: email.value, password: password.value };
      if (workspace.value.trim()) body.tenant_name = workspace.value.trim();
      const created = await publicApi("POST", "/auth/register", body);
      announce("Account created. We sent a 6-digit code to your email.", "success");
      location.hash = `#/verify?email=${encodeURIComponent(created.email)}`;
    });
  });
  replace(
    main,
    card(
      "Create your account",
      "A workspace for your agents, jobs and schedules.",
      form,
      h("span", {}, "Already have an account? ", h("a", { href: "#/login" }, "Log in")),
    ),
  );
  email.focus();
}

export async function verify(main, page) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
    value: page.query.get("email") || "",
  });
  const code = h("input", {
    type: "text",
    name: "code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    pattern: "[0-9]{6}",
    maxlength: 6,
    required: true,
  });
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack" },
    field("Email", email),
    field("Verification code", code, "The 6-digit code from the email we sent you."),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Verify email"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      await publicApi("POST", "/auth/verify-email", { email: email.value, code: code.value.trim() });
      announce("Your email is verified. Log in to continue.", "success");
      location.hash = `#/login?email=${encodeURIComponent(email.value.trim())}`;
    });
  });
  const resend = h(
    "button",
    {
      type: "button",
      class: "button-link",
      onclick: async () => {
        box.clear();
        try {
          const answer = await publicApi("POST", "/auth/resend-code", { email: email.value });
          announce(answer.message || "A new code is on its way.", "success");
        } catch (error) {
          box.show(error);
        }
      },
    },
    "Send a new code",
  );
  replace(
    main,
    card("Verify your email", "Enter the code we emailed you.", form, h("span", {}, "No email? ", resend)),
  );
  (email.value ? code : email).focus();
}

function codeInput() {
  return h("input", {
    type: "text",
    name: "code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    pattern: "[0-9]{6}",
    maxlength: 6,
    required: true,
  });
}

function newPasswordInput() {
  return h("input", { type: "password", name: "new-password", autocomplete: "new-password", required: true, minlength: 10 });
}

export async function forgot(main, page) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
    value: page.query.get("email") || "",
  });
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack" },
    field("Email", email),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Send a reset code"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const answer = await publicApi("POST", "/auth/forgot-password", { email: email.value.trim() });
      announce(answer.message || "If the account exists, a code is on its way.", "success");
      location.hash = `#/reset?email=${encodeURIComponent(email.value.trim())}`;
    });
  });
  replace(
    main,
    card(
      "Forgot your password",
      "We email you a 6-digit code to set a new one with.",
      form,
      h("span", {}, "Remembered it? ", h("a", { href: "#/login" }, "Log in")),
    ),
  );
  email.focus();
}

export async function reset(main, page) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
    value: page.query.get("email") || "",
  });
  const code = codeInput();
  const password = newPasswordInput();
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack" },
    field("Email", email),
    field("Reset code", code, "The 6-digit code from the email we sent you."),
    field("New password", password, "At least 10 characters. Every session of the account ends."),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Set the new password"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      await publicApi("POST", "/auth/reset-password", {
        email: email.value.trim(),
        code: code.value.trim(),
        password: password.value,
      });
      announce("Your password is reset. Log in with it.", "success");
      location.hash = `#/login?email=${encodeURIComponent(email.value.trim())}`;
    });
  });
  replace(
    main,
    card("Reset your password", "Enter the code we emailed you and a new password.", form, h("span", {}, "No email? ", h("a", { href: "#/forgot" }, "Send another code"))),
  );
  (email.value ? code : email).focus();
}

/** Accepting an invitation: the emailed code and a password (an existing account's own). */
export async function join(main, page) {
  const email = h("input", {
    type: "email",
    name: "email",
    autocomplete: "username",
    required: true,
    value: page.query.get("email") || "",
  });
  const code = codeInput();
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, minlength: 10 });
  const box = errorBox();
  const form = h(
    "form",
    { class: "stack" },
    field("Email", email),
    field("Invitation code", code, "The 6-digit code from the invitation email."),
    field("Password", password, "Your password if you already have an account; else a new one of at least 10 characters."),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Join"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const joined = await publicApi("POST", "/auth/accept-invite", {
        email: email.value.trim(),
        code: code.value.trim(),
        password: password.value,
      });
      session.store(joined, email.value.trim().toLowerCase());
      forgetMe();
      announce(`You joined ${joined.tenant.name} as ${joined.role}.`, "success");
      location.hash = "#/agents";
    });
  });
  replace(
    main,
    card("Join a workspace", "Someone invited you to their ScriptMesh workspace.", form, h("span", {}, "Already a member? ", h("a", { href: "#/login" }, "Log in"))),
  );
  (email.value ? code : email).focus();
}
