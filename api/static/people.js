// An admin's people: invite someone (the user, then a sign-in link to their address),
// change a role, switch someone off. GET/POST/PATCH /v1/users, POST /v1/auth/sign-in-link.
import { $, api, el, errorText, notify, rank, renderWho, sessionEnded, token } from "/static/common.js";

const ROLES = ["viewer", "engineer", "admin", "owner"];
const state = { me: null };

async function change(user, changes, what) {
  const result = await api(`/v1/users/${encodeURIComponent(user.id)}`, { method: "PATCH", body: changes });
  if (result.status === 401) return sessionEnded($("#notice"), what);
  if (!result.ok) notify($("#notice"), errorText(result));
  else notify($("#notice"), `${user.name}: ${what} saved.`, "ok", 4000);
  await load();
}

function row(user) {
  const role = el("select", { "aria-label": `role of ${user.name}` }, ...ROLES
    .filter((r) => rank(r) <= rank(state.me.role))
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

async function load() {
  const result = await api("/v1/users");
  if (result.status === 401) return sessionEnded($("#notice"), null);
  if (!result.ok) return notify($("#notice"), errorText(result));
  $("#users tbody").replaceChildren(...result.body.map(row));
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
start();
