// The journal of a job, entry by entry (each opens on what went in and what came out), and
// its model calls with the messages they sent, their tokens and cost.

import { clip, cost, duration, errorView, h, json } from "../dom.js";

const ENDS = {
  job_succeeded: "succeeded",
  job_failed: "failed",
  job_cancelled: "cancelled",
  job_compensated: "compensated",
};

function opOutcome(d) {
  if (d.error) return d.error.type || "error";
  if (d.kind === "approval") return d.result && d.result.approved ? "approved" : "rejected";
  if (d.kind === "signal") return "received";
  if (d.kind === "llm") return "answered";
  return d.outcome || "";
}

/** What an event says, for its row: kind, name, outcome, and what went in and out. */
export function describe(event) {
  const d = event.data;
  const named = d.name ? `${d.name}${d.ordinal ? `#${d.ordinal}` : ""}` : "";
  switch (event.type) {
    case "op": {
      const input = { args_hash: d.args_hash };
      if (d.idempotency_key) input.idempotency_key = d.idempotency_key;
      if (d.request) input.request = d.request;
      if (d.signal_id) Object.assign(input, { signal_id: d.signal_id, sender: d.sender ?? null });
      const output = d.error ? { error: d.error } : { result: d.result };
      if (d.retries) output.retries = d.retries;
      if (d.usage) Object.assign(output, { usage: d.usage, cost: d.cost ?? null, model: d.model });
      return {
        kind: d.kind,
        name: named,
        outcome: opOutcome(d),
        input,
        output,
        took: d.duration_ms,
      };
    }
    case "intent":
      return {
        kind: d.kind,
        name: named,
        outcome: "intent",
        input: { args_hash: d.args_hash, idempotency_key: d.idempotency_key, attempt: d.attempt },
      };
    case "wait":
      return { kind: d.kind, name: d.name, outcome: "waiting", input: d };
    case "job_created":
      return { kind: "job", name: d.agent, outcome: "created", input: d.input };
    case "job_claimed":
      return {
        kind: "worker",
        name: `epoch ${d.epoch}`,
        outcome: d.recovered_from ? "took over" : `attempt ${d.attempt}`,
        input: d,
      };
    case "job_parked":
      return {
        kind: "job",
        name: (d.detail && (d.detail.message || d.detail.name)) || "",
        outcome: `parked: ${d.reason}`,
        input: d.detail,
      };
    case "effect_in_doubt":
      return { kind: "tool", name: d.name, outcome: "in_doubt", input: d };
    case "effect_resolved":
      return { kind: "tool", name: d.name, outcome: d.resolution, input: d };
    default:
      if (ENDS[event.type])
        return {
          kind: "job",
          name: "",
          outcome: ENDS[event.type],
          output: d.error ? { error: d.error } : { result: d.result },
        };
      return { kind: "", name: "", outcome: event.type.replace(/^job_/, ""), input: d };
  }
}

/** What came out: an error as an error (its traceback folded), anything else as JSON. */
function output(out) {
  const { error, ...rest } = out;
  if (!error) return json(out, { label: "output", open: true });
  return [errorView(error), Object.keys(rest).length ? json(rest, { label: "more" }) : null];
}

export function journalEntry(event, origin) {
  const seen = describe(event);
  const offset = event.at && origin ? (new Date(event.at) - origin) / 1000 : null;
  const state = /in_doubt|failed|Error|rejected/.test(seen.outcome)
    ? "bad"
    : /parked|waiting|intent/.test(seen.outcome)
      ? "wait"
      : "";
  const summary = h(
    "summary",
    {},
    h("span", { class: "seq" }, String(event.seq)),
    h(
      "span",
      { class: "at muted", title: event.at },
      offset === null ? "" : `+${duration(offset)}`,
    ),
    h("span", { class: "type" }, event.type),
    h("span", { class: "pos" }, event.position ?? ""),
    h(
      "span",
      { class: "what" },
      seen.kind ? h("span", { class: `kind k-${seen.kind}` }, seen.kind) : null,
      h("span", { class: "name", title: seen.name }, clip(String(seen.name || ""), 80)),
    ),
    h("span", { class: `outcome ${state}` }, seen.outcome),
    h("span", { class: "took muted" }, seen.took !== undefined ? duration(seen.took / 1000) : ""),
  );
  return h(
    "details",
    { class: "entry", id: `ev-${event.seq}`, dataset: { seq: event.seq, type: event.type } },
    summary,
    h(
      "div",
      { class: "io" },
      seen.input !== undefined
        ? h("div", {}, h("h4", {}, "in"), json(seen.input, { label: "input", open: true }))
        : null,
      seen.output !== undefined ? h("div", {}, h("h4", {}, "out"), output(seen.output)) : null,
      h("div", { class: "raw" }, json({ ...event }, { label: "event" })),
    ),
  );
}

function content(message) {
  if (message === null || message === undefined)
    return h("em", { class: "muted" }, "(missing blob)");
  const text = typeof message.content === "string" ? message.content : null;
  const rest = { ...message };
  delete rest.role;
  if (text !== null) delete rest.content;
  return [
    text !== null ? h("div", { class: "text" }, text) : null,
    Object.keys(rest).length ? json(rest) : null,
  ];
}

function answer(response) {
  if (!response || typeof response !== "object") return response;
  const choice = Array.isArray(response.choices) && response.choices[0];
  return (choice && choice.message) || response.message || null;
}

export function modelCalls(data) {
  if (!data.calls.length) return h("p", { class: "muted empty" }, "No model calls.");
  const total = data.total;
  const sum = h(
    "p",
    { class: "muted" },
    `${total.calls} call(s), ${total.input_tokens}+${total.output_tokens} tokens, ${cost(total.cost)}`,
  );
  const calls = data.calls.map((call) => {
    const reply = answer(call.response);
    return h(
      "details",
      { class: "llm", dataset: { seq: call.seq } },
      h(
        "summary",
        {},
        h("span", { class: "pos" }, call.position ?? ""),
        h("b", {}, call.model || call.name),
        h("span", {}, `${call.input_tokens} in + ${call.output_tokens} out tokens`),
        h("span", {}, cost(call.cost)),
        h("span", { class: "muted" }, duration((call.duration_ms || 0) / 1000)),
        call.error ? h("span", { class: "outcome bad" }, call.error.type) : null,
        call.problem
          ? h("span", { class: "outcome bad", title: call.problem }, "blob missing")
          : null,
      ),
      h(
        "ol",
        { class: "messages" },
        call.messages.map((digest) => {
          const message = data.messages[digest];
          return h(
            "li",
            { class: `msg r-${(message && message.role) || "unknown"}` },
            h("span", { class: "role" }, (message && message.role) || "?"),
            content(message),
          );
        }),
      ),
      reply
        ? h("div", { class: "msg r-reply" }, h("span", { class: "role" }, "answer"), content(reply))
        : null,
      call.error ? json(call.error, { label: "error", open: true }) : null,
      h(
        "div",
        { class: "io" },
        json(call.params, { label: "parameters" }),
        json(call.response, { label: "response" }),
      ),
    );
  });
  return [sum, calls];
}
