// Compare this run with another (its fork, its origin, a retry): where they first did
// different things, which outputs changed, and how each ended. The API's diff, as a table.

import { get, jobPath } from "../api.js";
import { busy, clear, h, json, shortId } from "../dom.js";

function operation(entry) {
  if (!entry) return h("span", { class: "muted" }, "(nothing)");
  return h(
    "span",
    {},
    h("b", {}, `${entry.kind} ${entry.name}`),
    h("span", { class: "muted" }, ` args ${entry.args_hash.slice(0, 12)}`),
    h("div", {}, json(entry.output)),
  );
}

function rowsTable(found) {
  const rows = found.rows.map((row) =>
    h(
      "tr",
      { class: row.differs === "operation" ? "differs-operation" : "differs-output" },
      h("td", { class: "num" }, String(row.position)),
      h("td", {}, row.differs),
      h("td", {}, operation(row.a)),
      h("td", {}, operation(row.b)),
    ),
  );
  if (!found.end.same) {
    rows.push(
      h(
        "tr",
        { class: "differs-end" },
        h("td", {}, "end"),
        h("td", {}, "end"),
        h("td", {}, json(found.end.a)),
        h("td", {}, json(found.end.b)),
      ),
    );
  }
  return h(
    "table",
    { class: "diff" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Position"),
        h("th", {}, "Differs"),
        h("th", {}, `A ${shortId(found.a)}`),
        h("th", {}, `B ${shortId(found.b)}`),
      ),
    ),
    h("tbody", {}, rows),
  );
}

function summary(found) {
  if (found.same) return "The runs are the same: every position and the end agree.";
  const first = found.first_divergence;
  const changed = found.rows.filter((r) => r.differs === "output").length;
  const parts = [
    first
      ? `They first did different things at position ${first.position}.`
      : "They did the same operations.",
    `${changed} output(s) changed.`,
    found.end.same ? "They ended the same way." : "They ended differently.",
  ];
  return parts.join(" ");
}

/** A form: another job's id, then the diff of this job (A) against it (B). */
export function compareForm(job) {
  const other = h("input", {
    name: "other",
    required: true,
    size: 38,
    class: "mono",
    placeholder: "another job's id (a fork, its origin, a retry)",
    "aria-label": "job to compare with",
  });
  const out = h("div");
  const form = h(
    "form",
    { class: "compare" },
    h("b", {}, "Compare with"),
    other,
    h("button", { type: "submit" }, "Diff"),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = other.value.trim();
    if (!id) {
      clear(out, h("p", { class: "error", role: "alert" }, "Give the other job's id."));
      return;
    }
    await busy(form.querySelector("button"), out, async () => {
      const found = await get(jobPath(job.id, `/diff/${encodeURIComponent(id)}`));
      clear(
        out,
        h(
          "div",
          { class: `replay ${found.same ? "good" : "bad"}`, role: "status" },
          summary(found),
        ),
        found.rows.length || !found.end.same ? rowsTable(found) : null,
      );
    });
  });
  return form;
}
