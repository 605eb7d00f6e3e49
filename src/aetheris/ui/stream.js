// A job's journal, live. EventSource cannot send an Authorization header, so the server-sent
// events of /v1/jobs/{id}/events/stream are read with fetch(): frame by frame, and after a
// dropped connection again from the last event seen (Last-Event-ID), until the job ends.

import { apiUrl, authHeaders, errorOf, jobPath } from "./api.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One frame's fields: id, event, data (lines joined), retry. */
export function parseFrame(frame) {
  const fields = { data: [] };
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") fields.data.push(value);
    else fields[name] = value;
  }
  return { ...fields, data: fields.data.length ? fields.data.join("\n") : undefined };
}

/**
 * Follow the journal of job `id` after event `after`. Handlers: onEvent(event),
 * onEnd({status}), onState("live" | "reconnecting" | "ended"), onError(ApiError): a refusal
 * (401, 403, 404), after which it stops. Returns a function that stops it.
 */
export function follow(id, after, { onEvent, onEnd, onState = () => {}, onError = () => {} }) {
  const controller = new AbortController();
  let last = after;
  let retry = 1000;
  let stopped = false;

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (frame.retry) retry = Number(frame.retry) || retry;
        if (frame.data === undefined) continue;
        if (frame.event === "end") {
          onEnd(JSON.parse(frame.data));
          return true;
        }
        const event = JSON.parse(frame.data);
        last = Number(frame.id ?? event.seq);
        onEvent(event);
      }
    }
  }

  async function run() {
    let first = true;
    while (!stopped) {
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (!first) headers["Last-Event-ID"] = String(last);
        first = false;
        const url = apiUrl(jobPath(id, "/events/stream"), { after: after });
        const response = await fetch(url, { headers, signal: controller.signal });
        if (!response.ok) {
          const error = await errorOf(response);
          if (response.status < 500) {
            onError(error);
            return;
          }
          throw error;
        }
        onState("live");
        if (await read(response.body)) {
          onState("ended");
          return;
        }
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
      }
      onState("reconnecting");
      await sleep(retry);
    }
  }

  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}
