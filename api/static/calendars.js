// An admin's business calendars: pick one, edit its zone, weekly hours and holidays, save it
// (a change of working time is a new version) and see the working time of the next two weeks.
// GET/POST /v1/calendars, PUT /v1/calendars/{id}, GET /v1/calendars/{id}/preview.
import { $, api, cell, el, errorText, notify, rank, renderWho, sessionEnded, token, viewerZone } from "/static/common.js";

const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const WALL = /^(([01]\d|2[0-3]):[0-5]\d|24:00)$/; // as the API takes it; "24:00" ends a day
const OFF = { weekend: "Weekend", custom: "Custom holiday" };
const FIRST_YEAR = 1970;
const LAST_YEAR = 2199;
const state = { calendars: [], current: null, custom: [] };

// A local date ("2026-12-24") in the viewer's words; UTC, so no zone moves it a day.
const DATE = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
const dateText = (iso) => DATE.format(new Date(`${iso}T00:00:00Z`));

// [["09:00", "12:00"], ["13:00", "17:00"]] <-> "09:00-12:00, 13:00-17:00"
const hoursText = (pairs) => (pairs || []).map(([from, to]) => `${from}-${to}`).join(", ");

function wallTime(text) {
  const padded = text.trim().replace(/^(\d):/, "0$1:");
  return WALL.test(padded) ? padded : null;
}

// The pairs of one day's text, [] for a day off, null for text that is not hours.
function parseHours(text) {
  const pairs = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const bounds = part.split(/[-–]/).map(wallTime);
    if (bounds.length !== 2 || bounds.includes(null)) return null;
    pairs.push(bounds);
  }
  return pairs;
}

// The PUT/POST body from the form, or the first problem in words (and where it is).
function formBody() {
  const name = $("#name").value.trim();
  if (!name) return { problem: "Give the calendar a name.", at: "#name" };
  const tz = $("#tz").value.trim();
  if (!tz) return { problem: "Give a time zone, like Europe/Berlin.", at: "#tz" };
  const hours = {};
  for (const [n, day] of DAYS.entries()) {
    const pairs = parseHours($(`#hours-${n}`).value);
    if (pairs === null) {
      return { problem: `${day}: write the hours like 09:00-17:00, several separated by commas, or leave it empty for a day off.`, at: `#hours-${n}` };
    }
    if (pairs.length) hours[String(n)] = pairs;
  }
  if (!Object.keys(hours).length) return { problem: "Give working hours on at least one day.", at: "#hours-0" };
  const country = $("#country").value.trim().toUpperCase() || null;
  if (country && !/^[A-Z]{2,3}$/.test(country)) return { problem: "The holiday country is a code like DE or PT.", at: "#country" };
  const subdivision = $("#subdivision").value.trim().toUpperCase() || null;
  if (subdivision && !/^[A-Z0-9]{1,6}$/.test(subdivision)) return { problem: "The region is a code like BE (Berlin, for DE).", at: "#subdivision" };
  return {
    body: { name, tz, hours, holiday_country: country, holiday_subdivision: subdivision, custom_holidays: state.custom },
  };
}

function renderCustom() {
  $("#custom").replaceChildren(...state.custom.map((day) => {
    const remove = el("button", { type: "button", class: "remove", "aria-label": `remove ${day}` }, "Remove");
    remove.addEventListener("click", () => { state.custom = state.custom.filter((d) => d !== day); renderCustom(); });
    return el("li", { "data-date": day }, dateText(day), " ", remove);
  }));
  if (!state.custom.length) $("#custom").append(el("li", { class: "muted" }, "none"));
}

function addCustom() {
  const day = $("#custom-new").value; // "" unless a whole, valid date was picked
  if (!day) { notify($("#notice"), "Pick a whole date first."); return; }
  const year = Number(day.slice(0, 4));
  if (year < FIRST_YEAR || year > LAST_YEAR) { notify($("#notice"), `A holiday must fall between ${FIRST_YEAR} and ${LAST_YEAR}.`); return; }
  if (!state.custom.includes(day)) state.custom = [...state.custom, day].sort();
  $("#custom-new").value = "";
  renderCustom();
}

