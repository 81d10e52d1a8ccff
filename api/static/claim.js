// Claim from a mail: the page shows what the link would claim (a mail scanner that follows
// the link only fetches this page); the button claims, once, as the mail's recipient.
import { $, api, el, errorText, formatInstant, kindText, linkFromFragment, stateBadge } from "/static/common.js";

const link = linkFromFragment();

function showError(text) {
  $("#error").textContent = text;
  $("#error").hidden = false;
}

function itemLink(id) {
  $("#item-link").href = `/items/${encodeURIComponent(id)}`;
  $("#open-item").hidden = false;
}

function render(view) {
  $("#loading").hidden = true;
  $("#item").hidden = false;
  $("#kind").textContent = kindText(view);
  $("#title").textContent = view.title;
  $("#due").textContent = formatInstant(view.due_at);
  $("#state").replaceChildren(stateBadge({ state: view.state, claimer_name: view.claimed_by?.name }));
  $("#as").replaceChildren("You are claiming this as ", el("strong", {}, view.recipient.name));
  const button = $("#claim");
  if (view.claimed_by) {
    const mine = view.claimed_by.id === view.recipient.id;
    $("#claimed").textContent = mine
      ? `You hold it: claimed by ${view.claimed_by.name} at ${formatInstant(view.claimed_at)}`
      : `Already claimed by ${view.claimed_by.name} at ${formatInstant(view.claimed_at)}`;
    $("#claimed").hidden = false;
    $("#as").hidden = true;
    button.hidden = true;
    itemLink(view.item_id);
  } else if (view.state !== "open" && view.state !== "paused") {
    $("#as").hidden = true;
    showError(`This item is ${view.state}: there is nothing to claim.`);
    itemLink(view.item_id);
  } else if (view.used_at) {
    $("#as").hidden = true;
    showError(`This claim link was used already (${formatInstant(view.used_at)}).`);
    itemLink(view.item_id);
  } else {
    button.hidden = false;
  }
}

async function claim() {
  const button = $("#claim");
  button.disabled = true;
  $("#error").hidden = true;
  const result = await api("/v1/claim-links", { method: "POST", body: { link }, auth: false });
  button.hidden = true;
  if (result.ok) {
    render(result.body);
    $("#claimed").hidden = true;
    $("#done").textContent = "Claimed. You hold it now.";
    $("#done").hidden = false;
    itemLink(result.body.item_id);
    return;
  }
  const details = result.body?.error?.details || {};
  if (result.status === 409 && details.claimed_by?.name) {
    const at = details.claimed_at ? ` at ${formatInstant(details.claimed_at)}` : "";
    $("#claimed").textContent = `Already claimed by ${details.claimed_by.name}${at}`;
    $("#claimed").hidden = false;
    $("#as").hidden = true;
  } else {
    showError(errorText(result));
  }
}

async function start() {
  if (!link) {
    $("#loading").hidden = true;
    showError("This page needs the claim link from your mail.");
    return;
  }
  const result = await api("/v1/claim-links/view", { method: "POST", body: { link }, auth: false });
  if (!result.ok) {
    $("#loading").hidden = true;
    showError(errorText(result));
    return;
  }
  render(result.body);
  $("#claim").addEventListener("click", claim);
}

start();
