// Every item, newest first, found by words of its title and by state; engineers and up
// create a task here. GET /v1/items (cursor pages), POST /v1/tasks.
import {
  $, api, cell, el, errorText, formatInstant, kindText, notify, rank, renderWho, sessionEnded,
  stateBadge, token,
} from "/static/common.js";

const state = { me: null, cursor: null };

function row(item) {
  return el("tr", { "data-item-id": item.id },
    cell("Item", "item",
      el("div", { class: "title" }, el("a", { href: `/items/${encodeURIComponent(item.id)}` }, item.title)),
      el("div", { class: "kind" }, kindText(item))),
    cell("State", "state", stateBadge(item)),
    cell("Due", "due nowrap", formatInstant(item.due_at)),
    cell("Assigned to", "assignee", item.assignee_name || "—"),
    cell("Claimed by", "claimer", item.claimer_name || "—"),
  );
}

function query() {
  const params = new URLSearchParams({ limit: "50" });
  const q = $("#q").value.trim();
  if (q) params.set("q", q);
  if ($("#state").value) params.set("state", $("#state").value);
  if (state.cursor) params.set("cursor", state.cursor);
  return `/v1/items?${params}`;
}

async function load(more = false) {
  if (!more) state.cursor = null;
  const result = await api(query());
  if (result.status === 401) return sessionEnded($("#notice"), null);
  if (!result.ok) return notify($("#notice"), errorText(result));
  const rows = result.body.items.map(row);
  if (more) $("#items tbody").append(...rows);
  else $("#items tbody").replaceChildren(...rows);
  state.cursor = result.body.next_cursor;
  $("#more").hidden = !state.cursor;
  $("#empty").hidden = $("#items tbody").childElementCount > 0;
}

async function fillCreateForm() {
  const [policies, users] = await Promise.all([api("/v1/policies"), api("/v1/users")]);
  if (!policies.ok || !users.ok) return;
  $("#new-type").replaceChildren(...policies.body.map((p) => el("option", { value: p.item_type }, p.item_type)));
  $("#new-assignee").replaceChildren(...users.body
    .filter((u) => u.is_active)
    .map((u) => el("option", { value: u.id }, u.name)));
  $("#create").hidden = false;
}

async function create(event) {
  event.preventDefault();
  const title = $("#new-title").value.trim();
  const due = $("#new-due").value;
  if (!title) { notify($("#notice"), "Give the task a title."); $("#new-title").focus(); return; }
  if (!due) { notify($("#notice"), "Give the task a due date and time."); $("#new-due").focus(); return; }
  $("#new-submit").disabled = true;
  const result = await api("/v1/tasks", {
    method: "POST",
    body: {
      type: $("#new-type").value,
      title,
      assignee_id: $("#new-assignee").value,
      due_at: new Date(due).toISOString(), // the browser's local time, as an instant
    },
  });
  $("#new-submit").disabled = false;
  if (result.status === 401) return sessionEnded($("#notice"), "the new task");
  if (!result.ok) return notify($("#notice"), errorText(result));
  location.assign(`/items/${encodeURIComponent(result.body.id)}`);
}

async function start() {
  if (!token.get()) { $("#signed-out").hidden = false; return; }
  const me = await api("/v1/me");
  if (!me.ok) { $("#signed-out").hidden = false; return; }
  state.me = me.body;
  renderWho($("#who"), state.me);
  $("#status").textContent = "signed in";
  $("#signed-in").hidden = false;
  const params = new URLSearchParams(location.search);
  $("#q").value = params.get("q") || "";
  await load();
  if (rank(state.me.role) >= rank("engineer")) await fillCreateForm();
}

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("#q").value.trim();
  history.replaceState(null, "", q ? `/items?q=${encodeURIComponent(q)}` : "/items");
  load();
});
$("#state").addEventListener("change", () => load());
$("#more").addEventListener("click", () => load(true));
$("#create-form").addEventListener("submit", create);
start();
