// Members: the tenant's people and open invitations; invite, change a role, remove.

import { api, can, currentMe } from "./api.js";
import { announce, badge, errorBox, field, h, localTime, pageTitle, replace, submitting, table, timeAgo } from "./dom.js";

const ROLES = ["viewer", "operator", "admin", "owner"];

const ROLE_HINT = "Viewers read; operators also run scripts and manage schedules; admins also manage agents, keys, integrations, members and read the audit trail; owners also manage owners.";

/** The roles this session may hand out: owner only with `owners.manage`. */
function grantableRoles() {
  return ROLES.filter((role) => role !== "owner" || can("owners.manage"));
}

export async function membersPage(main, context) {
  const listBox = errorBox();
  const list = h("div", {});

  const load = async () => {
    const { members, invitations } = await api("GET", "/tenant/members");
    if (!context.active) return;
    replace(
      list,
      table(
        "Members and invitations",
        ["Email", "Role", "Status", "Since", "Actions"],
        [
          ...members.map((member) => memberRow(member, listBox, load)),
          ...invitations.map((invitation) => invitationRow(invitation, listBox, load)),
        ],
        "No members.",
      ),
    );
  };

  replace(
    main,
    pageTitle("Members"),
    h("p", { class: "muted" }, ROLE_HINT),
    inviteForm(load),
    h("h2", {}, "Members and invitations"),
    listBox.element,
    list,
  );
  await load();
}

function inviteForm(reload) {
  const email = h("input", { id: "member-email", type: "email", required: true, autocomplete: "off" });
  const role = h(
    "select",
    { id: "member-role" },
    grantableRoles().map((name) => h("option", { value: name, selected: name === "operator" }, name)),
  );
  const box = errorBox();
  const form = h(
    "form",
    { class: "inline-form", "aria-labelledby": "invite-title" },
    h("h2", { id: "invite-title" }, "Invite a teammate"),
    field("Email", email, "They get a code by email to join this workspace with."),
    field("Role", role),
    box.element,
    h("button", { type: "submit", class: "button-primary" }, "Send invitation"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, box, async () => {
      const invited = await api("POST", "/tenant/members", { email: email.value.trim(), role: role.value });
      announce(`Invitation sent to ${invited.email} (${invited.role}).`, "success");
      form.reset();
      await reload();
    });
  });
  return form;
}

function memberRow(member, box, reload) {
  const self = currentMe()?.user?.id === member.id;
  // Changing an owner's role, or making someone owner, needs `owners.manage`.
  const locked = member.role === "owner" && !can("owners.manage");
  const roles = locked ? ["owner"] : grantableRoles();
  const role = h(
    "select",
    {
      class: "member-role",
      "aria-label": `Role of ${member.email}`,
      disabled: locked,
      onchange: async () => {
        box.clear();
        try {
          const changed = await api("PATCH", `/tenant/members/${encodeURIComponent(member.id)}`, { role: role.value });
          announce(`${changed.email} is now ${changed.role}.`, "success");
        } catch (error) {
          box.show(error);
        }
        await reload();
      },
    },
    roles.map((name) => h("option", { value: name, selected: name === member.role }, name)),
  );
  return h(
    "tr",
    { dataset: { member: member.id, email: member.email } },
    h("th", { scope: "row" }, member.email, self ? h("span", { class: "muted" }, " (you)") : null),
    h("td", {}, role),
    h("td", {}, badge(member.status)),
    h("td", {}, timeAgo(member.joined_at)),
    h(
      "td",
      { class: "row-actions" },
      locked
        ? null
        : removeButton(`Remove ${member.email}`, `Remove ${member.email} from this workspace?`, member, box, reload),
    ),
  );
}

function invitationRow(invitation, box, reload) {
  return h(
    "tr",
    { dataset: { invitation: invitation.id, email: invitation.email } },
    h("th", { scope: "row" }, invitation.email),
    h("td", {}, invitation.role),
    h("td", {}, badge(invitation.status), h("span", { class: "muted" }, " until "), localTime(invitation.expires_at)),
    h("td", {}, timeAgo(invitation.invited_at)),
    h(
      "td",
      { class: "row-actions" },
      removeButton(
        `Withdraw the invitation to ${invitation.email}`,
        `Withdraw the invitation to ${invitation.email}?`,
        invitation,
        box,
        reload,
        "Withdraw",
      ),
    ),
  );
}

/** `DELETE /tenant/members/{id}`: removes a member (usr_) or withdraws an invitation (inv_). */
function removeButton(label, question, entry, box, reload, text = "Remove") {
  return h(
    "button",
    {
      type: "button",
      class: "button-quiet danger",
      "aria-label": label,
      onclick: async () => {
        if (!window.confirm(question)) return;
        box.clear();
        try {
          await api("DELETE", `/tenant/members/${encodeURIComponent(entry.id)}`);
          announce(text === "Remove" ? `${entry.email} removed.` : `Invitation to ${entry.email} withdrawn.`, "success");
          await reload();
        } catch (error) {
          box.show(error);
        }
      },
    },
    text,
  );
}

