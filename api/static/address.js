// Confirm a new address with the link mailed to it: only on a click (a mail scanner that
// follows the link only fetches this page).
import { $, api, errorText, linkFromFragment } from "/static/common.js";

const link = linkFromFragment();

function showError(text) {
  $("#error").textContent = text;
  $("#error").hidden = false;
}

async function confirmAddress() {
  const button = $("#confirm");
  button.disabled = true;
  $("#error").hidden = true;
  const result = await api("/v1/auth/address", { method: "POST", body: { link }, auth: false });
  $("#confirm-box").hidden = true;
  if (result.ok) {
    $("#done").textContent = `Done: ${result.body.email} is the address of ${result.body.user.name} now.`;
    $("#done").hidden = false;
    $("#next").hidden = false;
    return;
  }
  showError(errorText(result));
}

if (link) {
  $("#confirm-box").hidden = false;
  $("#confirm").addEventListener("click", confirmAddress);
} else {
  showError("This page needs the confirmation link from your mail.");
}
