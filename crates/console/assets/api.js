// The Nimbus web console: the API client. The token lives in sessionStorage only and goes in
// the Authorization header of every data request, never in a URL or a cookie.
"use strict";

const TOKEN_KEY = "nimbus.token";
const SERVING = "/apis/serving.knative.dev/v1";

// === API ===

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, opts) {
  const headers = { Authorization: "Bearer " + token(), Accept: "application/json" };
  const res = await fetch(path, { headers, cache: "no-store", credentials: "omit", ...(opts || {}) });
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/login?expired";
    throw new ApiError(401, "The server refused the token.");
  }
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try {
      const body = await res.json();
      if (body && body.message) message = body.message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, message);
  }
  return res;
}

async function getJson(path, signal) {
  return (await api(path, { signal })).json();
}

/** Call `onLine` with each line of a streamed answer until it ends or `signal` aborts. */
async function streamLines(path, signal, onLine) {
  const res = await api(path, { signal });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line) onLine(line);
    }
  }
  if (buffer) onLine(buffer);
}

function withQuery(path, params) {
  const q = new URLSearchParams(params).toString();
  return path + (path.includes("?") ? "&" : "?") + q;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

/**
 * Keep `onChange(items)` up to date with a collection, as kubectl does: list, then watch from
 * the list's resourceVersion; when the server ends the watch, watch again from the last version
 * seen (bookmarks included), and list again when that is too old (410) or anything failed.
 * Calls `onError(err)` on a failure (a 404 stops: the server does not serve that collection).
 */
function watchCollection(path, signal, onChange, onError) {
  const items = new Map();
  const key = (o) => o.metadata.namespace + "/" + o.metadata.name;
  const emit = () => onChange([...items.values()].sort((a, b) => key(a).localeCompare(key(b))));
  (async () => {
    let rv = null; // where the watch resumes; null: list first
    while (!signal.aborted) {
      let pause = 2000;
      try {
        if (rv === null) {
          const list = await getJson(path, signal);
          items.clear();
          for (const o of list.items || []) items.set(key(o), o);
          emit();
          rv = (list.metadata && list.metadata.resourceVersion) || "";
        }
        setLive(true);
        const watch = withQuery(path, { watch: "true", allowWatchBookmarks: "true", resourceVersion: rv });
        let expired = false;
        await streamLines(watch, signal, (line) => {
          const ev = JSON.parse(line);
          if (ev.type === "ERROR") { expired = true; return; } // 410 Gone: history too old
          const version = ev.object && ev.object.metadata && ev.object.metadata.resourceVersion;
          if (version) rv = version;
          if (ev.type === "ADDED" || ev.type === "MODIFIED") items.set(key(ev.object), ev.object);
          else if (ev.type === "DELETED") items.delete(key(ev.object));
          else return; // BOOKMARK
          emit();
        });
        // The server closed the watch: resume from the last version seen, or list again.
        if (expired) rv = null;
        pause = 250;
      } catch (err) {
        if (signal.aborted) return;
        rv = null;
        if (err.status !== 404) setLive(false);
        if (onError) onError(err);
        if (err.status === 404 || err.status === 401 || err.status === 403) return;
      }
      await sleep(pause, signal);
    }
  })();
}

/** Call `fn` now and every `ms` until `signal` aborts. */
function every(ms, signal, fn) {
  (async () => {
    while (!signal.aborted) {
      try { await fn(); } catch (_) { /* shown by fn itself */ }
      await sleep(ms, signal);
    }
  })();
}
