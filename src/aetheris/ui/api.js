// The server's HTTP API (/v1), called with this tab's API key, if it has one.
//
// The page is served at <server>/ui/, so the API is one level up: relative URLs keep working
// behind a proxy that mounts the server under a prefix. A refusal is thrown as an ApiError
// with the API's own code and message; a 401 also tells the listeners (the key dialog).

const ROOT = new URL("../", document.baseURI);
const STORAGE = "aetheris.api-key";
const unauthorized = [];

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The message, with what each invalid field was (a 422 names them). */
  get explained() {
    const problems = (this.details && this.details.errors) || [];
    const listed = problems.map((p) => `${p.at}: ${p.problem}`).join("; ");
    const head = this.status === 403 ? `Not allowed: ${this.message}` : this.message;
    return listed ? `${head} (${listed})` : head;
  }
}

export function apiKey() {
  return sessionStorage.getItem(STORAGE);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(STORAGE, key);
  else sessionStorage.removeItem(STORAGE);
}

/** Call fn(error) on every 401. */
export function onUnauthorized(fn) {
  unauthorized.push(fn);
}

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** The error a non-2xx response stands for (its body is the API's error, or not). */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not the API's error body
  }
  const error = body && body.error;
  const failure = new ApiError(
    response.status,
    (error && error.code) || "error",
    (error && error.message) || `the server answered HTTP ${response.status}`,
    (error && error.details) || {},
  );
  if (response.status === 401) for (const fn of unauthorized) fn(failure);
  return failure;
}

export async function request(method, path, { query, body, signal } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `the server did not answer (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

export const get = (path, query, signal) => request("GET", path, { query, signal });
export const post = (path, body) => request("POST", path, { body: body ?? {} });
export const jobPath = (id, rest = "") => `v1/jobs/${encodeURIComponent(id)}${rest}`;
