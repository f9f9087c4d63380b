// The Nimbus web console. Hand-written, no build step, no dependencies.
//
// Security rules every script of the console keeps (a unit test in assets.rs checks the first):
// - everything that comes from the API is put on the page with textContent or attribute
//   setters, never parsed as HTML;
// - the token lives in sessionStorage only and is sent in the Authorization header of every
//   data request; it never goes into a URL or a cookie;
// - links built from API data only ever use http(s) URLs.
//
// This file holds the pages and the routing; dom.js and api.js (loaded before it) the helpers.
"use strict";

const HOUR_MS = 3600 * 1000;

// === views ===

function loginView(app, _signal, params) {
  const input = el("input", {
    id: "token", type: "password", autocomplete: "off", spellcheck: "false",
    placeholder: "the API token", required: true,
  });
  const error = el("p", { id: "login-error", class: "notice bad", role: "alert", hidden: true });
  if (params.has("expired")) {
    error.hidden = false;
    error.textContent = "The server refused the token. Log in again.";
  }
  const submit = async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    error.hidden = true;
    try {
      const res = await fetch(SERVING + "/services?limit=1", {
        headers: { Authorization: "Bearer " + value }, cache: "no-store", credentials: "omit",
      });
      if (res.status === 401) throw new Error("That token was refused. Copy it again from admin.token in the server's data directory.");
      if (!res.ok) throw new Error("The server answered " + res.status + ".");
      sessionStorage.setItem(TOKEN_KEY, value);
      location.hash = "#/services";
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  };
  append(app, el("form", { class: "card login", onsubmit: submit },
    el("h1", {}, "Log in to Nimbus"),
    el("label", { for: "token" }, "API token"),
    input,
    el("p", { class: "muted" },
      "The token is in admin.token in the server's data directory (nimbus serve prints where) ",
      "and in the kubeconfig nimbus kubeconfig writes. It is kept in this tab only, never in a cookie."),
    error,
    el("button", { type: "submit" }, "Log in")));
  input.focus();
}

function servicesView(app, signal) {
  const body = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  append(app, el("h1", {}, "Services"), section("Services (ksvc)", body));
  watchCollection(SERVING + "/services", signal, (items) => {
    clear(body).appendChild(table(
      ["NAMESPACE", "NAME", "URL", "READY", "REASON", "TRAFFIC", "LATEST READY", "AGE"],
      items.map((s) => [
        s.metadata.namespace,
        link(s.metadata.name, "services", s.metadata.namespace, s.metadata.name),
        externalLink(s.status && s.status.url),
        readyBadge(s),
        condition(s, "Ready").reason || "",
        trafficText(s),
        (s.status && s.status.latestReadyRevisionName) || "—",
        age(s.metadata.creationTimestamp),
      ]),
      "No services yet. Deploy one with nimbus deploy NAME --command PROGRAM, or nimbus apply -f service.yaml."));
  }, (err) => clear(body).appendChild(notice(err.message, "bad")));
}

function conditionsTable(obj) {
  const conds = (obj.status && obj.status.conditions) || [];
  return table(["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"], conds.map((c) => [
    c.type, el("span", { class: "badge " + (c.status === "True" ? "ok" : c.status === "False" ? "bad" : "wait") }, c.status),
    c.reason || "", c.message || "", age(c.lastTransitionTime),
  ]));
}

