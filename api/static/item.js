// One item: its facts, plan (calendar zone and the viewer's), timeline, deliveries and why,
// with the actions the viewer's role allows; reloaded live when an event names this item.
import {
  $, api, badge, coalesced, conflictText, connectLive, countdownNode, el, errorText,
  eventItemId, formatInstant, kindText, nextLabel, notify, priorityBadge, rank, renderWho,
  resendButton, sessionEnded, startCountdowns, stateBadge, tierBadge, token, viewerZone,
  watchExpiry,
} from "/static/common.js";

const ITEM_ID = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "").toLowerCase();
const ACTIVE = new Set(["open", "paused", "claimed"]);
const state = { me: null, live: null, poll: null };

const ACTIONS = [
  // verb, label, who may, when
  ["claim", "Claim", "engineer", (item) => item.state === "open" || item.state === "paused"],
  ["release", "Release", "engineer", (item, me) => item.state === "claimed" && (item.claimed_by === me.id || rank(me.role) >= rank("admin"))],
  ["pause", "Pause", "engineer", (item) => item.state === "open"],
  ["resume", "Resume", "engineer", (item) => item.state === "paused"],
  ["resolve", "Resolve", "engineer", (item) => ACTIVE.has(item.state)],
  ["cancel", "Cancel", "admin", (item) => ACTIVE.has(item.state)],
];

const LABELS = {
  created: "Created",
  claimed: "Claimed",
  released: "Released",
  resolved: "Resolved",
  cancelled: "Cancelled",
  paused: "Paused (clock stopped)",
  resumed: "Resumed (clock running)",
  due_changed: "Due changed",
  fell_due: "Fell due (overdue from now)",
  replanned: "Moved to the latest policy",
  escalation_undeliverable: "Nobody valid to notify",
  delivery_failed: "Delivery failed",
  noted: "Note",
  claim_timed_out: "Claim timed out (reopened)",
  webhook_endpoint_disabled: "Webhook endpoint disabled",
};

function actionLabel(entry) {
  if (entry.action === "rung_fired") return `${entry.data?.rung || "rung"} fired`;
  if (entry.action === "rung_skipped") return `${entry.data?.rung || "rung"} skipped`;
  if (entry.action === "rung_repeated") return `${entry.data?.rung || "rung"} repeated (still unclaimed)`;
  return LABELS[entry.action] || entry.action.replaceAll("_", " ");
}

function actionDetail(entry, people) {
  const data = entry.data || {};
  if (entry.action === "noted") return data.text || "";
  switch (entry.action) {
    case "due_changed": return `from ${formatInstant(data.from)} to ${formatInstant(data.to)}`;
    case "rung_fired":
    case "rung_skipped": return data.planned_at ? `planned for ${formatInstant(data.planned_at)}` : "";
    case "delivery_failed": return [people.get(data.recipient_id) || data.endpoint_name, data.error].filter(Boolean).join(": ");
    case "webhook_endpoint_disabled": return [data.endpoint_name, data.reason].filter(Boolean).join(": ");
    case "escalation_undeliverable": return data.tried ? `tried: ${data.tried.split(",").join(", ")}` : "";
    case "replanned": return `policy v${data.from?.policy_version} → v${data.policy_version}, calendar v${data.from?.calendar_version} → v${data.calendar_version}`;
    case "created": return [data.type, data.intent].filter(Boolean).join(" · ");
    default: return "";
  }
}

// The calendar's zone, read off the plan ("2026-11-27 10:00 Europe/Berlin").
function calendarZone(item) {
  const local = item.plan?.[0]?.at_local;
  return local ? local.split(" ").pop() : null;
}

// The recorded next rung; before the workflow has recorded its plan, the plan's first
// pending rung (the same computation, from the database).
function nextRung(item) {
  if (item.next_rung_at) return { name: item.next_rung, at: item.next_rung_at };
  if (item.state !== "open") return null;
  const pending = (item.plan || []).find((rung) => rung.status === "pending");
  return pending ? { name: pending.name, at: pending.at } : null;
}

