// What an operator does to one job: cancel, pause, resume, send a signal, fork it at a step,
// compare it with another run, and check that the server's code still replays its journal. Each is the API's verb; a
// refusal says why.

import { jobPath, post } from "../api.js";
import { busy, clear, h, notify, parseJson, pretty } from "../dom.js";
import { compareForm } from "./compare.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "compensated"]);

function cancelButton(job, errors, onChange) {
  const wrap = h("span", { class: "confirm" });
  const ask = h(
    "button",
    { type: "button", class: "danger", dataset: { action: "cancel" } },
    "Cancel job…",
  );
  ask.addEventListener("click", () => {
    const yes = h(
      "button",
      { type: "button", class: "danger", dataset: { action: "confirm-cancel" } },
      "Yes, cancel it",
    );
    const no = h("button", { type: "button" }, "Keep it");
    yes.addEventListener("click", () =>
      busy(yes, errors, async () => {
        await post(jobPath(job.id, "/cancel"));
        notify(
          "Cancel requested: its worker stops it at its next durable operation; compensations run.",
        );
        onChange();
      }),
    );
    no.addEventListener("click", () => clear(wrap, ask));
    clear(wrap, h("span", {}, "Cancel this job and its children?"), yes, no);
  });
  wrap.append(ask);
  return wrap;
}

function control(job, verb, label, errors, onChange) {
  const button = h("button", { type: "button", dataset: { action: verb } }, label);
  button.addEventListener("click", () =>
    busy(button, errors, async () => {
      await post(jobPath(job.id, `/${verb}`));
      notify(`${label}: done.`);
      onChange();
    }),
  );
  return button;
}

function signalForm(job, onChange) {
  const name = h("input", {
    name: "signal",
    required: true,
    placeholder: "name",
    size: 14,
    "aria-label": "signal name",
  });
  const data = h("textarea", {
    name: "data",
    rows: 2,
    class: "mono",
    placeholder: '{"answer": "yes"}  (JSON; empty: null)',
    "aria-label": "signal payload",
  });
  const errors = h("div");
  const form = h(
    "form",
    { class: "signal" },
    h("b", {}, "Signal"),
    name,
    data,
    h("button", { type: "submit" }, "Send"),
    errors,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      clear(errors, h("p", { class: "error", role: "alert" }, "Name the signal."));
      return;
    }
    const parsed = parseJson(data.value, "The payload");
    if (parsed.error) {
      clear(errors, h("p", { class: "error", role: "alert" }, parsed.error));
      data.focus();
      return;
    }
    await busy(form.querySelector("button"), errors, async () => {
      const sent = await post(
        jobPath(job.id, `/signals/${encodeURIComponent(name.value.trim())}`),
        { data: parsed.value },
      );
      notify(`Signal ${sent.name} sent (#${sent.seq}): the job takes it when it waits for it.`);
      data.value = "";
      onChange();
    });
  });
  return form;
}

function forkForm(job) {
  const at = h("input", {
    name: "at",
    type: "number",
    min: 0,
    required: true,
    size: 5,
    placeholder: "N",
    "aria-label": "fork at entry",
  });
  const output = h("textarea", {
    name: "output",
    rows: 2,
    class: "mono",
    placeholder: "entry N's output replaced by this JSON (empty: keep entries 0..N-1 only)",
    "aria-label": "edited output",
  });
  const errors = h("div");
  const form = h(
    "form",
    { class: "fork" },
    h("b", {}, "Fork at"),
    at,
    output,
    h("button", { type: "submit" }, "Fork"),
    errors,
  );
  form.title = "A new job that replays the first N entries for free, then runs live";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const n = Number.parseInt(at.value, 10);
    if (!Number.isInteger(n) || n < 0) {
      clear(errors, h("p", { class: "error", role: "alert" }, "N is an entry: 0 or more."));
      return;
    }
    const body = { at: n };
    if (output.value.trim()) {
      const parsed = parseJson(output.value, "The output");
      if (parsed.error) {
        clear(errors, h("p", { class: "error", role: "alert" }, parsed.error));
        output.focus();
        return;
      }
      body.output = parsed.value;
    }
    await busy(form.querySelector("button"), errors, async () => {
      const made = await post(jobPath(job.id, "/fork"), body);
      notify(`Forked at entry ${n}: job ${made.id}.`);
      window.location.hash = `#/jobs/${encodeURIComponent(made.id)}`;
    });
  });
  return form;
}

function replayButton(job, out) {
  const button = h("button", { type: "button", dataset: { action: "replay" } }, "Replay check");
  button.title = "Replay the journal against the server's code, executing nothing";
  button.addEventListener("click", () =>
    busy(button, out, async () => {
      const report = await post(jobPath(job.id, "/replay"));
      const words = {
        matched: "the code makes the recorded decisions",
        incomplete: `the code agrees up to position ${report.position}, where the journal stops`,
        diverged: `the code diverges at position ${report.position}`,
        different_end: "same operations, but the job would end differently now",
      };
      clear(
        out,
        h(
          "div",
          { class: `replay ${report.ok ? "good" : "bad"}`, role: "status" },
          h("b", {}, report.outcome),
          ` — ${words[report.outcome] || ""} (${report.operations} recorded operations)`,
          report.diff ? h("pre", {}, report.diff) : null,
          report.outcome === "different_end"
            ? h(
                "pre",
                {},
                `recorded: ${pretty(report.recorded_end)}\nreplayed: ${pretty(report.replayed_end)}`,
              )
            : null,
        ),
      );
    }),
  );
  return button;
}

/** The actions that fit `job`'s status; onChange() after one went through. */
export function actionsPanel(job, onChange) {
  const errors = h("div");
  const replayOut = h("div");
  const ended = TERMINAL.has(job.status);
  const buttons = [];
  if (!ended) buttons.push(cancelButton(job, errors, onChange));
  if (job.status === "pending" || (job.status === "running" && !job.control)) {
    buttons.push(control(job, "pause", "Pause", errors, onChange));
  }
  if (job.status === "parked" && job.park_reason === "paused") {
    buttons.push(control(job, "resume", "Resume", errors, onChange));
  }
  buttons.push(replayButton(job, replayOut));
  return h(
    "div",
    { class: "actions" },
    h("div", { class: "buttons" }, buttons),
    errors,
    ended ? null : signalForm(job, onChange),
    job.status === "running" ? null : forkForm(job),
    compareForm(job),
    replayOut,
  );
}
