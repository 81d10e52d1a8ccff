// An admin's people: invite someone (the user, then a sign-in link to their address),
// change a role, switch someone off; and the named roles policies notify through
// "role:<key>": create one, add and remove its members, delete it.
// GET/POST/PATCH /v1/users, POST /v1/auth/sign-in-link,
// GET/POST /v1/roles, DELETE /v1/roles/{key}, PUT/DELETE /v1/roles/{key}/members/{user_id}.
import { $, api, cell, el, errorText, notify, rank, renderWho, sessionEnded, token } from "/static/common.js";

const ROLES = ["viewer", "engineer", "admin", "owner"];
const ROLE_KEY = /^[a-z0-9_]{1,64}$/; // as the API takes it
const state = { me: null, users: [], roles: [] };

async function change(user, changes, what) {
  const result = await api(`/v1/users/${encodeURIComponent(user.id)}`, { method: "PATCH", body: changes });
  if (result.status === 401) return sessionEnded($("#notice"), what);
  if (!result.ok) notify($("#notice"), errorText(result));
  else notify($("#notice"), `${user.name}: ${what} saved.`, "ok", 4000);
  await load();
}

function row(user) {
  // The roles you may give, and the person's own even when it is above yours (shown, locked).
  const role = el("select", { "aria-label": `role of ${user.name}` }, ...ROLES
    .filter((r) => rank(r) <= rank(state.me.role) || r === user.role)
    .map((r) => { const o = el("option", { value: r }, r); o.selected = r === user.role; return o; }));
  role.addEventListener("change", () => change(user, { role: role.value }, "the role"));
  const active = el("input", { type: "checkbox", "aria-label": `${user.name} active` });
  active.checked = user.is_active;
  active.addEventListener("change", () => change(user, { is_active: active.checked }, active.checked ? "reactivation" : "deactivation"));
  const mine = user.id === state.me.id;
  role.disabled = active.disabled = mine || rank(user.role) > rank(state.me.role);
  return el("tr", { "data-user-id": user.id },
    el("td", { "data-label": "Name" }, user.name),
    el("td", { "data-label": "Email" }, user.email || "—",
      user.pending_email ? el("span", { class: "person-email" }, `changing to ${user.pending_email}`) : ""),
    el("td", { "data-label": "Role" }, role),
    el("td", { "data-label": "Active" }, active));
}

// ---- named roles ----

const roleUrl = (role) => `/v1/roles/${encodeURIComponent(role.key)}`;
const memberUrl = (role, user) => `${roleUrl(role)}/members/${encodeURIComponent(user.id)}`;

// A member by name; someone deleted since stays removable.
function member(id) {
  const user = state.users.find((u) => u.id === id);
  if (!user) return { id, name: "someone no longer listed" };
  return user.deleted_at ? { ...user, name: `${user.name} (deleted)` } : user;
}

function button(label, className, onClick) {
  const node = el("button", { type: "button", class: className }, label);
  node.addEventListener("click", () => onClick(node));
  return node;
}

// One write on a role, then the list again, then the notice: once it says so, the list
// shows it (and no choice is made in a row about to be replaced).
async function roleChange(path, method, what, done, node) {
  node.disabled = true;
  const result = await api(path, { method });
  if (result.status === 401) return sessionEnded($("#notice"), what);
  await load();
  if (!result.ok) notify($("#notice"), errorText(result));
  else notify($("#notice"), done, "ok", 4000);
}

function roleRow(role) {
  const members = role.member_ids.map(member).sort((a, b) => a.name.localeCompare(b.name));
  const list = el("ul", { class: "members", "aria-label": `members of ${role.name}` }, ...members.map((user) =>
    el("li", { "data-user-id": user.id }, el("span", { class: "member-name" }, user.name), " ",
      button("Remove", "remove", (node) => roleChange(memberUrl(role, user), "DELETE", "the removal",
        `${user.name} is no longer in ${role.name}.`, node)))));
  if (!members.length) list.append(el("li", { class: "muted" }, "nobody yet"));
  const choices = state.users.filter((u) => u.is_active && !u.deleted_at && !role.member_ids.includes(u.id));
  const pick = el("select", { "aria-label": `add to ${role.name}` }, el("option", { value: "" }, "Choose a person"),
    ...choices.map((u) => el("option", { value: u.id }, u.name)));
  pick.disabled = !choices.length;
  const add = button("Add", "add", (node) => {
    const user = choices.find((u) => u.id === pick.value);
    if (!user) { notify($("#notice"), `Choose the person to add to ${role.name} first.`); pick.focus(); return; }
    roleChange(memberUrl(role, user), "PUT", "the addition", `${user.name} is now in ${role.name}.`, node);
  });
  add.disabled = !choices.length;
  return el("tr", { "data-role-key": role.key },
    cell("Role", "name", role.name),
    cell("Key", "key", el("code", {}, `role:${role.key}`)),
    cell("Members", "", list),
    cell("Add a member", "", el("div", { class: "row-actions add-member" }, pick, add)),
    cell("Actions", "", button("Delete", "danger delete", (node) => removeRole(role, node))));
}

