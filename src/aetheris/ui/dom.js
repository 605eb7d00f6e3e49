// Small helpers to build the page: elements from text (never HTML, so nothing a journal
// holds can become markup), numbers and times for people, JSON that folds, notices.

/** An element: h("a", {href, class, onclick, dataset: {...}}, child, [children], "text"). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Seconds as people read them: 0.4 ms, 12 ms, 1.25 s, 3 min 2 s, 2 h 5 min, 3 d 4 h. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, seconds);
  if (s < 0.001) return `${(s * 1000).toFixed(2)} ms`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const parts = [
    [Math.floor(s / 86400), "d"],
    [Math.floor((s % 86400) / 3600), "h"],
    [Math.floor((s % 3600) / 60), "min"],
    [Math.floor(s % 60), "s"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n} ${unit}`)
    .join(" ");
}

export function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString() : at.toLocaleString();
}

export function ago(iso) {
  if (!iso) return "";
  return `${duration((Date.now() - new Date(iso).getTime()) / 1000)} ago`;
}

export function shortId(id) {
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

export function cost(dollars) {
  if (dollars === null || dollars === undefined) return "cost unknown";
  return dollars < 0.01 ? `$${dollars.toFixed(6)}` : `$${dollars.toFixed(4)}`;
}

/** A status as a coloured badge (a parked job's reason beside it). */
export function badge(status, reason) {
  return h(
    "span",
    { class: `badge s-${status}`, title: reason ? `${status}: ${reason}` : status },
    status,
    reason ? h("small", {}, ` ${reason.replace(/_/g, " ")}`) : null,
  );
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A JSON value: inline when short, else a fold that opens on a click. */
export function json(value, { label, open = false } = {}) {
  const text = pretty(value);
  if (value === undefined) return h("span", { class: "muted" }, "—");
  if (!label && text.length <= 60 && !text.includes("\n"))
    return h("code", { class: "json-inline" }, text);
  const preview = JSON.stringify(value);
  return h(
    "details",
    { class: "json", open },
    h("summary", {}, label ? h("b", {}, label, " ") : null, h("code", {}, clip(preview, 90))),
    h("pre", {}, text),
  );
}

/** A recorded error: its type and message, and its traceback (if any) folded, as written. */
export function errorView(error) {
  if (!error || typeof error !== "object") return json(error, { label: "error", open: true });
  const { type, message, traceback, ...rest } = error;
  return h(
    "div",
    { class: "failure" },
    h("b", {}, `${type || "Error"}: `),
    h("span", {}, message ?? ""),
    traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, traceback)) : null,
    Object.keys(rest).length ? json(rest) : null,
  );
}

export function clip(text, limit) {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** Text typed in as JSON: {value} or {error} saying what is wrong and where. */
export function parseJson(text, what) {
  if (!text.trim()) return { value: null };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `${what} is not valid JSON: ${error.message}` };
  }
}

/** A message at the top of the page; errors stay until closed, the rest for a few seconds. */
export function notify(message, kind = "ok") {
  const box = document.getElementById("notices");
  const close = h("button", { type: "button", class: "link", "aria-label": "close" }, "×");
  const note = h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    close,
  );
  close.addEventListener("click", () => note.remove());
  box.append(note);
  if (kind !== "error") setTimeout(() => note.remove(), 6000);
  return note;
}

/** Run an async action from a button: disabled meanwhile, errors shown in `where`. */
export async function busy(button, where, action) {
  button.disabled = true;
  if (where) clear(where);
  try {
    return await action();
  } catch (error) {
    const message = error.explained || error.message || String(error);
    if (where) clear(where, h("p", { class: "error", role: "alert" }, message));
    else notify(message, "error");
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}
