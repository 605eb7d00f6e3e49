// One job: what it is, what can be done to it, its timeline, journal, model calls, effects
// ledger and hash chain. While it runs, its journal streams in and everything else follows
// (the timeline is the server's, fetched again after each burst of events).

import { get, jobPath } from "../api.js";
import { ago, badge, clear, cost, h, json, section, shortId, when } from "../dom.js";
import { follow } from "../stream.js";
import { actionsPanel } from "./actions.js";
import { approvalCard } from "./approvals.js";
import { resolveForm } from "./effects.js";
import { journalEntry, modelCalls } from "./journal.js";
import { drawTimeline, legend } from "./timeline.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "compensated"]);

async function allEvents(id) {
  const events = [];
  let after = -1;
  for (;;) {
    const page = await get(jobPath(id, "/events"), { after, limit: 1000 });
    events.push(...page.events);
    if (page.next_after === null) return events;
    after = page.next_after;
  }
}

function facts(job) {
  const rows = [
    ["agent", job.agent],
    ["tenant", job.tenant],
    ["created", when(job.created_at)],
    ["updated", `${when(job.updated_at)} (${ago(job.updated_at)})`],
    ["attempts", `${job.attempts} (recovered ${job.recoveries}×)`],
    ["events", String(job.events)],
    ["queue", `${job.queue}, priority ${job.priority}`],
    job.idempotency_key ? ["idempotency key", h("code", {}, job.idempotency_key)] : null,
    job.parent_id ? ["parent", h("a", { href: `#/jobs/${encodeURIComponent(job.parent_id)}`, class: "mono" }, shortId(job.parent_id))] : null,
    job.control ? ["requested", `${job.control} by ${job.control_by || "?"}`] : null,
    job.wake_on ? ["waits for", job.wake_on] : null,
    job.wake_at ? ["due", when(job.wake_at)] : null,
    job.deadline ? ["deadline", when(job.deadline)] : null,
    ["head hash", h("code", { class: "mono small" }, job.head_hash)],
  ];
  return h("dl", { class: "facts" }, rows.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function verifyBadge(report) {
  if (!report) return h("span", { class: "verify muted" }, "checking the hash chain…");
  return report.ok
    ? h("span", { class: "verify good", title: `head ${report.head}` }, `✓ hash chain verified (${report.events} events)`)
    : h("span", { class: "verify bad", role: "alert" }, `✗ hash chain BROKEN at seq ${report.seq}: ${report.problem}`);
}

function ledger(effects, reload) {
  if (!effects.length) return h("p", { class: "muted empty" }, "No ledger rows: no idempotent or at-most-once tool was dispatched.");
  return h("table", { class: "ledger" },
    h("thead", {}, h("tr", {}, ["pos", "tool", "effect", "state", "attempt", "idempotency key", "result / error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, effects.map((e) => [
      h("tr", { class: e.state === "in_doubt" ? "doubt" : "", dataset: { position: e.position, state: e.state } },
        h("td", { class: "num" }, String(e.position)), h("td", {}, h("b", {}, e.tool)), h("td", {}, e.effect),
        h("td", {}, h("span", { class: `badge e-${e.state}` }, e.state.replace("_", " "))), h("td", { class: "num" }, String(e.attempt)),
        h("td", {}, h("code", { class: "small" }, e.idempotency_key)), h("td", {}, e.error ? json(e.error) : json(e.result))),
      e.state === "in_doubt" ? h("tr", { class: "doubt-form" }, h("td", { colspan: 7 }, resolveForm(e, reload))) : null,
    ])));
}

export function jobView(main, { params: [id] }) {
  const title = h("div", { class: "page-head" }, h("h1", {}, "Job ", h("span", { class: "mono" }, id)));
  const live = h("span", { class: "live muted" });
  const head = h("div", { class: "card job-head" });
  const actions = h("div", { class: "card" });
  const approval = h("div");
  const line = h("div", { class: "timeline" }, h("p", { class: "muted" }, "Loading…"));
  const journal = h("div", { class: "journal" });
  const calls = h("div", { class: "calls" });
  const effects = h("div");
  const problem = h("div");
  clear(main, title, problem, head, approval, actions,
    section("Timeline", legend(), line), section("Journal", journal),
    section("Model calls", calls), section("Effects ledger", effects));
  title.append(live);

  const state = { job: null, timeline: null, fetchedAt: 0, last: -1, origin: null, acted: "" };
  let stop = null;
  let pending = null;
  const timers = [];
  const pick = (seq) => {
    const entry = document.getElementById(`ev-${seq}`);
    if (!entry) return;
    entry.open = true;
    entry.scrollIntoView({ behavior: "smooth", block: "center" });
    entry.classList.add("picked");
    setTimeout(() => entry.classList.remove("picked"), 1500);
  };
  const now = () => state.timeline.now + (state.timeline.end === null ? (Date.now() - state.fetchedAt) / 1000 : 0);
  const redraw = () => state.timeline && drawTimeline(line, state.timeline, now(), pick);

  function showJob(job, verify) {
    state.job = job;
    const detail = job.park_detail && job.park_detail.message;
    clear(head, h("div", { class: "status-line" }, badge(job.status, job.park_reason), verifyBadge(verify)),
      detail ? h("p", { class: "park" }, detail) : null, facts(job),
      h("div", { class: "io" }, json(job.input, { label: "input", open: true }),
        job.error ? json(job.error, { label: "error", open: true }) : job.status === "succeeded" ? json(job.result, { label: "result", open: true }) : null));
    const acted = `${job.status}:${job.park_reason}:${job.control}`;
    if (acted !== state.acted) { // keep a half-typed signal while nothing changed
      state.acted = acted;
      clear(actions, h("h2", {}, "Actions"), actionsPanel(job, refresh));
      const waiting = job.status === "parked" && job.park_reason === "approval" && job.park_detail;
      clear(approval, waiting ? approvalCard({ job_id: job.id, agent: job.agent, name: job.park_detail.name,
        position: job.park_detail.position, args_hash: job.park_detail.args_hash, request: job.park_detail,
        since: job.updated_at }, refresh) : null);
    }
  }

  async function refresh() {
    try {
      const [job, timeline, ledgerRows, verify, model] = await Promise.all([
        get(jobPath(id)), get(jobPath(id, "/timeline")), get("v1/effects", { job_id: id }),
        get(jobPath(id, "/verify")), get(jobPath(id, "/model-calls")),
      ]);
      state.timeline = timeline;
      state.fetchedAt = Date.now();
      showJob(job, verify);
      redraw();
      clear(effects, ledger(ledgerRows, refresh));
      clear(calls, modelCalls(model));
      clear(problem);
      if (model.total.calls) head.append(h("p", { class: "muted" }, `model calls: ${model.total.calls}, ${model.total.input_tokens}+${model.total.output_tokens} tokens, ${cost(model.total.cost)}`));
    } catch (error) {
      clear(problem, h("p", { class: "error", role: "alert" }, error.explained || error.message));
    }
  }

  function soon() {
    clearTimeout(pending);
    pending = setTimeout(refresh, 150);
  }

  function add(event, fresh = false) {
    if (event.seq <= state.last) return;
    state.last = event.seq;
    if (state.origin === null && event.at) state.origin = new Date(event.at);
    const entry = journalEntry(event, state.origin);
    journal.append(entry);
    if (!fresh) return;
    entry.classList.add("fresh"); // what streamed in, for a moment
    setTimeout(() => entry.classList.remove("fresh"), 1200);
  }

  async function start() {
    try {
      const events = await allEvents(id);
      clear(journal);
      for (const event of events) add(event);
    } catch (error) {
      clear(problem, h("p", { class: "error", role: "alert" }, error.explained || error.message));
      return;
    }
    await refresh();
    if (!state.job || TERMINAL.has(state.job.status)) {
      live.textContent = "ended";
      return;
    }
    stop = follow(id, state.last, {
      onEvent: (event) => {
        add(event, true);
        soon();
      },
      onEnd: () => {
        live.textContent = "ended";
        soon();
      },
      onState: (s) => {
        live.textContent = s === "live" ? "● live" : s === "reconnecting" ? "reconnecting…" : "ended";
        live.className = `live ${s}`;
      },
      onError: (error) => clear(problem, h("p", { class: "error", role: "alert" }, error.explained || error.message)),
    });
    timers.push(setInterval(() => state.job && !TERMINAL.has(state.job.status) && redraw(), 500));
  }

  start();
  return () => {
    if (stop) stop();
    clearTimeout(pending);
    timers.forEach(clearInterval);
  };
}
