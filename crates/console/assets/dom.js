// The Nimbus web console: DOM helpers and formatting. Everything from the API goes on the page
// through these, as text nodes or attribute values: never parsed as HTML.
"use strict";

// === DOM helpers ===

/** An element with attributes (strings; `on*` keys are listeners) and children. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, ...children);
  return node;
}

function append(node, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** A link inside the console (hash route), its path segments encoded. */
function link(text, ...segments) {
  return el("a", { href: "#/" + segments.map(encodeURIComponent).join("/") }, text);
}

/** A link to a URL from the API, only when it is http(s). */
function externalLink(url) {
  if (typeof url !== "string" || !/^https?:\/\//i.test(url)) return url ? String(url) : "—";
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url);
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty || "None.");
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

function section(title, ...body) {
  return el("section", { class: "card" }, el("h2", {}, title), ...body);
}

function notice(text, kind) {
  return el("p", { class: "notice " + (kind || "") }, text);
}

// === formatting ===

function age(timestamp) {
  const t = Date.parse(timestamp);
  if (!Number.isFinite(t)) return "—";
  let s = Math.max(0, Math.floor((Date.now() - t) / 1000));
  if (s < 120) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 120) return m + "m";
  const h = Math.floor(m / 60);
  return h < 48 ? h + "h" : Math.floor(h / 24) + "d";
}

function condition(obj, type) {
  const conds = (obj && obj.status && obj.status.conditions) || [];
  return conds.find((c) => c.type === type) || { status: "Unknown" };
}

function readyBadge(obj) {
  const c = condition(obj, "Ready");
  const cls = c.status === "True" ? "ok" : c.status === "False" ? "bad" : "wait";
  return el("span", { class: "badge " + cls, "data-ready": c.status }, c.status);
}

function trafficText(obj) {
  const traffic = (obj.status && obj.status.traffic) || [];
  if (!traffic.length) return "—";
  return traffic
    .map((t) => (t.revisionName || "latest") + (t.tag ? " (" + t.tag + ")" : "") + " " + (t.percent || 0) + "%")
    .join(", ");
}

function number(n, digits) {
  if (n === undefined || n === null || !Number.isFinite(Number(n))) return "—";
  return Number(n).toLocaleString("en", { maximumFractionDigits: digits === undefined ? 2 : digits });
}

function setLive(on) {
  document.getElementById("live").hidden = !on;
}
