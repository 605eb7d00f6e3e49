// The web UI's shell: the key (asked for once per tab when the server wants one), the routes
// (#/jobs, #/jobs/ID, #/approvals, #/effects) and the counts in the navigation bar.

import { apiKey, get, onUnauthorized, setApiKey } from "./api.js";
import { clear, h } from "./dom.js";
import { approvalsView } from "./views/approvals.js";
import { effectsView } from "./views/effects.js";
import { jobView } from "./views/job.js";
import { jobsView } from "./views/jobs.js";

const ROUTES = [
  [/^\/jobs\/?$/, "jobs", jobsView],
  [/^\/jobs\/([^/]+)$/, "jobs", jobView],
  [/^\/approvals\/?$/, "approvals", approvalsView],
  [/^\/effects\/?$/, "effects", effectsView],
];
const main = () => document.getElementById("main");
let leave = null; // what the current page does when it is left (stop streams and timers)
let asking = null;

function route() {
  const [path, search] = (location.hash.slice(1) || "/jobs").split("?");
  const query = Object.fromEntries(new URLSearchParams(search || ""));
  if (leave) leave();
  leave = null;
  for (const [pattern, nav, view] of ROUTES) {
    const found = path.match(pattern);
    if (!found) continue;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === nav);
    }
    const params = found.slice(1).map(decodeURIComponent);
    leave = view(main(), { params, query }) || null;
    return;
  }
  clear(
    main(),
    h("p", { class: "error" }, `No page at ${path}.`),
    h("a", { href: "#/jobs" }, "Jobs"),
  );
}

/** Ask for a key; resolves once the server takes one. */
function askForKey(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.hidden = !reason;
  error.textContent = reason || "";
  asking = new Promise((resolve) => {
    async function submit(event) {
      event.preventDefault();
      setApiKey(input.value.trim());
      try {
        await get("v1/summary");
      } catch (failure) {
        setApiKey(null);
        error.hidden = false;
        error.textContent =
          failure.status === 401
            ? `The server refused this key: ${failure.message}`
            : failure.explained || failure.message;
        input.select();
        return;
      }
      form.removeEventListener("submit", submit);
      dialog.close();
      input.value = "";
      asking = null;
      showKey();
      resolve();
    }
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return asking;
}

function showKey() {
  const key = apiKey();
  const who = document.getElementById("who");
  who.hidden = false;
  who.textContent = key ? `key ${key.split("_").slice(0, 2).join("_")}` : "no key (local)";
  document.getElementById("forget-key").hidden = !key;
}

async function refreshCounts() {
  if (asking) return;
  try {
    const [stats, approvals] = await Promise.all([get("v1/summary"), get("v1/approvals")]);
    const show = (id, n) => {
      const badge = document.getElementById(id);
      badge.hidden = !n;
      badge.textContent = String(n);
    };
    show("approvals-count", approvals.length);
    show("doubt-count", stats.in_doubt);
  } catch {
    // shown where it matters: on the page
  }
}

async function boot() {
  try {
    await get("v1/summary");
  } catch (error) {
    if (error.status === 401) {
      const had = apiKey();
      setApiKey(null);
      await askForKey(had ? `The key was refused: ${error.message}` : null);
    }
  }
  onUnauthorized((error) => {
    const had = apiKey();
    setApiKey(null);
    askForKey(had ? `The key was refused: ${error.message}` : null).then(route);
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    setApiKey(null);
    askForKey(null).then(route);
  });
  showKey();
  window.addEventListener("hashchange", route);
  route();
  refreshCounts();
  setInterval(refreshCounts, 5000);
}

boot();
