// The live queue: GET /v1/queue, filtered and sorted by urgency here, refreshed on every
// event of the SSE stream (ticket + resume by last id). The tab title flashes on
// escalations while the tab is hidden.
import {
  $, api, cell, coalesced, conflictText, connectLive, countdownNode, el, errorText,
  eventItemId, formatInstant, kindText, nextLabel, notify, overdueNode, PRIORITY_RANK, priorityBadge, rank, renderWho,
  sessionEnded, startCountdowns, stateBadge, tierBadge, token, watchExpiry,
} from "/static/common.js";

const TITLE = "escalator · queue";
const ESCALATIONS = new Set(["handoff.escalated", "rung.fired", "rung.repeated", "item.created", "item.overdue"]);
const FILTERS_KEY = "escalator.queue.filters";
const state = { me: null, items: [], live: null, poll: null, unseen: 0, flash: null, fresh: null };
const filters = new Set(JSON.parse(localStorage.getItem(FILTERS_KEY) || "[]"));

const FILTER_TESTS = {
  mine: (item) => state.me && (item.assignee_id === state.me.id || item.claimed_by === state.me.id),
  unclaimed: (item) => item.state === "open" || item.state === "paused",
  tier1: (item) => (item.tier ?? -1) >= 1,
  tasks: (item) => item.kind === "task",
  handoffs: (item) => item.kind === "handoff",
};
const EXCLUSIVE = { tasks: "handoffs", handoffs: "tasks" };

// Higher tier, then the soonest next rung, then priority (urgent first; none = normal),
// then the oldest due; the id last so equal rows never swap.
function urgency(a, b) {
  const at = (iso) => (iso ? new Date(iso).getTime() : Infinity);
  const prio = (item) => PRIORITY_RANK[item.priority] ?? PRIORITY_RANK.normal;
  return ((b.tier ?? -1) - (a.tier ?? -1))
    || (at(a.next_rung_at) - at(b.next_rung_at))
    || (prio(b) - prio(a))
    || (at(a.due_at) - at(b.due_at))
    || a.id.localeCompare(b.id);
}

function actions(item) {
  const td = cell("", "actions");
  const canAct = rank(state.me?.role) >= rank("engineer");
  if (!canAct) return td;
  const row = el("div", { class: "row-actions" });
  if (item.state === "open" || item.state === "paused") {
    const button = el("button", { type: "button", class: "claim primary" }, "Claim");
    button.addEventListener("click", () => act(item, "claim", button));
    row.append(button);
  } else if (item.state === "claimed" && item.claimed_by === state.me.id) {
    const button = el("button", { type: "button", class: "release" }, "Release");
    button.addEventListener("click", () => act(item, "release", button));
    row.append(button);
  }
  if (row.childElementCount) td.append(row);
  return td;
}

function row(item) {
  const tr = el("tr", { "data-item-id": item.id, "data-tier": item.tier ?? -1, "data-state": item.state, "data-kind": item.kind });
  if (item.state === "claimed") tr.classList.add("claimed");
  if (item.id === state.fresh) tr.classList.add("fresh");
  const paused = item.state === "paused";
  tr.append(
    cell(null, "tier", tierBadge(item.tier)),
    cell(null, "item",
      el("div", { class: "title" }, el("a", { href: `/items/${encodeURIComponent(item.id)}` }, item.title)),
      el("div", { class: "kind" }, kindText(item)),
      item.assignee_name ? el("div", { class: "assignee muted" }, `assigned to ${item.assignee_name}`) : ""),
    cell("Priority", "priority", priorityBadge(item.priority)),
    cell("Due", "due nowrap", el("time", { datetime: item.due_at || "" }, formatInstant(item.due_at)),
      paused ? "" : overdueNode(item.due_at)),
    cell("Next", "next nowrap", item.next_rung_at ? countdownNode(nextLabel(item, item.next_rung), item.next_rung_at)
      : el("span", { class: "muted" }, paused ? "clock stopped" : "—")),
    cell("State", "state", stateBadge(item)),
    actions(item),
  );
  return tr;
}

function render() {
  const shown = state.items.filter((item) => [...filters].every((name) => FILTER_TESTS[name](item)));
  shown.sort(urgency);
  $("#queue tbody").replaceChildren(...shown.map(row));
  $("#empty").hidden = shown.length > 0;
  $("#empty").textContent = state.items.length ? "No item matches these filters." : "Nothing waiting here.";
  $("#count").textContent = filters.size ? `${shown.length} of ${state.items.length} items` : `${state.items.length} items`;
  for (const button of document.querySelectorAll("[data-filter]")) {
    button.setAttribute("aria-pressed", String(filters.has(button.dataset.filter)));
  }
}

