// What every page shares: the token, api(), formatting in the viewer's locale and zone,
// countdowns, the header, notices, and the live stream (ticket + resume by last event id).
// Untrusted text only ever goes in through textContent (see el()).
"use strict";

export const TOKEN_KEY = "escalator.token";
export const RANK = { viewer: 0, engineer: 1, admin: 2, owner: 3 };
export const PRIORITY_RANK = { low: 0, normal: 1, high: 2, urgent: 3 };
export const EVENT_KINDS = [
  "item.created", "item.overdue", "handoff.escalated", "rung.fired", "rung.repeated", "item.claimed", "item.released",
  "item.resolved", "item.cancelled", "item.paused", "item.resumed", "item.noted", "item.claim_timed_out", "delivery.failed",
  "webhook.disabled",
];

export const $ = (selector, root = document) => root.querySelector(selector);

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (value) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// The link a mail carries, from this page's fragment (`#link=…`): a browser never sends the
// fragment to a server, so the link reaches no log; the page POSTs it.
export function linkFromFragment() {
  return new URLSearchParams(location.hash.slice(1)).get("link");
}

export function rank(role) { return RANK[role] ?? -1; }

// fetch with the bearer token; never throws on an HTTP status, only on the network.
export async function api(path, { method = "GET", body, auth = true } = {}) {
  const headers = {};
  if (auth && token.get()) headers.Authorization = `Bearer ${token.get()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    return { ok: false, status: 0, body: { error: { code: "network", message: "the server cannot be reached" } } };
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  return { ok: response.ok, status: response.status, body: data };
}

// The message of an error answer, in whichever shape it came (ours, or a bare "detail").
// A rejected field in words a person can act on: never "body.link: String should have at
// least 20 characters".
const FIELD_WORDS = {
  link: "This link is incomplete or damaged (it may have been cut short when it was copied): open it from the mail again.",
  email: "Enter a whole email address, like you@example.com.",
};

function problemText(problem) {
  const field = (problem.at || "").split(".").pop() || "";
  if (FIELD_WORDS[field]) return FIELD_WORDS[field];
  const words = field.replaceAll("_", " ") || "request";
  const what = /at least|too short/i.test(problem.problem) ? "is too short"
    : /at most|too long/i.test(problem.problem) ? "is too long"
      : /required|missing/i.test(problem.problem) ? "is missing"
        : "is not in a form this page can use";
  return `The ${words} ${what}.`;
}

export function errorText(result) {
  const error = result.body?.error;
  if (error?.code === "invalid_payload") {
    const [first] = error.details?.problems || [];
    return first ? problemText(first) : "Something on this page was not accepted: check it and try again.";
  }
  if (error?.message) return error.message;
  if (typeof result.body?.detail === "string") return result.body.detail;
  return result.status ? `the server answered ${result.status}` : "the server cannot be reached";
}

// "Too late: claimed by Ada Admin at …" for a claim conflict; the plain message otherwise.
export function conflictText(result) {
  const details = result.body?.error?.details || {};
  const who = details.claimed_by?.name;
  if (who) return `Too late: claimed by ${who}${details.claimed_at ? ` at ${formatInstant(details.claimed_at)}` : ""}`;
  return errorText(result);
}

// ---- time, always in the viewer's locale (undefined = the browser's) ----

export function viewerZone() { return Intl.DateTimeFormat().resolvedOptions().timeZone; }

const formats = new Map();
function formatter(timeZone) {
  const key = timeZone || "";
  if (!formats.has(key)) {
    formats.set(key, new Intl.DateTimeFormat(undefined, {
      dateStyle: "medium", timeStyle: "short", ...(timeZone ? { timeZone } : {}),
    }));
  }
  return formats.get(key);
}

export function formatInstant(iso, timeZone) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "—" : formatter(timeZone).format(date);
}

// A span of milliseconds in at most two units ("3d 4h", "2h 5m"), with seconds under an hour.
export function duration(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// "escalate_1 in 4m 12s", or "due now" once the instant has passed.
export function countdownText(name, iso, now = Date.now()) {
  if (!iso) return "—";
  const left = new Date(iso).getTime() - now;
  return left <= 0 ? "due now" : `${name} in ${duration(left)}`;
}

// "overdue 2d 3h" once the instant has passed; nothing before.
export function overdueText(iso, now = Date.now()) {
  const late = iso ? now - new Date(iso).getTime() : 0;
  return late > 0 ? `overdue ${duration(late)}` : "";
}

// Every [data-countdown] and [data-overdue-since] element ticks once a second, wherever it
// is on the page.
export function startCountdowns(root = document) {
  const tick = () => {
    const now = Date.now();
    for (const node of root.querySelectorAll("[data-countdown]")) {
      const text = countdownText(node.dataset.rung || "next rung", node.dataset.countdown, now);
      if (node.textContent !== text) node.textContent = text;
      node.classList.toggle("overdue", text === "due now");
    }
    for (const node of root.querySelectorAll("[data-overdue-since]")) {
      const text = overdueText(node.dataset.overdueSince, now);
      if (node.textContent !== text) node.textContent = text;
    }
  };
  tick();
  return setInterval(tick, 1000);
}

// Who the next rung would notify ("Ada Admin", "Ada Admin, Emil Engineer +2"), else the
// rung's name.
export function nextLabel(item, rung) {
  const names = item.next_notifies || [];
  if (!names.length) return rung;
  return names.length > 2 ? `${names.slice(0, 2).join(", ")} +${names.length - 2}` : names.join(", ");
}

export function overdueNode(iso) {
  const span = el("span", { class: "overdue-by", "data-overdue-since": iso || "" });
  span.textContent = overdueText(iso);
  return span;
}

export function countdownNode(name, iso) {
  const span = el("span", { class: "countdown", "data-countdown": iso || "", "data-rung": name || "" });
  span.textContent = countdownText(name, iso);
  return span;
}

// ---- DOM ----

// el("td", {class: "x"}, "text", child): attributes by setAttribute, text by textContent.
// A table cell that stacks under its label on a phone.
export function cell(label, className, ...children) {
  return el("td", { "data-label": label, class: className }, ...children);
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function badge(text, kind) { return el("span", { class: `badge ${kind || ""}`.trim() }, text); }

export function tierBadge(tier) {
  const has = tier !== null && tier !== undefined && tier >= 0;
  return el("span", { class: `badge tier-${has ? tier : "none"}`, title: has ? `tier ${tier} fired` : "no rung fired yet" }, has ? `T${tier}` : "·");
}

export function priorityBadge(priority) {
  return priority ? badge(priority, `priority-${priority}`) : el("span", { class: "muted" }, "—");
}

export function stateBadge(item) {
  if (item.state === "claimed") return badge(`claimed by ${item.claimer_name || "someone"}`, "state-claimed");
  return badge(item.state, `state-${item.state}`);
}

// "Handoff · escalate", "Task · CAPA": the type only when it says more than the kind.
export function kindText(item) {
  const kind = item.kind ? item.kind[0].toUpperCase() + item.kind.slice(1) : "";
  const parts = [kind];
  if (item.type && item.type.toLowerCase() !== (item.kind || "").toLowerCase()) parts.push(item.type);
  if (item.intent) parts.push(item.intent);
  return parts.filter(Boolean).join(" · ");
}

// A notice in `node` (a role=status/alert element): shown, then hidden after a while.
export function notify(node, text, kind = "error", ms = 10000) {
  clearTimeout(node._hide);
  node.textContent = text;
  node.className = `notice ${kind}`;
  node.hidden = false;
  if (ms) node._hide = setTimeout(() => { node.hidden = true; }, ms);
}

// "Send again" for a failed or suppressed webhook delivery (admins): the same delivery, with
// its webhook-id, POSTed once more. Nothing for any other, or for a deleted endpoint.
// `ended(undone)` when the session has ended, `after()` once the API has answered.
export function resendButton(endpoint, delivery, { notice, ended, after }) {
  if (!endpoint || endpoint.deleted || !["failed", "suppressed"].includes(delivery.status)) return "";
  const button = el("button", { type: "button", class: "resend" }, "Send again");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const url = `/v1/webhooks/${encodeURIComponent(endpoint.id)}/deliveries/${encodeURIComponent(delivery.id)}/resend`;
    const result = await api(url, { method: "POST" });
    if (result.status === 401) return ended("the resend");
    if (result.ok) notify(notice, `Sending again to ${endpoint.name}.`, "ok", 5000);
    else notify(notice, errorText(result));
    await after();
  });
  return button;
}

// The bearer token's expiry (ms since the epoch), from its payload; null if unreadable.
export function tokenExpiry() {
  try {
    const part = token.get().split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part)).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

// The session ended (expired, or revoked elsewhere) while the page was open: the page keeps
// what it shows, and `node` says so, what did not happen (`undone`, e.g. "your claim"), and
// how to sign in and come back here.
export function sessionEnded(node, undone) {
  clearTimeout(node._hide);
  const said = undone ? `Your session has ended: ${undone} did not happen. ` : "Your session has ended. ";
  node.replaceChildren(said, el("a", { href: signInHref() }, "Sign in again"), " to go on from here.");
  node.className = "notice error";
  node.hidden = false;
}

// Calls `ended` when the token expires (null if its expiry cannot be read).
export function watchExpiry(ended) {
  const at = tokenExpiry();
  return at === null ? null : setTimeout(ended, Math.max(0, at - Date.now()) + 500);
}

export function signInHref() {
  const next = location.pathname + location.search;
  return next === "/" ? "/signin" : `/signin?next=${encodeURIComponent(next)}`;
}

// The header's "who": name, role, account and a Sign out button; or a Sign in link.
export function renderWho(node, me, onSignOut) {
  if (!me) {
    node.replaceChildren(el("a", { class: "button primary", href: signInHref(), id: "signin-link" }, "Sign in"));
    return;
  }
  const button = el("button", { type: "button", id: "signout", class: "button" }, "Sign out");
  button.addEventListener("click", () => { token.clear(); onSignOut(); });
  node.replaceChildren(
    el("span", { class: "who-name", id: "me-name" }, me.name),
    badge(me.role, `role role-${me.role}`),
    el("span", { class: "who-account muted", id: "me-account" }, me.account?.name || ""),
    button,
  );
}

// ---- the live stream ----

// Connects with a fresh ticket each time (tickets live 60 s), resumes after the last id
// seen, and reconnects with backoff. onEvent(kind, data, id); onStatus(text).
// A viewer may not stream: onStatus says so and `denied` is called (to poll instead).
export function connectLive({ onEvent, onStatus, onReady, onDenied, onSignedOut }) {
  let source = null;
  let lastId = null;
  let closed = false;
  let delay = 1000;
  let timer = null;

  async function open() {
    if (closed) return;
    const result = await api("/v1/events/ticket", { method: "POST" });
    if (closed) return;
    if (result.status === 401) { onSignedOut?.(); return; }
    if (result.status === 403) { onStatus("not live (needs the engineer role)"); onDenied?.(); return; }
    if (!result.ok) { retry(); return; }
    const resume = lastId === null ? "" : `&last_event_id=${lastId}`;
    source = new EventSource(`/v1/events/stream?ticket=${encodeURIComponent(result.body.ticket)}${resume}`);
    source.addEventListener("ready", () => { delay = 1000; onStatus("live"); onReady?.(); });
    const handle = (event) => {
      if (event.lastEventId) lastId = Number(event.lastEventId);
      let data = {};
      try { data = JSON.parse(event.data); } catch { data = {}; }
      onEvent(event.type, data, lastId);
    };
    for (const kind of EVENT_KINDS) source.addEventListener(kind, handle);
    source.onerror = () => { source.close(); source = null; retry(); };
  }

  function retry() {
    if (closed) return;
    onStatus("reconnecting…");
    clearTimeout(timer);
    timer = setTimeout(open, delay);
    delay = Math.min(delay * 2, 15000);
  }

  onStatus("connecting…");
  open();
  return { close() { closed = true; clearTimeout(timer); if (source) source.close(); } };
}

// The item an event is about, wherever its payload keeps the id.
export function eventItemId(data) {
  return data?.item?.id || data?.item_id || data?.id || null;
}

// Runs `task` now, and once more after it if asked again meanwhile: bursts coalesce.
export function coalesced(task) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      try { await task(); } finally {
        running = null;
        if (again) { again = false; run(); }
      }
    })();
    return running;
  };
  return run;
}