function bothZones(iso, zone) {
  const mine = viewerZone();
  const lines = [];
  if (zone) lines.push(el("div", {}, formatInstant(iso, zone), el("span", { class: "zone" }, zone)));
  if (!zone || zone !== mine) lines.push(el("div", {}, formatInstant(iso), el("span", { class: "zone" }, `your time, ${mine}`)));
  return el("div", { class: "both-zones" }, ...lines);
}

function renderItem(item) {
  document.title = `escalator · ${item.title}`;
  const zone = calendarZone(item);
  $("#kind").textContent = kindText(item);
  $("#title").textContent = item.title;
  $("#badges").replaceChildren(
    stateBadge(item),
    item.tier === null || item.tier === undefined ? "" : tierBadge(item.tier),
    item.priority ? priorityBadge(item.priority) : "",
    item.workflow === "pending" ? badge("workflow pending", "state-paused") : "",
  );
  $("#due").replaceChildren(item.due_at ? bothZones(item.due_at, zone) : "—");
  const next = nextRung(item);
  $("#next").replaceChildren(next ? countdownNode(nextLabel(item, next.name), next.at)
    : el("span", { class: "muted" }, item.state === "paused" ? "clock stopped" : "—"));
  $("#assignee").replaceChildren(item.assignee_name || el("span", { class: "muted" }, "nobody"));
  $("#claimer").replaceChildren(item.claimed_by
    ? el("span", {}, item.claimer_name || "someone", el("span", { class: "zone" }, `since ${formatInstant(item.claimed_at)}`))
    : el("span", { class: "muted" }, "nobody"));
  $("#created").textContent = formatInstant(item.created_at);
  $("#versions").textContent = `${item.type} v${item.policy_version ?? "?"}, calendar v${item.calendar_version ?? "?"}${zone ? ` (${zone})` : ""}`;
  for (const node of document.querySelectorAll(".handoff-only")) node.hidden = item.kind !== "handoff";
  $("#session").textContent = item.session_ref || "—";
  $("#notes").textContent = item.engineer_notes || "—";
  $("#snapshot").textContent = JSON.stringify(item.snapshot || {}, null, 2);
  $("#snapshot-box").hidden = item.kind !== "handoff" || !item.snapshot || !Object.keys(item.snapshot).length;
  renderActions(item);
  renderPlan(item);
  renderWork(item);
}