const refresh = coalesced(async () => {
  const result = await api("/v1/queue");
  if (result.status === 401) return ended(null);
  if (!result.ok) return notify($("#notice"), errorText(result));
  state.items = result.body;
  render();
  state.fresh = null; // slides in once, not on every later refresh
  await webhookAlerts();
});

// Admins see the webhook endpoints that were switched off (a 410, or failing too often),
// with why and since when, and can switch one back on here.
async function webhookAlerts() {
  const box = $("#webhook-alerts");
  if (rank(state.me?.role) < rank("admin")) { box.hidden = true; return; }
  const result = await api("/v1/webhooks");
  if (!result.ok) return;
  const off = result.body.filter((hook) => !hook.enabled);
  box.replaceChildren(...off.map((hook) => {
    const again = el("button", { type: "button", class: "small" }, "Enable again");
    again.addEventListener("click", () => enableWebhook(hook, again));
    return el("p", { class: "notice error", "data-webhook": hook.id },
      "Webhook ", el("strong", {}, hook.name), " is off since ",
      el("time", { datetime: hook.disabled_at || "" }, formatInstant(hook.disabled_at)),
      `: ${hook.disabled_reason || "disabled"}. Nothing is posted to it. `, again);
  }));
  box.hidden = off.length === 0;
}

async function enableWebhook(hook, button) {
  button.disabled = true;
  const result = await api(`/v1/webhooks/${encodeURIComponent(hook.id)}`, {
    method: "PATCH", body: { enabled: true },
  });
  if (!result.ok) { button.disabled = false; return notify($("#notice"), errorText(result)); }
  notify($("#notice"), `Webhook ${hook.name} is on again.`, "ok", 5000);
  await webhookAlerts();
}

async function act(item, verb, button) {
  button.disabled = true;
  const result = await api(`/v1/items/${encodeURIComponent(item.id)}/${verb}`, { method: "POST" });
  if (result.status === 401) return ended(`your ${verb}`);
  if (result.status === 409) notify($("#notice"), conflictText(result));
  else if (!result.ok) notify($("#notice"), errorText(result));
  await refresh();
}

function status(text) {
  $("#status").textContent = text;
  $("#status").classList.toggle("live", text === "live");
}

// The tab title flashes while escalations wait unseen; looking at the page clears it.
function flashTitle() {
  if (!document.hidden) return;
  state.unseen += 1;
  if (state.flash) return;
  let on = false;
  state.flash = setInterval(() => { on = !on; document.title = on ? `(${state.unseen}) ⚠ escalation` : TITLE; }, 1000);
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.flash) {
    clearInterval(state.flash);
    state.flash = null;
    state.unseen = 0;
    document.title = TITLE;
  }
});

function stopLive() {
  if (state.live) state.live.close();
  clearInterval(state.poll);
  state.live = null;
  state.poll = null;
}

// Signed in a moment ago, not now: keep the queue on screen and say what happened.
function ended(undone) {
  if (!state.me) return signedOut();
  stopLive();
  clearTimeout(state.expiry);
  status("session ended");
  sessionEnded($("#notice"), undone);
}

function signedOut() {
  stopLive();
  state.me = null;
  state.items = [];
  status("signed out");
  renderWho($("#who"), null);
  $("#signed-in").hidden = true;
  $("#signed-out").hidden = false;
}

async function start() {
  if (!token.get()) return signedOut();
  status("connecting…");
  const me = await api("/v1/me");
  if (me.status === 401) return signedOut();
  if (!me.ok) { status("offline"); return; }
  state.me = me.body;
  renderWho($("#who"), state.me, signedOut);
  $("#signed-out").hidden = true;
  $("#signed-in").hidden = false;
  await refresh();
  stopLive();
  clearTimeout(state.expiry);
  state.expiry = watchExpiry(() => ended(null));
  state.live = connectLive({
    onStatus: status,
    onReady: refresh, // whatever happened before the stream was subscribed
    onSignedOut: () => ended(null),
    onDenied: () => { state.poll = setInterval(refresh, 30000); },
    onEvent: (kind, data) => {
      if (ESCALATIONS.has(kind)) { state.fresh = eventItemId(data); flashTitle(); }
      refresh();
    },
  });
}

for (const button of document.querySelectorAll("[data-filter]")) {
  button.addEventListener("click", () => {
    const name = button.dataset.filter;
    if (filters.has(name)) filters.delete(name);
    else { filters.add(name); if (EXCLUSIVE[name]) filters.delete(EXCLUSIVE[name]); }
    localStorage.setItem(FILTERS_KEY, JSON.stringify([...filters]));
    render();
  });
}

$("#signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#token").value.trim();
  if (!value) return;
  token.set(value);
  $("#token").value = "";
  start();
});

startCountdowns();
start();
