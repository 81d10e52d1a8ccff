// The live queue: GET /v1/queue, then live updates from the SSE stream (with a short-lived
// ticket, because EventSource cannot send headers), resuming by the last event id.
"use strict";
const $ = (sel) => document.querySelector(sel);
const state = { token: localStorage.getItem("escalator.token") || "", lastId: null, source: null, unseen: 0, flash: null };
const ESCALATIONS = new Set(["handoff.escalated", "rung.fired", "item.created"]);

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) } });
  const body = response.status === 204 ? null : await response.json();
  return { response, body };
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

function row(item, fresh) {
  const tr = document.createElement("tr");
  tr.dataset.itemId = item.id;
  tr.dataset.tier = item.tier ?? -1;
  if (item.state === "claimed") tr.classList.add("claimed");
  if (fresh) tr.classList.add("fresh");
  const tier = item.tier >= 0 ? `T${item.tier}` : "·";
  tr.innerHTML = `<td class="tier"></td><td><div class="title"></div><div class="kind"></div></td><td class="due"></td><td class="state"></td><td></td>`;
  tr.querySelector(".tier").textContent = tier;
  tr.querySelector(".title").textContent = item.title;
  tr.querySelector(".kind").textContent = `${item.kind} · ${item.type}${item.intent ? " · " + item.intent : ""}`;
  tr.querySelector(".due").textContent = when(item.due_at);
  tr.querySelector(".state").textContent = item.state === "claimed" ? `claimed by ${item.claimer_name || item.claimed_by}` : item.state;
  if (item.state !== "claimed") {
    const button = document.createElement("button");
    button.className = "claim";
    button.textContent = "Claim";
    button.addEventListener("click", () => claim(item.id));
    tr.lastElementChild.append(button);
  }
  return tr;
}

async function refresh(freshId) {
  const { response, body } = await api("/v1/queue");
  if (!response.ok) { return signedOut(body?.error?.message || response.statusText); }
  const tbody = $("#queue tbody");
  tbody.replaceChildren(...body.map((item) => row(item, item.id === freshId)));
  $("#empty").hidden = body.length > 0;
}

async function claim(id) {
  const { response, body } = await api(`/v1/items/${id}/claim`, { method: "POST" });
  if (response.status === 409) {
    const who = body.error.details.claimed_by?.name;
    notice(who ? `Too late: claimed by ${who} at ${when(body.error.details.claimed_at)}` : body.error.message);
  } else if (!response.ok) {
    notice(body?.error?.message || response.statusText);
  }
  await refresh();
}

function notice(text) { const p = $("#notice"); p.textContent = text; p.hidden = false; setTimeout(() => { p.hidden = true; }, 8000); }
function status(text) { $("#status").textContent = text; }
function signedOut(reason) { status(`signed out: ${reason}`); if (state.source) state.source.close(); }

// The tab title flashes while escalations wait unseen; looking at the page clears it.
function flashTitle() {
  if (!document.hidden) return;
  state.unseen += 1;
  if (state.flash) return;
  let on = false;
  state.flash = setInterval(() => { on = !on; document.title = on ? `(${state.unseen}) ⚠ escalation` : "escalator · queue"; }, 1000);
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.flash) { clearInterval(state.flash); state.flash = null; state.unseen = 0; document.title = "escalator · queue"; }
});

async function connect() {
  if (state.source) state.source.close();
  const { response, body } = await api("/v1/events/ticket", { method: "POST" });
  if (!response.ok) { status("live updates unavailable: " + (body?.error?.message || response.status)); return; }
  const resume = state.lastId === null ? "" : `&last_event_id=${state.lastId}`;
  const source = new EventSource(`/v1/events/stream?ticket=${encodeURIComponent(body.ticket)}${resume}`);
  state.source = source;
  source.addEventListener("ready", () => status("live"));
  const onEvent = async (event) => {
    state.lastId = Number(event.lastEventId);
    const data = JSON.parse(event.data);
    if (ESCALATIONS.has(event.type)) flashTitle();
    await refresh(ESCALATIONS.has(event.type) ? data.item?.id : undefined);
  };
  for (const kind of ["item.created", "handoff.escalated", "rung.fired", "item.claimed", "item.released", "item.resolved", "item.cancelled", "delivery.failed"]) {
    source.addEventListener(kind, onEvent);
  }
  // The ticket is short-lived, so reconnect ourselves with a fresh one, resuming by id.
  source.onerror = () => { source.close(); status("reconnecting…"); setTimeout(connect, 1000); };
}

async function start() {
  if (!state.token) return;
  $("#token").value = state.token;
  status("connecting…");
  await refresh();
  await connect();
}

$("#signin").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("escalator.token", state.token);
  start();
});
start();