// "2026-12-07T09:30" in the viewer's zone, as a datetime-local input takes it.
function localInput(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

// The edit form shows the item as loaded, unless someone is typing in it.
function renderWork(item) {
  const may = state.me && rank(state.me.role) >= rank("engineer");
  $("#work").hidden = !may;
  if (!may) return;
  state.item = item;
  const ended = item.state === "resolved" || item.state === "cancelled";
  $("#edit-form").hidden = ended;
  $("#note-resolve").hidden = ended;
  if ($("#edit-form").contains(document.activeElement)) return;
  $("#edit-title").value = item.title;
  $("#edit-due").value = localInput(item.due_at);
  if (state.users) {
    $("#edit-assignee").replaceChildren(...state.users.map((u) => el("option", { value: u.id }, u.name)));
    $("#edit-assignee").value = item.assignee_id || "";
  }
}

async function saveEdits(event) {
  event.preventDefault();
  const item = state.item;
  const changes = {};
  const title = $("#edit-title").value.trim();
  if (!title) { notify($("#notice"), "The title cannot be empty."); return; }
  if (title !== item.title) changes.title = title;
  const due = $("#edit-due").value;
  if (due && due !== localInput(item.due_at)) changes.due_at = new Date(due).toISOString();
  const assignee = $("#edit-assignee").value;
  if (assignee && assignee !== item.assignee_id) changes.assignee_id = assignee;
  if (!Object.keys(changes).length) { notify($("#notice"), "Nothing changed.", "ok", 4000); return; }
  $("#edit-save").disabled = true;
  const result = await api(`/v1/items/${encodeURIComponent(ITEM_ID)}`, { method: "PATCH", body: changes });
  $("#edit-save").disabled = false;
  if (result.status === 401) return ended("your change");
  if (!result.ok) return notify($("#notice"), errorText(result));
  document.activeElement?.blur();
  notify($("#notice"), "Saved.", "ok", 4000);
  await load();
}

async function addNote(resolve) {
  const text = $("#note-text").value.trim();
  if (!text) { notify($("#notice"), "Write the note first."); $("#note-text").focus(); return; }
  const base = `/v1/items/${encodeURIComponent(ITEM_ID)}`;
  const noted = await api(`${base}/notes`, { method: "POST", body: { text } });
  if (noted.status === 401) return ended("your note");
  if (!noted.ok) return notify($("#notice"), errorText(noted));
  $("#note-text").value = "";
  if (resolve) {
    const done = await api(`${base}/resolve`, { method: "POST" });
    if (done.status === 401) return ended("the resolve");
    if (done.status === 409) notify($("#notice"), conflictText(done));
    else if (!done.ok) notify($("#notice"), errorText(done));
  }
  await load();
}

function renderActions(item) {
  const buttons = [];
  if (state.me) {
    for (const [verb, label, role, when] of ACTIONS) {
      if (rank(state.me.role) < rank(role) || !when(item, state.me)) continue;
      const kind = verb === "claim" ? "primary" : verb === "cancel" ? "danger" : "";
      const button = el("button", { type: "button", id: `action-${verb}`, class: kind }, label);
      button.addEventListener("click", () => act(verb, button));
      buttons.push(button);
    }
  }
  $("#actions").replaceChildren(...buttons);
}

// "claimed by Erin Engineer, 06.12.2026, 10:05": why a rung will not fire.
function stopText(stop) {
  const who = stop.by ? ` by ${stop.by}` : "";
  const when = stop.at ? `, ${formatInstant(stop.at)}` : "";
  return `${stop.reason}${who}${when}`;
}

function renderPlan(item) {
  const plan = item.plan || [];
  $("#plan tbody").replaceChildren(...plan.map((rung) => el("tr", { "data-rung": rung.name },
    el("td", { "data-label": "Rung", class: "rung" }, rung.name, rung.critical ? el("span", { class: "zone" }, "critical") : ""),
    el("td", { "data-label": "Tier" }, tierBadge(rung.tier)),
    el("td", { "data-label": "Status", class: "status" }, badge(rung.status, `status-${rung.status}`),
      rung.stopped ? el("span", { class: "zone" }, stopText(rung.stopped)) : ""),
    el("td", { "data-label": "Calendar time", class: "at-local nowrap" }, rung.at_local),
    el("td", { "data-label": "Your time", class: "at-viewer nowrap" }, formatInstant(rung.at)),
    el("td", { "data-label": "Notifies", class: "recipients" }, rung.recipients === null ? "—"
      : rung.recipients.length ? rung.recipients.map((p) => p.name).join(", ")
        : el("span", { class: "muted" }, "nobody valid")),
  )));
  $("#plan-empty").hidden = plan.length > 0;
}

function renderTimeline(entries, people) {
  $("#timeline").replaceChildren(...entries.map((entry) => {
    const detail = actionDetail(entry, people);
    const actor = entry.actor_name || (entry.actor_id ? "someone" : "escalator");
    return el("li", { "data-action": entry.action },
      el("time", { datetime: entry.created_at }, formatInstant(entry.created_at)),
      el("div", {},
        el("span", { class: "action" }, actionLabel(entry)),
        entry.tier !== null && entry.tier !== undefined ? [" ", tierBadge(entry.tier)] : "",
        el("span", { class: "actor" }, ` by ${actor}`),
        detail ? el("span", { class: "detail" }, detail) : ""));
  }));
  if (!entries.length) $("#timeline").append(el("li", { class: "muted" }, "Nothing recorded yet."));
}

// Admins send a failed or suppressed webhook delivery again (the same webhook-id).
function sendAgain(row) {
  const may = state.me && rank(state.me.role) >= rank("admin");
  return may ? resendButton(row.endpoint, row, { notice: $("#notice"), ended, after: load }) : "";
}

function renderDeliveries(rows) {
  $("#deliveries tbody").replaceChildren(...rows.map((row) => el("tr", { "data-delivery-id": row.id },
    el("td", { "data-label": "Recipient", class: "recipient" },
      row.recipient?.name || (row.endpoint ? `Webhook: ${row.endpoint.name}` : row.recipient_id),
      el("span", { class: "person-email" }, row.recipient?.email || (row.response_code ? `HTTP ${row.response_code}` : ""))),
    el("td", { "data-label": "Rung / event", class: "event" },
      row.why ? `${row.why.rung} · ` : "", row.event_key, el("span", { class: "person-email" }, row.channel)),
    el("td", { "data-label": "Status" }, badge(row.status, `status-${row.status}`),
      row.deferred_until ? el("span", { class: "person-email" }, `until ${formatInstant(row.deferred_until)}`) : "",
      sendAgain(row)),
    el("td", { "data-label": "Attempts", class: "attempts" }, row.attempts),
    el("td", { "data-label": "Last error", class: "error" }, row.last_error || ""),
    el("td", { "data-label": "Sent", class: "nowrap" }, row.sent_at ? formatInstant(row.sent_at) : "—"),
    el("td", {
      "data-label": "Why", class: "why",
      title: row.why ? `matched ${row.why.matched}${row.why.fell_through.length ? `; fell through ${row.why.fell_through.join(", ")}` : ""}` : null,
    }, row.why?.summary || "—"),
  )));
  $("#deliveries-empty").hidden = rows.length > 0;
}

const load = coalesced(async () => {
  const base = `/v1/items/${encodeURIComponent(ITEM_ID)}`;
  const [item, audit, deliveries] = await Promise.all([api(base), api(`${base}/audit`), api(`${base}/deliveries`)]);
  if ([item, audit, deliveries].some((r) => r.status === 401)) return ended(null);
  if (!item.ok) {
    $("#item").hidden = true;
    notify($("#notice"), item.status === 404 || item.status === 422 ? "This item does not exist (or is not in your account)." : errorText(item), "error", 0);
    return;
  }
  renderItem(item.body);
  const people = new Map((deliveries.ok ? deliveries.body : []).map((d) => [d.recipient_id, d.recipient?.name]));
  if (audit.ok) renderTimeline(audit.body, people);
  if (deliveries.ok) renderDeliveries(deliveries.body);
  $("#item").hidden = false;
});

async function act(verb, button) {
  if (verb === "cancel" && !window.confirm("Cancel this item? Nothing more will be sent.")) return;
  button.disabled = true;
  const result = await api(`/v1/items/${encodeURIComponent(ITEM_ID)}/${verb}`, { method: "POST" });
  if (result.status === 401) return ended(`your ${verb}`);
  if (result.status === 409) notify($("#notice"), conflictText(result));
  else if (!result.ok) notify($("#notice"), errorText(result));
  await load();
}

function status(text) {
  $("#status").textContent = text;
  $("#status").classList.toggle("live", text === "live");
}

// Signed in a moment ago, not now: keep the item on screen and say what happened.
function ended(undone) {
  if (!state.me) return signedOut();
  if (state.live) state.live.close();
  clearInterval(state.poll);
  clearTimeout(state.expiry);
  status("session ended");
  sessionEnded($("#notice"), undone);
}

function signedOut() {
  if (state.live) state.live.close();
  clearInterval(state.poll);
  state.me = null;
  status("signed out");
  renderWho($("#who"), null);
  $("#item").hidden = true;
  $("#signed-out").hidden = false;
  $("#signin-link-main").href = $("#signin-link").href;
}

async function start() {
  if (!token.get()) return signedOut();
  const me = await api("/v1/me");
  if (me.status === 401) return signedOut();
  state.me = me.ok ? me.body : null;
  renderWho($("#who"), state.me, signedOut);
  if (state.me && rank(state.me.role) >= rank("engineer")) {
    const users = await api("/v1/users");
    state.users = users.ok ? users.body.filter((u) => u.is_active) : null;
  }
  await load();
  state.expiry = watchExpiry(() => ended(null));
  state.live = connectLive({
    onStatus: status,
    onReady: load,
    onSignedOut: () => ended(null),
    onDenied: () => { state.poll = setInterval(load, 30000); },
    onEvent: (kind, data) => { if (String(eventItemId(data)).toLowerCase() === ITEM_ID) load(); },
  });
}

$("#edit-form").addEventListener("submit", saveEdits);
$("#note-form").addEventListener("submit", (event) => { event.preventDefault(); addNote(false); });
$("#note-resolve").addEventListener("click", () => addNote(true));
startCountdowns();
start();
