// The timeline of a job as a waterfall: the job's phases on top (pending, runs, parks,
// recoveries), then one row per journal position with a bar from its start to its end. Open
// steps (running, waiting, in doubt) stretch to now and grow while the page is open. The
// server computes every span (GET /v1/jobs/{id}/timeline); this only draws them.

import { clear, duration, h } from "../dom.js";

const WAITS = new Set(["approval", "signal", "child", "sleep", "budget"]);

/** Tick spacing of 1, 2 or 5 × 10^k so that about six ticks cover `total` seconds. */
function ticks(total) {
  const raw = total / 6;
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || power;
  const found = [];
  for (let t = 0; t <= total + 1e-9; t += step) found.push(t);
  return found;
}

function place(node, start, end, total) {
  const left = (start / total) * 100;
  const width = Math.max(((end - start) / total) * 100, 0.35);
  node.style.left = `${Math.min(left, 99.65)}%`;
  node.style.width = `${Math.min(width, 100 - Math.min(left, 99.65))}%`;
  return node;
}

function phaseLane(line, total, now) {
  const track = h("div", { class: "track" });
  for (const phase of line.phases) {
    const end = phase.end ?? now;
    const label =
      phase.kind === "parked"
        ? `parked: ${phase.label.replace(/_/g, " ")}`
        : phase.label || phase.kind;
    const tip = `${label} · ${duration(end - phase.start)}${phase.end === null ? " so far" : ""}`;
    track.append(
      place(
        h(
          "div",
          {
            class: `phase p-${phase.kind}${phase.end === null ? " open" : ""}`,
            title: tip,
            dataset: { kind: phase.kind },
          },
          h("span", {}, label),
        ),
        phase.start,
        end,
        total,
      ),
    );
  }
  return h(
    "div",
    { class: "tl-row lane" },
    h("div", { class: "tl-label" }, h("b", {}, "job")),
    track,
  );
}

/** A bar's classes: its colour by kind (tool, step, model call, wait) and by state. */
function stepClass(step) {
  const kind = WAITS.has(step.kind) ? "wait" : { llm: "llm", tool: "tool" }[step.kind] || "step";
  return `bar k-${kind} st-${step.state}${step.end === null ? " open" : ""}`;
}

function stepRow(step, total, now, bands, onPick) {
  const end = step.end ?? now;
  const took = step.duration ?? end - step.start;
  const notes = [];
  if (step.attempts > 1)
    notes.push(
      h("span", { class: "tag warn", title: "tries in its last dispatch" }, `×${step.attempts}`),
    );
  if (step.dispatches > 1)
    notes.push(
      h(
        "span",
        { class: "tag warn", title: "dispatched again after a crash" },
        `${step.dispatches} dispatches`,
      ),
    );
  if (step.tokens)
    notes.push(h("span", { class: "tag" }, `${step.tokens[0]}+${step.tokens[1]} tok`));
  const tip = [
    `${step.kind} ${step.name} at position ${step.position}`,
    `${step.state}${step.outcome && step.outcome !== step.state ? ` (${step.outcome})` : ""}`,
    `starts at +${duration(step.start)}, ${step.end === null ? "open for" : "took"} ${duration(took)}`,
    step.busy !== null && step.busy !== undefined ? `its dispatch ran ${duration(step.busy)}` : "",
    step.error || "",
    ...step.retries.map((r) => `try ${r.attempt}: ${r.type}: ${r.message}`),
  ]
    .filter(Boolean)
    .join("\n");
  const bar = place(h("div", { class: stepClass(step) }), step.start, end, total);
  const label = h(
    "div",
    { class: "tl-label" },
    h("span", { class: "pos" }, String(step.position)),
    h("span", { class: `kind k-${step.kind}` }, step.kind),
    h("span", { class: "name", title: step.name }, step.name),
    notes,
  );
  const right = Math.min((end / total) * 100, 100);
  const text = h(
    "span",
    { class: "took" },
    `${step.state === "done" ? "" : `${step.state.replace("_", " ")} · `}${duration(took)}`,
  );
  if (right > 72) {
    text.classList.add("inside");
    text.style.right = `${100 - right}%`;
  } else {
    text.style.left = `calc(${right}% + 6px)`;
  }
  const track = h("div", { class: "track" }, bands(), bar, text);
  return h(
    "div",
    {
      class: `tl-row step st-${step.state}`,
      title: tip,
      tabindex: 0,
      dataset: { position: step.position, seq: step.seq, state: step.state },
      onclick: () => onPick(step.seq),
      onkeydown: (e) => e.key === "Enter" && onPick(step.seq),
    },
    label,
    track,
  );
}

/** Draw `line` (the API's timeline) into `node`, with the present `now` seconds in. */
export function drawTimeline(node, line, now, onPick) {
  const total = Math.max(now, line.end ?? 0, ...line.steps.map((s) => s.end ?? 0), 0.001);
  const parked = line.phases.filter((p) => p.kind === "parked" || p.kind === "recovery");
  const bands = () =>
    parked.map((p) => place(h("div", { class: `band p-${p.kind}` }), p.start, p.end ?? now, total));
  const axis = h("div", { class: "track axis" });
  for (const at of ticks(total)) {
    const tick = h("span", { class: "tick" }, duration(at));
    tick.style.left = `${(at / total) * 100}%`;
    tick.classList.toggle("end", at / total > 0.9); // its label to the left of its line
    axis.append(tick);
  }
  const rows = line.steps.map((step) => stepRow(step, total, now, bands, onPick));
  clear(
    node,
    h(
      "div",
      { class: "tl-row head" },
      h("div", { class: "tl-label muted" }, "position · kind · name"),
      axis,
    ),
    phaseLane(line, total, now),
    rows.length ? rows : h("p", { class: "muted empty" }, "No steps yet."),
  );
}

export function legend() {
  const item = (cls, text) => h("span", { class: "legend-item" }, h("i", { class: cls }), text);
  return h(
    "div",
    { class: "legend" },
    item("bar k-tool st-done", "tool"),
    item("bar k-step st-done", "step"),
    item("bar k-llm st-done", "model call"),
    item("bar k-wait st-done", "wait"),
    item("bar st-running open", "running"),
    item("bar st-in_doubt", "in doubt"),
    item("bar st-failed", "failed"),
    item("band p-parked", "parked"),
    item("band p-recovery", "recovery"),
  );
}
