// The jobs list: counts per status (a click filters), filters by status and agent, a search
// by the start of an id or an idempotency key, newest first, a page at a time.

import { get, jobPath } from "../api.js";
import { ago, badge, busy, clear, h, shortId, when } from "../dom.js";

const STATUSES = [
  "pending",
  "running",
  "parked",
  "succeeded",
  "failed",
  "cancelled",
  "compensated",
];
const REFRESH = 3000;

function link(query) {
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v)).toString();
  return `#/jobs${search ? `?${search}` : ""}`;
}

function statsBar(stats, query) {
  const cards = STATUSES.map((status) =>
    h(
      "a",
      {
        class: `stat s-${status}${query.status === status ? " active" : ""}`,
        href: link({ ...query, status: query.status === status ? "" : status, q: "" }),
        dataset: { status },
      },
      h("b", {}, String(stats.jobs[status] || 0)),
      h("span", {}, status),
    ),
  );
  const doubt = h(
    "a",
    { class: `stat s-doubt${stats.in_doubt ? " alert" : ""}`, href: "#/effects" },
    h("b", {}, String(stats.in_doubt)),
    h("span", {}, "effects in doubt"),
  );
  return h("div", { class: "stats" }, cards, doubt);
}

function filters(query, agents) {
  const status = h(
    "select",
    { name: "status", "aria-label": "status" },
    h("option", { value: "" }, "every status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.status === s }, s)),
  );
  const agent = h(
    "select",
    { name: "agent", "aria-label": "agent" },
    h("option", { value: "" }, "every agent"),
    agents.map((a) => h("option", { value: a.name, selected: query.agent === a.name }, a.name)),
  );
  const search = h("input", {
    name: "q",
    type: "search",
    value: query.q || "",
    placeholder: "job id (its start) or idempotency key",
    "aria-label": "search",
    size: 36,
  });
  const form = h(
    "form",
    { class: "filters", role: "search" },
    status,
    agent,
    search,
    h("button", { type: "submit" }, "Search"),
  );
  const go = () => {
    location.hash = link({ status: status.value, agent: agent.value, q: search.value.trim() });
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go();
  });
  status.addEventListener("change", go);
  agent.addEventListener("change", go);
  return form;
}

function table(jobs) {
  if (!jobs.length) return h("p", { class: "muted empty" }, "No jobs here.");
  return h(
    "table",
    { class: "jobs" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["job", "agent", "status", "created", "updated", "events", "attempts"].map((name) =>
          h("th", {}, name),
        ),
      ),
    ),
    h("tbody", {}, jobs.map(row)),
  );
}

function row(job) {
  return h(
    "tr",
    { dataset: { job: job.id } },
    h(
      "td",
      {},
      h(
        "a",
        { href: `#/jobs/${encodeURIComponent(job.id)}`, title: job.id, class: "mono" },
        shortId(job.id),
      ),
      job.idempotency_key ? h("small", { class: "muted key" }, job.idempotency_key) : null,
    ),
    h("td", {}, job.agent),
    h("td", {}, badge(job.status, job.park_reason)),
    h("td", { title: job.created_at }, when(job.created_at)),
    h("td", { title: job.updated_at }, ago(job.updated_at)),
    h("td", { class: "num" }, String(job.events)),
    h("td", { class: "num" }, String(job.attempts)),
  );
}

/** Jobs whose id starts with q, and the job started with the idempotency key q. */
async function search(q) {
  const [ids, keyed] = await Promise.all([
    get("v1/job-ids", { prefix: q, limit: 20 }),
    get("v1/jobs", { idempotency_key: q, limit: 5 }),
  ]);
  const found = new Map(keyed.jobs.map((j) => [j.id, j]));
  const rest = ids.ids.filter((id) => !found.has(id));
  for (const job of await Promise.all(rest.map((id) => get(jobPath(id))))) found.set(job.id, job);
  return [...found.values()];
}

export function jobsView(main, { query }) {
  const stats = h("div", {}, h("div", { class: "stats placeholder" }));
  const list = h("div", { class: "card list" }, h("p", { class: "muted" }, "Loading jobs…"));
  const more = h("div", { class: "more" });
  const problem = h("div");
  const head = h("div", { class: "page-head" }, h("h1", {}, "Jobs"));
  clear(main, head, stats, problem, list, more);
  let jobs = [];
  let cursor = null;
  let paged = false;
  let timer = null;

  async function load(append = false) {
    const [counts, page] = await Promise.all([
      get("v1/summary"),
      query.q
        ? search(query.q).then((found) => ({ jobs: found, next_cursor: null }))
        : get("v1/jobs", {
            status: query.status,
            agent: query.agent,
            cursor: append ? cursor : null,
          }),
    ]);
    clear(stats, statsBar(counts, query));
    jobs = append ? [...jobs, ...page.jobs] : page.jobs;
    cursor = page.next_cursor;
    const title = query.q
      ? h("p", { class: "muted" }, `${jobs.length} found for “${query.q}”`)
      : null;
    clear(list, title, table(jobs));
    clear(
      more,
      cursor
        ? h(
            "button",
            {
              type: "button",
              onclick: (e) => {
                paged = true;
                busy(e.currentTarget, problem, () => load(true));
              },
            },
            "Older jobs",
          )
        : null,
    );
  }

  get("v1/agents")
    .then((agents) => head.append(filters(query, agents)))
    .catch(() => head.append(filters(query, [])));
  const refresh = () =>
    load()
      .then(() => clear(problem))
      .catch((error) => {
        clear(problem, h("p", { class: "error", role: "alert" }, error.explained || error.message));
      });
  refresh();
  timer = setInterval(() => {
    if (!paged && !document.hidden) refresh();
  }, REFRESH);
  return () => clearInterval(timer);
}
