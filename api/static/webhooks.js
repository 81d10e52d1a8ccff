// An admin's webhook endpoints: add one (its signing secret is shown once), switch one off and
// on, delete one, and see an endpoint's latest deliveries, sending a failed one again.
// GET/POST /v1/webhooks, PATCH/DELETE /v1/webhooks/{id}, GET /v1/webhooks/{id}/deliveries.
import {
  $, api, badge, cell, el, errorText, formatInstant, notify, rank, renderWho, resendButton,
  sessionEnded, token,
} from "/static/common.js";

const POLL_MS = 2000; // while a delivery is on its way
const state = { endpoints: [], selected: null, poll: null };

function statusCell(endpoint) {
  if (!endpoint.enabled) {
    const since = endpoint.disabled_at ? ` since ${formatInstant(endpoint.disabled_at)}` : "";
    return cell("Status", "status", badge("disabled", "status-failed"),
      el("span", { class: "person-email reason" }, `${endpoint.disabled_reason || "disabled"}${since}`));
  }
  const failing = endpoint.consecutive_failures
    ? el("span", { class: "person-email" }, `${endpoint.consecutive_failures} failures in a row since ${formatInstant(endpoint.failing_since)}`)
    : "";
  return cell("Status", "status", badge("enabled", "status-sent"), failing);
}

function lastCell(last) {
  if (!last) return cell("Last delivery", "last muted", "—");
  return cell("Last delivery", "last", badge(last.status, `status-${last.status}`),
    el("span", { class: "person-email" }, [last.response_code ? `HTTP ${last.response_code}, ` : "", formatInstant(last.at)].join("")));
}

function actionButton(label, className, onClick) {
  const button = el("button", { type: "button", class: className }, label);
  button.addEventListener("click", () => onClick(button));
  return button;
}

function endpointRow(endpoint) {
  return el("tr", { "data-endpoint-id": endpoint.id, class: endpoint.id === state.selected?.id ? "selected" : null },
    cell("Name", "name", endpoint.name),
    cell("URL", "url", endpoint.url),
    cell("Format", "format", endpoint.format),
    cell("Events", "events", endpoint.event_filter.length ? endpoint.event_filter.join(", ") : "every event"),
    statusCell(endpoint),
    lastCell(endpoint.last_delivery),
    cell("Actions", "", el("div", { class: "row-actions" },
      actionButton("Deliveries", "show", () => showDeliveries(endpoint)),
      actionButton(endpoint.enabled ? "Disable" : "Enable", "toggle", (button) => toggle(endpoint, button)),
      actionButton("Delete", "danger delete", (button) => remove(endpoint, button)))));
}

async function load() {
  const result = await api("/v1/webhooks");
  if (result.status === 401) return sessionEnded($("#notice"), null);
  if (!result.ok) return notify($("#notice"), errorText(result));
  state.endpoints = result.body;
  $("#endpoints tbody").replaceChildren(...state.endpoints.map(endpointRow));
  $("#endpoints-empty").hidden = state.endpoints.length > 0;
  const selected = state.endpoints.find((e) => e.id === state.selected?.id);
  if (state.selected && !selected) hideDeliveries();
  else if (selected) state.selected = selected;
}

async function toggle(endpoint, button) {
  button.disabled = true;
  const what = endpoint.enabled ? "the disable" : "the enable";
  const result = await api(`/v1/webhooks/${encodeURIComponent(endpoint.id)}`, { method: "PATCH", body: { enabled: !endpoint.enabled } });
  if (result.status === 401) return sessionEnded($("#notice"), what);
  if (!result.ok) notify($("#notice"), errorText(result));
  else notify($("#notice"), `${endpoint.name}: ${result.body.enabled ? "enabled" : "disabled"}.`, "ok", 4000);
  await load();
}

async function remove(endpoint, button) {
  if (!window.confirm(`Delete ${endpoint.name}? It receives nothing more; its deliveries stay on their items.`)) return;
  button.disabled = true;
  const result = await api(`/v1/webhooks/${encodeURIComponent(endpoint.id)}`, { method: "DELETE" });
  if (result.status === 401) return sessionEnded($("#notice"), "the delete");
  if (!result.ok) notify($("#notice"), errorText(result));
  else notify($("#notice"), `Deleted ${endpoint.name}.`, "ok", 4000);
  await load();
}

