// One job: what it is, what can be done to it, its timeline, journal, model calls, effects
// ledger and hash chain. While it runs, its journal streams in and everything else follows
// (the timeline is the server's, fetched again after each burst of events).

import { get, jobPath } from "../api.js";
import { ago, badge, clear, cost, errorView, h, json, section, shortId, when } from "../dom.js";
import { follow } from "../stream.js";
import { actionsPanel } from "./actions.js";
import { approvalCard } from "./approvals.js";
import { resolveForm } from "./effects.js";
import { journalEntry, modelCalls } from "./journal.js";
import { drawTimeline, legend } from "./timeline.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "compensated"]);
const failure = (error) =>
  h("p", { class: "error", role: "alert" }, error.explained || error.message);

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
  const link = (id) =>
    h("a", { href: `#/jobs/${encodeURIComponent(id)}`, class: "mono" }, shortId(id));
  const rows = [
    ["agent", job.agent],
    ["tenant", job.tenant],
    ["created", when(job.created_at)],
    ["updated", `${when(job.updated_at)} (${ago(job.updated_at)})`],
    ["attempts", `${job.attempts} (recovered ${job.recoveries}×)`],
    ["events", String(job.events)],
    job.code_version ? ["code version", h("code", {}, job.code_version)] : null,
    ["queue", `${job.queue}, priority ${job.priority}`],
    job.idempotency_key ? ["idempotency key", h("code", {}, job.idempotency_key)] : null,
    job.parent_id ? ["parent", link(job.parent_id)] : null,
    job.control ? ["requested", `${job.control} by ${job.control_by || "?"}`] : null,
    job.wake_on ? ["waits for", job.wake_on] : null,
    job.wake_at ? ["due", when(job.wake_at)] : null,
    job.deadline ? ["deadline", when(job.deadline)] : null,
    ["head hash", h("code", { class: "mono small" }, job.head_hash)],
  ];
  return h(
    "dl",
    { class: "facts" },
    rows.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

function outcome(job) {
  if (job.error) return errorView(job.error);
  return job.status === "succeeded" ? json(job.result, { label: "result", open: true }) : null;
}

function verifyBadge(report) {
  if (report.ok) {
    return h(
      "span",
      { class: "verify good", title: `head ${report.head}` },
      `✓ hash chain verified (${report.events} events)`,
    );
  }
  return h(
    "span",
    { class: "verify bad", role: "alert" },
    `✗ hash chain BROKEN at seq ${report.seq}: ${report.problem}`,
  );
}

function ledgerRow(e, reload) {
  return [
    h(
      "tr",
      {
        class: e.state === "in_doubt" ? "doubt" : "",
        dataset: { position: e.position, state: e.state },
      },
      h("td", { class: "num" }, String(e.position)),
      h("td", {}, h("b", {}, e.tool)),
      h("td", {}, e.effect),
      h("td", {}, h("span", { class: `badge e-${e.state}` }, e.state.replace("_", " "))),
      h("td", { class: "num" }, String(e.attempt)),
      h("td", {}, h("code", { class: "small" }, e.idempotency_key)),
      h("td", {}, e.error ? json(e.error) : json(e.result)),
    ),
    e.state === "in_doubt"
      ? h("tr", { class: "doubt-form" }, h("td", { colspan: 7 }, resolveForm(e, reload)))
      : null,
  ];
}

function ledger(effects, reload) {
  if (!effects.length) {
    return h(
      "p",
      { class: "muted empty" },
      "No ledger rows: no idempotent or at-most-once tool was dispatched.",
    );
  }
  const heads = ["pos", "tool", "effect", "state", "attempt", "idempotency key", "result / error"];
  return h(
    "table",
    { class: "ledger" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        heads.map((t) => h("th", {}, t)),
      ),
    ),
    h(
      "tbody",
      {},
      effects.map((e) => ledgerRow(e, reload)),
    ),
  );
}

/** The request a job parked for approval waits on, as the inbox lists it. */
function pendingApproval(job) {
  const detail = job.park_detail;
  return {
    job_id: job.id,
    agent: job.agent,
    name: detail.name,
    position: detail.position,
    args_hash: detail.args_hash,
    request: detail,
    since: job.updated_at,
  };
}