function serviceView(app, signal, _params, ns, name) {
  const summary = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const traffic = el("div");
  const conditions = el("div");
  const revisions = el("div");
  const logs = el("div");
  const events = el("div");
  const usage = el("div");
  append(app,
    el("p", { class: "crumbs" }, link("Services", "services"), " / ", ns, " / ", name),
    el("h1", {}, name),
    section("Summary", summary),
    el("div", { class: "grid" }, section("Traffic", traffic), section("Conditions", conditions)),
    section("Revisions", revisions),
    section("Logs", logs),
    section("Events", events),
    section("Usage and cost (last hour)", usage));
  const path = SERVING + "/namespaces/" + encodeURIComponent(ns) + "/services";
  watchCollection(withQuery(path, { fieldSelector: "metadata.name=" + name }), signal, (items) => {
    const s = items[0];
    if (!s) {
      clear(summary).appendChild(notice("No service " + name + " in namespace " + ns + ".", "bad"));
      return;
    }
    clear(summary).appendChild(el("dl", { class: "facts" },
      el("dt", {}, "URL"), el("dd", { id: "service-url" }, externalLink(s.status && s.status.url)),
      el("dt", {}, "Ready"), el("dd", { id: "service-ready" }, readyBadge(s)),
      el("dt", {}, "Latest created"), el("dd", {}, (s.status && s.status.latestCreatedRevisionName) || "—"),
      el("dt", {}, "Latest ready"), el("dd", {}, (s.status && s.status.latestReadyRevisionName) || "—"),
      el("dt", {}, "Age"), el("dd", {}, age(s.metadata.creationTimestamp))));
    const rows = ((s.status && s.status.traffic) || []).map((t) => [
      t.revisionName ? link(t.revisionName, "revisions", ns, t.revisionName) : "—",
      t.tag || "", el("span", { class: "percent" }, (t.percent || 0) + "%"),
      t.latestRevision ? "yes" : "no", t.url ? externalLink(t.url) : "",
    ]);
    clear(traffic).appendChild(table(["REVISION", "TAG", "PERCENT", "LATEST", "URL"], rows, "No traffic yet."));
    clear(conditions).appendChild(conditionsTable(s));
  }, (err) => clear(summary).appendChild(notice(err.message, "bad")));
  revisionsTable(revisions, signal, ns, name);
  logTail(logs, signal, SERVING + "/namespaces/" + encodeURIComponent(ns) + "/services/" + encodeURIComponent(name) + "/log");
  eventsList(events, signal, ns, name);
  usageTable(usage, signal, { namespace: ns, service: name, since: "1h" });
}

function revisionsTable(target, signal, ns, service) {
  const path = withQuery(SERVING + "/namespaces/" + encodeURIComponent(ns) + "/revisions",
    { labelSelector: "serving.knative.dev/service=" + service });
  let latest = [];
  const counters = new Map();
  const render = () => {
    clear(target).appendChild(table(
      ["NAME", "READY", "INSTANCES (ACTUAL / DESIRED)", "REQUESTS", "COLD STARTS", "REASON", "AGE"],
      latest.map((r) => {
        const c = counters.get(r.metadata.name) || {};
        return [
          link(r.metadata.name, "revisions", ns, r.metadata.name),
          readyBadge(r),
          el("span", { class: "instances", "data-revision": r.metadata.name },
            number(r.status && r.status.actualReplicas, 0) + " / " + number(r.status && r.status.desiredReplicas, 0)),
          el("span", { class: "requests", "data-revision": r.metadata.name }, number(c.requests, 0)),
          number(c.coldStarts, 0),
          condition(r, "Ready").reason || "",
          age(r.metadata.creationTimestamp),
        ];
      }),
      "No revisions."));
  };
  const refresh = async () => {
    for (const r of latest) {
      const h = await history(ns, r.metadata.name, signal);
      const last = h.samples[h.samples.length - 1];
      if (last) counters.set(r.metadata.name, last);
    }
    render();
  };
  let first = true;
  watchCollection(path, signal, (items) => {
    latest = items.sort((a, b) => b.metadata.name.localeCompare(a.metadata.name));
    render();
    if (first) {
      first = false;
      every(5000, signal, refresh);
    }
  }, (err) => clear(target).appendChild(notice(err.message, "bad")));
}

async function history(ns, revision, signal) {
  return getJson("/apis/nimbus.dev/v1/namespaces/" + encodeURIComponent(ns) + "/revisions/" +
    encodeURIComponent(revision) + "/history", signal);
}