// Patterns from "task.*, handoff.escalated" (commas or spaces); none: every event.
const patterns = (text) => text.split(/[\s,]+/).filter(Boolean);

async function add(event) {
  event.preventDefault();
  const name = $("#new-name").value.trim();
  const url = $("#new-url").value.trim();
  if (!name) { notify($("#notice"), "Give the endpoint a name."); $("#new-name").focus(); return; }
  if (!/^https?:\/\/[^/?#\s]+/i.test(url)) {
    notify($("#notice"), "The URL starts with https:// (or http://) and names a host, like https://hooks.example.com/escalator.");
    $("#new-url").focus();
    return;
  }
  $("#add-send").disabled = true;
  const body = { name, url, format: $("#new-format").value, event_filter: patterns($("#new-filter").value) };
  const result = await api("/v1/webhooks", { method: "POST", body });
  $("#add-send").disabled = false;
  if (result.status === 401) return sessionEnded($("#notice"), "the new endpoint");
  if (!result.ok) return notify($("#notice"), errorText(result));
  $("#secret-name").textContent = result.body.name;
  $("#secret").textContent = result.body.secret;
  $("#secret-box").hidden = false;
  $("#add-form").reset();
  $("#add").open = false;
  notify($("#notice"), `Added ${result.body.name}.`, "ok", 4000);
  await load();
}

function hideSecret() {
  $("#secret").textContent = "";
  $("#secret-box").hidden = true;
}

function deliveryRow(delivery) {
  const endpoint = state.selected;
  return el("tr", { "data-delivery-id": delivery.id },
    cell("Item", "item", el("a", { href: `/items/${encodeURIComponent(delivery.item_id)}` }, `item ${delivery.item_id.slice(0, 8)}`)),
    cell("Event", "event", delivery.event_key),
    cell("Status", "status", badge(delivery.status, `status-${delivery.status}`),
      resendButton(endpoint, delivery, { notice: $("#notice"), ended: (what) => sessionEnded($("#notice"), what), after: loadDeliveries })),
    cell("Attempts", "attempts", delivery.attempts),
    cell("Answer", "answer", delivery.response_code ? `HTTP ${delivery.response_code}` : "—"),
    cell("Last error", "error", delivery.last_error || ""),
    cell("Sent", "nowrap", delivery.sent_at ? formatInstant(delivery.sent_at) : "—"));
}

async function loadDeliveries() {
  clearTimeout(state.poll);
  const endpoint = state.selected;
  if (!endpoint) return;
  const result = await api(`/v1/webhooks/${encodeURIComponent(endpoint.id)}/deliveries`);
  if (state.selected?.id !== endpoint.id) return; // another endpoint was picked meanwhile
  if (result.status === 401) return sessionEnded($("#notice"), null);
  if (!result.ok) return notify($("#notice"), errorText(result));
  $("#deliveries tbody").replaceChildren(...result.body.map(deliveryRow));
  $("#deliveries-empty").hidden = result.body.length > 0;
  // A delivery on its way shows its outcome without a reload (nothing pushes it here).
  if (result.body.some((d) => d.status === "pending")) {
    state.poll = setTimeout(async () => { await load(); await loadDeliveries(); }, POLL_MS);
  }
}

async function showDeliveries(endpoint) {
  state.selected = endpoint;
  for (const row of document.querySelectorAll("#endpoints tbody tr")) {
    row.classList.toggle("selected", row.dataset.endpointId === endpoint.id);
  }
  $("#deliveries-name").textContent = endpoint.name;
  $("#deliveries-box").hidden = false;
  await loadDeliveries();
}

function hideDeliveries() {
  clearTimeout(state.poll);
  state.selected = null;
  $("#deliveries-box").hidden = true;
}

async function start() {
  const me = token.get() ? await api("/v1/me") : null;
  if (!me?.ok || rank(me.body.role) < rank("admin")) { $("#signed-out").hidden = false; return; }
  renderWho($("#who"), me.body, () => location.reload());
  $("#status").textContent = "signed in";
  $("#webhooks").hidden = false;
  await load();
}

$("#add-form").addEventListener("submit", add);
$("#secret-done").addEventListener("click", hideSecret);
start();