class JobPage {
  constructor(main, id) {
    this.id = id;
    this.live = h("span", { class: "live muted" });
    this.head = h("div", { class: "card job-head" });
    this.actions = h("div", { class: "card" });
    this.approval = h("div");
    this.line = h("div", { class: "timeline" }, h("p", { class: "muted" }, "Loading…"));
    this.journal = h("div", { class: "journal" });
    this.calls = h("div", { class: "calls" });
    this.effects = h("div");
    this.problem = h("div");
    const title = h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Job ", h("span", { class: "mono" }, id)),
      this.live,
    );
    this.body = h(
      "div",
      {},
      this.head,
      this.approval,
      this.actions,
      section("Timeline", legend(), this.line),
      section("Journal", this.journal),
      section("Model calls", this.calls),
      section("Effects ledger", this.effects),
    );
    clear(main, title, this.problem, this.body);
    this.job = null;
    this.timeline = null;
    this.fetchedAt = 0;
    this.last = -1;
    this.origin = null;
    this.acted = "";
    this.timers = [];
    this.stopStream = null;
  }

  get ended() {
    return !this.job || TERMINAL.has(this.job.status);
  }

  /** Seconds from the job's creation to now, by the server's clock and the time since. */
  now() {
    const line = this.timeline;
    return line.now + (line.end === null ? (Date.now() - this.fetchedAt) / 1000 : 0);
  }

  redraw() {
    if (this.timeline) drawTimeline(this.line, this.timeline, this.now(), (seq) => this.pick(seq));
  }

  pick(seq) {
    const entry = document.getElementById(`ev-${seq}`);
    if (!entry) return;
    entry.open = true;
    entry.scrollIntoView({ behavior: "smooth", block: "center" });
    entry.classList.add("picked");
    setTimeout(() => entry.classList.remove("picked"), 1500);
  }

  showJob(job, verify, spent) {
    this.job = job;
    const detail = job.park_detail && job.park_detail.message;
    const spend = spent.calls
      ? `model calls: ${spent.calls}, ${spent.input_tokens}+${spent.output_tokens} tokens, ${cost(spent.cost)}`
      : null;
    clear(
      this.head,
      h("div", { class: "status-line" }, badge(job.status, job.park_reason), verifyBadge(verify)),
      detail ? h("p", { class: "park" }, detail) : null,
      facts(job),
      h("div", { class: "io" }, json(job.input, { label: "input", open: true }), outcome(job)),
      spend ? h("p", { class: "muted" }, spend) : null,
    );
    const acted = `${job.status}:${job.park_reason}:${job.control}`;
    if (acted === this.acted) return; // keep a half-typed signal while nothing changed
    this.acted = acted;
    const refresh = () => this.refresh();
    clear(this.actions, h("h2", {}, "Actions"), actionsPanel(job, refresh));
    const waiting = job.status === "parked" && job.park_reason === "approval" && job.park_detail;
    clear(this.approval, waiting ? approvalCard(pendingApproval(job), refresh) : null);
  }

  async refresh() {
    const id = this.id;
    try {
      const [job, timeline, effects, verify, model] = await Promise.all([
        get(jobPath(id)),
        get(jobPath(id, "/timeline")),
        get("v1/effects", { job_id: id }),
        get(jobPath(id, "/verify")),
        get(jobPath(id, "/model-calls")),
      ]);
      this.timeline = timeline;
      this.fetchedAt = Date.now();
      this.showJob(job, verify, model.total);
      this.redraw();
      clear(
        this.effects,
        ledger(effects, () => this.refresh()),
      );
      clear(this.calls, modelCalls(model));
      clear(this.problem);
    } catch (error) {
      clear(this.problem, failure(error));
    }
  }

  soon() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.refresh(), 150);
  }

  add(event, fresh = false) {
    if (event.seq <= this.last) return;
    this.last = event.seq;
    if (this.origin === null && event.at) this.origin = new Date(event.at);
    const entry = journalEntry(event, this.origin);
    this.journal.append(entry);
    if (!fresh) return;
    entry.classList.add("fresh"); // what streamed in, for a moment
    setTimeout(() => entry.classList.remove("fresh"), 1200);
  }

  showStream(state) {
    const words = { live: "● live", reconnecting: "reconnecting…", ended: "ended" };
    this.live.textContent = words[state];
    this.live.className = `live ${state}`;
  }

  async start() {
    try {
      const events = await allEvents(this.id);
      clear(this.journal);
      for (const event of events) this.add(event);
    } catch (error) {
      clear(this.problem, failure(error), h("a", { href: "#/jobs" }, "All jobs"));
      this.body.hidden = true;
      return;
    }
    await this.refresh();
    if (this.ended) {
      this.showStream("ended");
      return;
    }
    this.stopStream = follow(this.id, this.last, {
      onEvent: (event) => {
        this.add(event, true);
        this.soon();
      },
      onEnd: () => this.soon(),
      onState: (state) => this.showStream(state),
      onError: (error) => clear(this.problem, failure(error)),
    });
    this.timers.push(setInterval(() => this.ended || this.redraw(), 500));
  }

  stop() {
    if (this.stopStream) this.stopStream();
    clearTimeout(this.pending);
    this.timers.forEach(clearInterval);
  }
}

export function jobView(main, { params: [id] }) {
  const page = new JobPage(main, id);
  page.start();
  return () => page.stop();
}
