// Effects in doubt: a side effect that may or may not have happened (its worker died between
// the intent and the outcome). A person who checked the outside world settles it: it happened
// (with its result), it did not (one dispatch is allowed), or the step fails.

import { get, jobPath, post } from "../api.js";
import { ago, busy, clear, h, notify, parseJson, shortId } from "../dom.js";

const CHOICES = [
  ["committed", "It happened", "record it as done, with its result"],
  ["not_executed", "It did not happen", "the tool may be called once more"],
  ["fail", "Fail the step", "the agent gets an error"],
];

/** The form that settles `effect`; onDone() once the server took it. */
export function resolveForm(effect, onDone) {
  const name = `outcome-${effect.job_id}-${effect.position}`;
  const result = h("textarea", {
    name: "result",
    rows: 3,
    class: "mono",
    placeholder: '{"charge_id": "ch_123"}',
    "aria-label": "result JSON",
  });
  const resultBox = h(
    "label",
    { class: "result" },
    "Result (JSON, as the tool would have returned it)",
    result,
  );
  const reason = h("input", {
    name: "reason",
    type: "text",
    placeholder: "What you checked (kept in the journal)",
    "aria-label": "reason",
  });
  const errors = h("div");
  const radios = CHOICES.map(([value, label, hint], i) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name, value, checked: i === 0 }),
      h("b", {}, label),
      h("small", { class: "muted" }, hint),
    ),
  );
  const form = h(
    "form",
    { class: "resolve" },
    h("div", { class: "choices" }, radios),
    resultBox,
    reason,
    errors,
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Resolve")),
  );
  const outcome = () => form.querySelector(`input[name="${name}"]:checked`).value;
  form.addEventListener("change", () => {
    resultBox.hidden = outcome() !== "committed";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = outcome();
    const body = { outcome: chosen, reason: reason.value.trim() || null };
    if (chosen === "committed") {
      const parsed = parseJson(result.value, "The result");
      if (parsed.error) {
        clear(errors, h("p", { class: "error", role: "alert" }, parsed.error));
        result.focus();
        return;
      }
      body.result = parsed.value;
    }
    await busy(form.querySelector("button[type=submit]"), errors, async () => {
      await post(jobPath(effect.job_id, `/effects/${effect.position}/resolve`), body);
      notify(
        `Resolved ${effect.tool} of job ${shortId(effect.job_id)} as ${chosen.replace("_", " ")}.`,
      );
      onDone();
    });
  });
  return form;
}

function row(effect, reload) {
  return h(
    "tr",
    { class: "doubt", dataset: { job: effect.job_id, position: effect.position } },
    h(
      "td",
      {},
      h(
        "a",
        {
          href: `#/jobs/${encodeURIComponent(effect.job_id)}`,
          class: "mono",
          title: effect.job_id,
        },
        shortId(effect.job_id),
      ),
    ),
    h("td", { class: "num" }, String(effect.position)),
    h("td", {}, h("b", {}, effect.tool), h("div", { class: "muted small" }, effect.effect)),
    h(
      "td",
      {},
      h("code", { class: "mono small" }, effect.idempotency_key),
      h(
        "div",
        { class: "muted small" },
        `attempt ${effect.attempt} · since ${ago(effect.updated_at)}`,
      ),
    ),
    h("td", {}, resolveForm(effect, reload)),
  );
}

export function effectsView(main) {
  const list = h("div", { class: "card list" }, h("p", { class: "muted" }, "Loading…"));
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Effects in doubt"),
      h(
        "p",
        { class: "muted" },
        "Each may or may not have happened: check with the outside world (the payment provider, the mailbox), then settle it. Needs the role operator (or admin).",
      ),
    ),
    list,
  );
  let shown = null;

  async function load() {
    try {
      const doubts = await get("v1/effects", { state: "in_doubt" });
      const ids = doubts.map((e) => `${e.job_id}:${e.position}`).join(",");
      if (ids === shown) return;
      shown = ids;
      const reload = () => {
        shown = null;
        load();
      };
      clear(
        list,
        doubts.length
          ? h(
              "table",
              { class: "effects" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["job", "pos", "tool", "idempotency key", "settle"].map((t) => h("th", {}, t)),
                ),
              ),
              h(
                "tbody",
                {},
                doubts.map((e) => row(e, reload)),
              ),
            )
          : h("p", { class: "muted empty" }, "No effect is in doubt."),
      );
    } catch (error) {
      shown = null;
      clear(list, h("p", { class: "error", role: "alert" }, error.explained || error.message));
    }
  }

  load();
  const timer = setInterval(load, 4000);
  return () => clearInterval(timer);
}
