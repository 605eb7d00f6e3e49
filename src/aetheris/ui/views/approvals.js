// The approvals inbox: every request waiting for a person, with exactly what is to be
// approved (the tool, its arguments and their hash), decided with a reason. The hash shown is
// sent back: the server refuses the decision if the request is no longer that one.

import { get, jobPath, post } from "../api.js";
import { ago, busy, clear, h, json, notify, shortId } from "../dom.js";

/** What a request asks to approve: a tool call (tool, args, kwargs) or another payload. */
function asked(request) {
  const payload = request.payload ?? {};
  if (payload && typeof payload === "object" && payload.tool) {
    return h(
      "div",
      { class: "asked" },
      h("p", {}, "Call the tool ", h("b", { class: "mono" }, payload.tool), " with:"),
      h(
        "dl",
        { class: "args" },
        h("dt", {}, "args"),
        h("dd", {}, json(payload.args ?? [], { label: "args", open: true })),
        h("dt", {}, "kwargs"),
        h("dd", {}, json(payload.kwargs ?? {}, { label: "kwargs", open: true })),
      ),
    );
  }
  return h(
    "div",
    { class: "asked" },
    h("p", {}, "Request:"),
    json(payload, { label: "payload", open: true }),
  );
}

/** One pending approval with its decision form; onDone(verb) after a decision went through. */
export function approvalCard(approval, onDone) {
  const request = approval.request || {};
  const comment = h("textarea", {
    name: "comment",
    rows: 2,
    placeholder: "Reason (kept in the journal; needed to reject)",
    "aria-label": "reason",
  });
  const errors = h("div");
  const decide = (verb) => async (event) => {
    const reason = comment.value.trim();
    if (verb === "reject" && !reason) {
      clear(
        errors,
        h(
          "p",
          { class: "error", role: "alert" },
          "Give a reason to reject: it is recorded and the agent receives it.",
        ),
      );
      comment.focus();
      return;
    }
    await busy(event.currentTarget, errors, async () => {
      await post(jobPath(approval.job_id, `/${verb}`), {
        position: approval.position,
        args_hash: approval.args_hash,
        comment: reason || null,
      });
      notify(
        `${verb === "approve" ? "Approved" : "Rejected"}: job ${shortId(approval.job_id)} resumes.`,
      );
      onDone(verb);
    });
  };
  return h(
    "article",
    { class: "card approval", dataset: { job: approval.job_id } },
    h(
      "header",
      {},
      h("h3", {}, request.name || approval.name || "approval"),
      h(
        "a",
        {
          href: `#/jobs/${encodeURIComponent(approval.job_id)}`,
          class: "mono",
          title: approval.job_id,
        },
        shortId(approval.job_id),
      ),
      h(
        "span",
        { class: "muted" },
        `agent ${approval.agent} · position ${approval.position ?? "?"} · waiting ${ago(approval.since).replace(" ago", "")}`,
      ),
    ),
    request.message ? h("p", { class: "muted small" }, request.message) : null,
    asked(request),
    h(
      "p",
      { class: "hash" },
      "args_hash ",
      h("code", { class: "mono" }, approval.args_hash || "—"),
    ),
    request.deadline
      ? h("p", { class: "muted" }, `Deadline ${new Date(request.deadline * 1000).toLocaleString()}`)
      : null,
    comment,
    errors,
    h(
      "div",
      { class: "buttons" },
      h(
        "button",
        { type: "button", class: "primary approve", onclick: decide("approve") },
        "Approve",
      ),
      h("button", { type: "button", class: "danger reject", onclick: decide("reject") }, "Reject"),
    ),
  );
}

export function approvalsView(main) {
  const list = h("div", { class: "approvals" }, h("p", { class: "muted" }, "Loading…"));
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Approvals"),
      h(
        "p",
        { class: "muted" },
        "Requests waiting for a person, oldest first. Deciding needs a key with the role approver (or admin).",
      ),
    ),
    list,
  );
  let timer = null;
  let shown = null;
  const decided = new Set(); // listed until its job is claimed again: not shown meanwhile

  async function load() {
    try {
      const pending = (await get("v1/approvals")).filter(
        (a) => !decided.has(`${a.job_id}:${a.position}`),
      );
      const ids = pending.map((a) => `${a.job_id}:${a.position}`).join(",");
      if (ids === shown) return; // keep what is being typed
      shown = ids;
      clear(
        list,
        pending.length
          ? pending.map((a) =>
              approvalCard(a, () => {
                decided.add(`${a.job_id}:${a.position}`);
                shown = null;
                load();
              }),
            )
          : h("p", { class: "muted empty" }, "Nothing waits for approval."),
      );
    } catch (error) {
      clear(list, h("p", { class: "error", role: "alert" }, error.explained || error.message));
      shown = null;
    }
  }

  load();
  timer = setInterval(load, 4000);
  return () => clearInterval(timer);
}