function render() {
  const calendar = state.current;
  $("#version").textContent = calendar ? `version ${calendar.version}` : "new: not saved yet";
  $("#name").value = calendar?.name || "";
  $("#tz").value = calendar?.tz || viewerZone();
  const hours = calendar?.hours || Object.fromEntries([0, 1, 2, 3, 4].map((n) => [String(n), [["09:00", "17:00"]]]));
  for (const n of DAYS.keys()) $(`#hours-${n}`).value = hoursText(hours[String(n)]);
  $("#country").value = calendar?.holiday_country || "";
  $("#subdivision").value = calendar?.holiday_subdivision || "";
  state.custom = [...(calendar?.custom_holidays || [])];
  renderCustom();
}

function renderChoices() {
  $("#calendar").replaceChildren(...state.calendars.map((c) => el("option", { value: c.id }, c.name)));
  if (state.current) $("#calendar").value = state.current.id;
}

function dayRow(day) {
  const hours = hoursText(day.hours);
  return el("tr", { "data-date": day.date, class: day.off ? "off" : null },
    cell("Date", "nowrap", dateText(day.date)),
    cell("Working time", "hours", hours || "—"),
    cell("Off because", "why", day.off ? OFF[day.off] || day.reason : ""));
}

async function preview() {
  const id = state.current?.id;
  $("#preview-zone").textContent = "";
  if (!id) {
    $("#preview tbody").replaceChildren(el("tr", {}, el("td", { colspan: "3", class: "muted" }, "Save the calendar to see its two weeks.")));
    return;
  }
  const result = await api(`/v1/calendars/${encodeURIComponent(id)}/preview?days=14`);
  if (result.status === 401) return sessionEnded($("#notice"), null);
  if (state.current?.id !== id) return; // another calendar was picked meanwhile
  if (!result.ok) return notify($("#notice"), errorText(result));
  $("#preview-zone").textContent = `(${result.body.tz}, version ${result.body.version})`;
  $("#preview tbody").replaceChildren(...result.body.days.map(dayRow));
}

function select() {
  state.current = state.calendars.find((c) => c.id === $("#calendar").value) || null;
  render();
  preview();
}

function newCalendar() {
  state.current = null;
  $("#calendar").value = "";
  render();
  preview();
  $("#name").focus();
}

async function save(event) {
  event.preventDefault();
  const form = formBody();
  if (form.problem) { notify($("#notice"), form.problem); $(form.at).focus(); return; }
  const id = state.current?.id;
  $("#save").disabled = true;
  const result = await api(id ? `/v1/calendars/${encodeURIComponent(id)}` : "/v1/calendars", { method: id ? "PUT" : "POST", body: form.body });
  $("#save").disabled = false;
  if (result.status === 401) return sessionEnded($("#notice"), "the save");
  if (!result.ok) return notify($("#notice"), errorText(result));
  state.current = result.body;
  state.calendars = [...state.calendars.filter((c) => c.id !== result.body.id), result.body]
    .sort((a, b) => a.name.localeCompare(b.name));
  renderChoices();
  render();
  notify($("#notice"), `Saved: ${result.body.name} version ${result.body.version}.`, "ok", 5000);
  await preview();
}

async function start() {
  const me = token.get() ? await api("/v1/me") : null;
  if (!me?.ok || rank(me.body.role) < rank("admin")) { $("#signed-out").hidden = false; return; }
  renderWho($("#who"), me.body, () => location.reload());
  $("#status").textContent = "signed in";
  const result = await api("/v1/calendars");
  if (!result.ok) return notify($("#notice"), errorText(result));
  state.calendars = result.body;
  $("#hours tbody").replaceChildren(...DAYS.map((day, n) => el("tr", {},
    cell("Day", "day", day),
    cell("Working hours", "", el("input", { type: "text", id: `hours-${n}`, "aria-label": `${day} hours`, placeholder: "closed" })))));
  $("#zones").replaceChildren(...(Intl.supportedValuesOf?.("timeZone") || []).map((zone) => el("option", { value: zone })));
  renderChoices();
  $("#calendars").hidden = false;
  if (state.calendars.length) select();
  else newCalendar();
}

$("#calendar").addEventListener("change", select);
$("#new").addEventListener("click", newCalendar);
$("#custom-add").addEventListener("click", addCustom);
$("#calendar-form").addEventListener("submit", save);
start();
