// An admin edits a type's escalation policy (each rung's offset, recipients and repeat) and
// sees the plan move: "due Fri 17:00 → remind Thu 17:00 → escalate_1 Mon 17:00 …".
// GET /v1/policies, PUT /v1/policies/{type} (a new version), POST /v1/preview.
import { $, api, el, errorText, notify, rank, renderWho, sessionEnded, token } from "/static/common.js";

const RUNGS = ["remind", "escalate_1", "escalate_2"];
const UNITS = ["business_days", "business_hours", "business_minutes"];
const state = { policies: [], current: null };

function unitSelect(id, chosen) {
  return el("select", { id, "aria-label": "unit" }, ...UNITS.map((u) => {
    const option = el("option", { value: u }, u.replace("business_", "business "));
    option.selected = u === chosen;
    return option;
  }));
}

function offsetParts(offset) {
  const [[unit, value]] = Object.entries(offset || { business_days: 1 });
  return UNITS.includes(unit) ? [unit, value] : ["business_minutes", Math.round(value / 60)];
}

function rungRow(name, rung) {
  const [unit, value] = offsetParts(rung?.offset);
  const [repeatUnit, repeatValue] = rung?.repeat_every ? offsetParts(rung.repeat_every) : ["business_hours", ""];
  const on = el("input", { type: "checkbox", id: `${name}-on`, "aria-label": `${name} on` });
  on.checked = Boolean(rung?.offset);
  return el("tr", { "data-rung": name },
    el("td", { "data-label": "Rung" }, name),
    el("td", { "data-label": "On" }, on),
    el("td", { "data-label": "When" },
      el("input", { type: "number", min: "0", step: "1", id: `${name}-value`, value: String(value), "aria-label": `${name} offset` }),
      unitSelect(`${name}-unit`, unit),
      el("span", { class: "muted small" }, name === "remind" ? " before due" : " after due")),
    el("td", { "data-label": "Who" },
      el("input", { id: `${name}-who`, value: (rung?.recipients || ["assignee"]).join(", "), "aria-label": `${name} recipients` })),
    el("td", { "data-label": "Repeat every" },
      el("input", { type: "number", min: "1", step: "1", id: `${name}-repeat`, value: String(repeatValue), placeholder: "never", "aria-label": `${name} repeat` }),
      unitSelect(`${name}-repeat-unit`, repeatUnit)),
  );
}

function render() {
  const policy = state.current;
  $("#version").textContent = `version ${policy.version}`;
  $("#rungs tbody").replaceChildren(...RUNGS.map((name) => rungRow(name, policy.rungs[name])));
}

function formRungs() {
  const rungs = {};
  for (const name of RUNGS) {
    const before = state.current.rungs[name];
    if (!$(`#${name}-on`).checked) { rungs[name] = null; continue; }
    const rung = {
      event_key: before?.event_key || `task.${name}`,
      channels: before?.channels || ["email", "push"],
      class: before?.class || "normal",
      offset: { [$(`#${name}-unit`).value]: Number($(`#${name}-value`).value) },
      recipients: $(`#${name}-who`).value.split(",").map((r) => r.trim()).filter(Boolean),
    };
    const repeat = $(`#${name}-repeat`).value;
    if (repeat) rung.repeat_every = { [$(`#${name}-repeat-unit`).value]: Number(repeat) };
    rungs[name] = rung;
  }
  return rungs;
}

// Only the newest preview asked for is drawn: an older answer that arrives after it (the
// page's first preview, say, after the assignee was changed) is dropped, not shown.
let previewsAsked = 0;

async function preview() {
  const due = $("#preview-due").value;
  if (!due || !$("#preview-assignee").value) return;
  const asked = ++previewsAsked;
  const result = await api("/v1/preview", {
    method: "POST",
    body: { type: state.current.item_type, due_at: new Date(due).toISOString(), assignee_id: $("#preview-assignee").value },
  });
  if (asked !== previewsAsked) return;
  if (!result.ok) { $("#preview").textContent = errorText(result); return; }
  const steps = result.body.plan.map((r) => {
    const who = (r.recipients || []).map((p) => p.name).join(", ") || "nobody valid";
    return el("span", { class: "step", "data-rung": r.name }, `${r.name} ${r.at_local} (${who})`);
  });
  const parts = [el("span", { class: "step" }, `due ${new Date(due).toLocaleString()}`)];
  for (const step of steps) parts.push(" → ", step);
  $("#preview").replaceChildren(...parts);
}

async function save(event) {
  event.preventDefault();
  $("#save").disabled = true;
  const type = state.current.item_type;
  const result = await api(`/v1/policies/${encodeURIComponent(type)}`, {
    method: "PUT",
    body: { calendar_id: state.current.calendar_id, rungs: formRungs() },
  });
  $("#save").disabled = false;
  if (result.status === 401) return sessionEnded($("#notice"), "the save");
  if (!result.ok) return notify($("#notice"), errorText(result));
  state.current = result.body;
  state.policies = state.policies.map((p) => (p.item_type === type ? result.body : p));
  render();
  notify($("#notice"), `Saved: ${type} version ${result.body.version}.`, "ok", 5000);
  await preview();
}

function select() {
  state.current = state.policies.find((p) => p.item_type === $("#type").value);
  render();
  preview();
}

// A week ahead, Friday 17:00 in the viewer's time: a due that shows weekends at work.
function nextFriday() {
  const at = new Date();
  at.setDate(at.getDate() + 7 + ((5 - at.getDay() + 7) % 7));
  at.setHours(17, 0, 0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T17:00`;
}

async function start() {
  const me = token.get() ? await api("/v1/me") : null;
  if (!me?.ok || rank(me.body.role) < rank("admin")) { $("#signed-out").hidden = false; return; }
  renderWho($("#who"), me.body);
  $("#status").textContent = "signed in";
  const [policies, users] = await Promise.all([api("/v1/policies"), api("/v1/users")]);
  if (!policies.ok || !users.ok) return notify($("#notice"), errorText(policies.ok ? users : policies));
  state.policies = policies.body;
  $("#type").replaceChildren(...state.policies.map((p) => el("option", { value: p.item_type }, p.item_type)));
  $("#preview-assignee").replaceChildren(...users.body.filter((u) => u.is_active).map((u) => el("option", { value: u.id }, u.name)));
  $("#preview-due").value = nextFriday();
  $("#editor").hidden = false;
  select();
}

$("#type").addEventListener("change", select);
$("#rungs-form").addEventListener("submit", save);
$("#preview-due").addEventListener("change", preview);
$("#preview-assignee").addEventListener("change", preview);
start();