async function removeRole(role, node) {
  if (!window.confirm(`Delete the role ${role.name}? Its members leave it; policies can no longer name role:${role.key}.`)) return;
  node.disabled = true;
  const result = await api(roleUrl(role), { method: "DELETE" });
  if (result.status === 401) return sessionEnded($("#notice"), "the delete");
  await load();
  if (!result.ok) notify($("#notice"), `${role.name} was not deleted: ${errorText(result)}`);
  else notify($("#notice"), `Deleted ${role.name}.`, "ok", 4000);
}

async function createRole(event) {
  event.preventDefault();
  const name = $("#role-name").value.trim();
  const key = $("#role-key").value.trim();
  if (!name) { notify($("#notice"), "Give the role a name."); $("#role-name").focus(); return; }
  if (!ROLE_KEY.test(key)) {
    notify($("#notice"), "The key is lower-case letters, digits and _ only (at most 64), like night_shift.");
    $("#role-key").focus();
    return;
  }
  $("#role-create").disabled = true;
  const result = await api("/v1/roles", { method: "POST", body: { key, name } });
  $("#role-create").disabled = false;
  if (result.status === 401) return sessionEnded($("#notice"), "the new role");
  if (!result.ok) return notify($("#notice"), errorText(result));
  $("#role-form").reset();
  await load();
  notify($("#notice"), `Created ${result.body.name}: policies name it role:${result.body.key}.`, "ok", 5000);
}

// ---- the page ----

// Deleted users too: a role may still list one, by name.
async function load() {
  const [users, roles] = await Promise.all([api("/v1/users?include_deleted=true"), api("/v1/roles")]);
  if (users.status === 401 || roles.status === 401) return sessionEnded($("#notice"), null);
  if (!users.ok || !roles.ok) return notify($("#notice"), errorText(users.ok ? roles : users));
  state.users = users.body;
  state.roles = roles.body;
  $("#users tbody").replaceChildren(...state.users.filter((u) => !u.deleted_at).map(row));
  $("#roles tbody").replaceChildren(...state.roles.map(roleRow));
  $("#roles-empty").hidden = state.roles.length > 0;
}

async function invite(event) {
  event.preventDefault();
  const name = $("#invite-name").value.trim();
  const email = $("#invite-email").value.trim();
  if (!name || !email.includes("@")) { notify($("#notice"), "Give a name and a whole email address."); return; }
  $("#invite-send").disabled = true;
  const made = await api("/v1/users", { method: "POST", body: { name, email, role: $("#invite-role").value } });
  if (made.ok) await api("/v1/auth/sign-in-link", { method: "POST", body: { email }, auth: false });
  $("#invite-send").disabled = false;
  if (made.status === 401) return sessionEnded($("#notice"), "the invitation");
  if (!made.ok) return notify($("#notice"), errorText(made));
  notify($("#notice"), `Invited ${name}: a sign-in link is on its way to ${email}.`, "ok", 6000);
  $("#invite-form").reset();
  await load();
}

async function start() {
  const me = token.get() ? await api("/v1/me") : null;
  if (!me?.ok || rank(me.body.role) < rank("admin")) { $("#signed-out").hidden = false; return; }
  state.me = me.body;
  renderWho($("#who"), state.me);
  $("#status").textContent = "signed in";
  $("#people").hidden = false;
  await load();
}

$("#invite-form").addEventListener("submit", invite);
$("#role-form").addEventListener("submit", createRole);
start();