function logTail(target, signal, path) {
  const pre = el("pre", { class: "logs", id: "logs", "aria-live": "polite" });
  const status = el("p", { class: "muted" }, "Following the last 100 lines…");
  append(target, status, pre);
  const lines = [];
  let pending = false;
  const flush = () => {
    pending = false;
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.join("\n");
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  (async () => {
    while (!signal.aborted) {
      try {
        lines.length = 0;
        await streamLines(withQuery(path, { follow: "true", tailLines: "100", timestamps: "true" }), signal, (line) => {
          lines.push(line);
          if (lines.length > 500) lines.shift();
          if (!pending) { pending = true; requestAnimationFrame(flush); }
        });
      } catch (err) {
        if (signal.aborted) return;
        status.textContent = "Logs: " + err.message;
        if (err.status === 404) return;
      }
      await sleep(2000, signal);
    }
  })();
}

function eventsList(target, signal, ns, name) {
  const path = withQuery("/api/v1/namespaces/" + encodeURIComponent(ns) + "/events",
    { fieldSelector: "involvedObject.name=" + name });
  target.appendChild(el("p", { class: "muted" }, "Loading…"));
  watchCollection(path, signal, (items) => {
    const time = (e) => e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp;
    items.sort((a, b) => String(time(b)).localeCompare(String(time(a))));
    clear(target).appendChild(table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"], items.map((e) => [
      age(time(e)),
      el("span", { class: "badge " + (e.type === "Warning" ? "bad" : "ok") }, e.type || "Normal"),
      e.reason || "",
      ((e.involvedObject && e.involvedObject.kind) || "").toLowerCase() + "/" + ((e.involvedObject && e.involvedObject.name) || ""),
      number(e.count || 1, 0),
      e.message || "",
    ]), "No events."));
  }, (err) => {
    clear(target).appendChild(err.status === 404
      ? notice("Events are not available on this server.", "calm")
      : notice(err.message, "bad"));
  });
}

function usageTable(target, signal, query) {
  target.appendChild(el("p", { class: "muted" }, "Loading…"));
  every(30000, signal, async () => {
    let u;
    try {
      u = await getJson(withQuery("/apis/usage.nimbus.dev/v1alpha1/usage", query), signal);
    } catch (err) {
      clear(target).appendChild(err.status === 404
        ? notice("Usage and cost are not available on this server.", "calm")
        : notice(err.message, "bad"));
      return;
    }
    const row = (r, label) => [
      label || r.service || "", label ? "" : (r.revision || ""), number(r.requests, 0), number(r.instanceSeconds, 1),
      number(r.vcpuSecondsAllocated, 1) + " / " + number(r.vcpuSecondsUsed, 1),
      number(r.gibSecondsAllocated, 1) + " / " + number(r.gibSecondsUsed, 1),
      number(r.coldStarts, 0), number(r.cost, 4),
    ];
    const rows = (u.rows || []).map((r) => row(r));
    if (u.total) rows.push(row(u.total, "TOTAL"));
    clear(target).append(
      el("p", { class: "muted" }, "From ", String(u.since || ""), " to ", String(u.until || ""), "."),
      table(["SERVICE", "REVISION", "REQUESTS", "INSTANCE-S", "VCPU-S (ALLOC / USED)", "GIB-S (ALLOC / USED)", "COLD STARTS", "COST"],
        rows, "No usage in this period."));
  });
}

