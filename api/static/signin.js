// Sign-in by mail. Without #link=: ask for a link. With #link=: say whom it signs in, and
// sign in only on a click (a mail scanner that follows the link only fetches this page).
import { $, api, errorText, linkFromFragment, token } from "/static/common.js";

const params = new URLSearchParams(location.search);
const link = linkFromFragment();

// Where to go after signing in: `?next=`, else where this browser was going when it asked
// for the link (kept for the link's 15 minutes: the mailed link itself carries no `next`).
const NEXT_KEY = "escalator.next";
const NEXT_TTL_MS = 15 * 60 * 1000;

function remembered() {
  try {
    const kept = JSON.parse(localStorage.getItem(NEXT_KEY) || "null");
    return kept && Date.now() - kept.at < NEXT_TTL_MS ? kept.path : null;
  } catch {
    return null;
  }
}

// Only a path on this site: "/items/…" yes; "//evil.example", "https://…" or "javascript:" no.
function nextPath() {
  return safePath(params.get("next") || remembered());
}

function safePath(next) {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
}

function showError(result, offerNew) {
  const node = $("#error");
  node.textContent = typeof result === "string" ? result : errorText(result);
  node.hidden = false;
  $("#again").hidden = !offerNew;
}

function clearError() { $("#error").hidden = true; $("#again").hidden = true; }

async function requestLink(event) {
  event.preventDefault();
  clearError();
  $("#sent").hidden = true;
  const email = $("#email").value.trim();
  if (!email || !email.includes("@")) { showError("Enter your email address."); $("#email").focus(); return; }
  const button = $("#send");
  button.disabled = true;
  const result = await api("/v1/auth/sign-in-link", { method: "POST", body: { email }, auth: false });
  button.disabled = false;
  if (result.status === 202) {
    const next = params.get("next");
    if (next) localStorage.setItem(NEXT_KEY, JSON.stringify({ path: safePath(next), at: Date.now() }));
    $("#sent").textContent = result.body.message;
    $("#sent").hidden = false;
  } else {
    showError(result);
  }
}

async function showLink() {
  $("#confirm-box").hidden = false;
  const result = await api("/v1/auth/sign-in-link/view", { method: "POST", body: { link }, auth: false });
  if (!result.ok) {
    $("#whom").textContent = "This sign-in link does not work.";
    showError(result, true);
    return;
  }
  const who = result.body;
  $("#whom").textContent = `Sign in as ${who.user.name} (${who.role}, ${who.account})`;
  if (who.used) { showError("This sign-in link was used already: ask for a new one.", true); return; }
  const button = $("#confirm");
  button.textContent = `Sign in as ${who.user.name}`;
  button.hidden = false;
  button.addEventListener("click", async () => {
    clearError();
    button.disabled = true;
    const session = await api("/v1/auth/session", { method: "POST", body: { link }, auth: false });
    if (session.ok) {
      token.set(session.body.access_token);
      const next = nextPath();
      localStorage.removeItem(NEXT_KEY);
      location.assign(next);
      return;
    }
    button.hidden = true;
    showError(session, true);
  });
}

if (link) {
  $("#page-title").textContent = "Confirm sign-in";
  showLink();
} else {
  $("#request").hidden = false;
  $("#request-form").addEventListener("submit", requestLink);
  $("#email").focus();
}