function revisionView(app, signal, _params, ns, name) {
  const summary = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const chart = el("div", { class: "chart" });
  const figures = el("div");
  const conditions = el("div");
  const logs = el("div");
  const events = el("div");
  let service = null;
  const crumbs = el("p", { class: "crumbs" }, link("Services", "services"), " / ", ns, " / ", name);
  append(app, crumbs, el("h1", {}, name),
    el("div", { class: "grid" }, section("Summary", summary), section("Requests", figures)),
    section("Instances over the last hour", chart),
    section("Conditions", conditions),
    section("Logs", logs),
    section("Events", events));
  const path = SERVING + "/namespaces/" + encodeURIComponent(ns) + "/revisions";
  watchCollection(withQuery(path, { fieldSelector: "metadata.name=" + name }), signal, (items) => {
    const r = items[0];
    if (!r) {
      clear(summary).appendChild(notice("No revision " + name + " in namespace " + ns + ".", "bad"));
      return;
    }
    const labels = r.metadata.labels || {};
    if (labels["serving.knative.dev/service"] && !service) {
      service = labels["serving.knative.dev/service"];
      clear(crumbs).append(link("Services", "services"), " / ", ns, " / ",
        link(service, "services", ns, service), " / ", name);
    }
    const container = ((r.spec && r.spec.containers) || [])[0] || {};
    clear(summary).appendChild(el("dl", { class: "facts" },
      el("dt", {}, "Ready"), el("dd", { id: "revision-ready" }, readyBadge(r)),
      el("dt", {}, "Instances"), el("dd", { id: "revision-instances" },
        number(r.status && r.status.actualReplicas, 0) + " actual / " + number(r.status && r.status.desiredReplicas, 0) + " desired"),
      el("dt", {}, container.image ? "Image" : "Command"), el("dd", {}, container.image || (container.command || []).join(" ") || "—"),
      el("dt", {}, "Concurrency"), el("dd", {}, r.spec && r.spec.containerConcurrency ? String(r.spec.containerConcurrency) : "unlimited"),
      el("dt", {}, "Routing"), el("dd", {}, labels["serving.knative.dev/routingState"] || "—"),
      el("dt", {}, "Age"), el("dd", {}, age(r.metadata.creationTimestamp))));
    clear(conditions).appendChild(conditionsTable(r));
  }, (err) => clear(summary).appendChild(notice(err.message, "bad")));
  every(5000, signal, async () => {
    try {
      const h = await history(ns, name, signal);
      clear(chart).appendChild(instancesChart(h.samples));
      clear(figures).appendChild(requestFigures(h.samples, h.intervalSeconds));
    } catch (err) {
      clear(chart).appendChild(notice(err.message, "bad"));
    }
  });
  logTail(logs, signal, SERVING + "/namespaces/" + encodeURIComponent(ns) + "/revisions/" + encodeURIComponent(name) + "/log");
  eventsList(events, signal, ns, name);
}

function requestFigures(samples, intervalSeconds) {
  const last = samples[samples.length - 1];
  if (!last) return el("p", { class: "muted" }, "No samples yet: the revision has not been routed.");
  const minuteAgo = samples.find((s) => s.time >= last.time - 60000) || last;
  const span = (last.time - minuteAgo.time) / 1000;
  const rate = span > 0 ? (last.requests - minuteAgo.requests) / span : 0;
  // Percentiles are of one sampling interval: show the latest interval that had requests.
  const measured = samples.slice().reverse().find((s) => s.latency);
  const lat = measured ? measured.latency : null;
  const when = measured && measured !== last
    ? " (" + Math.round((last.time - measured.time) / 1000) + " s ago)" : "";
  return el("dl", { class: "facts" },
    el("dt", {}, "Requests"), el("dd", { id: "revision-requests" }, number(last.requests, 0) + " since the server started"),
    el("dt", {}, "Rate"), el("dd", {}, number(rate, 2) + " / s (last minute)"),
    el("dt", {}, "In flight"), el("dd", {}, number(last.inFlight, 0)),
    el("dt", {}, "Cold starts"), el("dd", { id: "revision-cold-starts" }, number(last.coldStarts, 0)),
    el("dt", {}, "Latency p50 / p95 / p99"), el("dd", {}, lat
      ? number(lat.p50, 1) + " / " + number(lat.p95, 1) + " / " + number(lat.p99, 1) + " ms" + when
      : "no requests in the last hour"),
    el("dt", {}, "Sampled every"), el("dd", {}, number(intervalSeconds, 0) + " s"));
}

/** Ready and desired instances over the last hour, as an inline SVG step chart. */
function instancesChart(samples) {
  const W = 720, H = 180, L = 36, R = 10, T = 10, B = 24;
  const now = samples.length ? samples[samples.length - 1].time : Date.now();
  const start = now - HOUR_MS;
  const max = Math.max(1, ...samples.map((s) => Math.max(s.ready, s.desired || 0)));
  const x = (t) => L + ((t - start) / HOUR_MS) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": "instances over the last hour" });
  for (let v = 0; v <= max; v += Math.max(1, Math.ceil(max / 4))) {
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = String(v);
    root.appendChild(label);
  }
  for (const [t, text] of [[start, "−60 min"], [start + HOUR_MS / 2, "−30 min"], [now, "now"]]) {
    const label = svg("text", { x: x(t), y: H - 6, class: "axis", "text-anchor": t === start ? "start" : t === now ? "end" : "middle" });
    label.textContent = text;
    root.appendChild(label);
  }
  const steps = (pick) => samples.map((s, i) => {
    const prev = i > 0 ? pick(samples[i - 1]) : pick(s);
    return `${x(s.time).toFixed(1)},${y(prev).toFixed(1)} ${x(s.time).toFixed(1)},${y(pick(s)).toFixed(1)}`;
  }).join(" ");
  if (samples.length) {
    root.appendChild(svg("polyline", { points: steps((s) => s.desired || 0), class: "series desired" }));
    root.appendChild(svg("polyline", { points: steps((s) => s.ready), class: "series ready" }));
    const end = samples[samples.length - 1];
    root.appendChild(svg("circle", { cx: x(end.time), cy: y(end.ready), r: 3.5, class: "dot ready" }));
  }
  const last = samples[samples.length - 1];
  return el("div", {}, root, el("p", { class: "legend" },
    el("span", { class: "key ready" }), "ready ", el("strong", { id: "chart-ready" }, last ? String(last.ready) : "0"),
    "   ", el("span", { class: "key desired" }), "desired ", el("strong", {}, last && last.desired !== null ? String(last.desired) : "—"),
    samples.length ? "" : "   (no samples yet)"));
}

function usageView(app, signal, params) {
  const ns = params.get("namespace") || "default";
  const since = params.get("since") || "24h";
  const body = el("div");
  const form = el("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ namespace: form.elements.namespace.value, since: form.elements.since.value });
    location.hash = "#/usage?" + q.toString();
  } },
  el("label", {}, "Namespace ", el("input", { name: "namespace", value: ns, size: 12 })),
  el("label", {}, "Since ", el("select", { name: "since" },
    ["1h", "24h", "168h", "720h"].map((s) => el("option", { value: s, selected: s === since }, s)))),
  el("button", { type: "submit" }, "Show"));
  append(app, el("h1", {}, "Usage and cost"), section("Usage", form, body));
  usageTable(body, signal, { namespace: ns, since });
}

// === routing ===

const routes = [
  [/^login$/, loginView, true],
  [/^services$/, servicesView],
  [/^services\/([^/]+)\/([^/]+)$/, serviceView],
  [/^revisions\/([^/]+)\/([^/]+)$/, revisionView],
  [/^usage$/, usageView],
];

let current = null;

function render() {
  if (current) current.abort();
  current = new AbortController();
  const app = clear(document.getElementById("app"));
  const [route, query] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query || "");
  const loggedIn = Boolean(token());
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  setLive(false);
  for (const [pattern, view, isPublic] of routes) {
    const m = pattern.exec(route);
    if (!m) continue;
    if (!isPublic && !loggedIn) {
      location.hash = "#/login";
      return;
    }
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", route.startsWith(a.dataset.nav));
    }
    let args;
    try {
      args = m.slice(1).map(decodeURIComponent);
    } catch (_) {
      break;
    }
    view(app, current.signal, params, ...args);
    return;
  }
  location.hash = loggedIn ? "#/services" : "#/login";
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/login";
  });
  render();
});
