// Drives the Nimbus web console in a real browser (Debian's chromium, headless) against a
// running `nimbus serve` with one ready service; run by crates/nimbus/tests/console.rs, which
// sets the environment below. Exits non-zero, saying what was wrong, on the first failure.
//
//   NIMBUS_API        the API's base URL (http://127.0.0.1:PORT)
//   NIMBUS_TOKEN      the API token
//   NIMBUS_SERVICE    a ready service in namespace default that has served requests
//   NIMBUS_LOG_LINE   a line its instances printed (shown verbatim in the logs tail)
//   NIMBUS_SCREENSHOTS  a directory to write the main pages' screenshots to
//   CHROMIUM          the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const api = env("NIMBUS_API");
const token = env("NIMBUS_TOKEN");
const service = env("NIMBUS_SERVICE");
const logLine = env("NIMBUS_LOG_LINE");
const shots = env("NIMBUS_SCREENSHOTS");
const TIMEOUT = 30_000;
mkdirSync(shots, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log("ok -", what);
}

async function text(page, selector) {
  const node = page.locator(selector);
  await node.waitFor({ timeout: TIMEOUT });
  return (await node.textContent()).trim();
}

/** Wait until `selector`'s text satisfies `ok` (polling), or fail naming `what`. */
async function until(page, selector, ok, what) {
  const deadline = Date.now() + TIMEOUT;
  let last = "";
  while (Date.now() < deadline) {
    last = (await page.locator(selector).first().textContent({ timeout: TIMEOUT }).catch(() => "")) || "";
    if (ok(last.trim())) {
      console.log("ok -", what);
      return last.trim();
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`${what}: ${selector} shows ${JSON.stringify(last)}`);
}

async function shoot(page, name) {
  await page.waitForTimeout(300); // let the last render settle
  await page.screenshot({ path: join(shots, name), fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The refused login's 401 is logged by the browser as a failed load: expected, not an error.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });

  // 1. The pages are public and strict; the login page asks for the token.
  const res = await page.goto(`${api}/console/`);
  check(res.status() === 200, "GET /console/ answers 200 without a token");
  const csp = res.headers()["content-security-policy"] || "";
  check(csp.includes("script-src 'self'") && csp.includes("default-src 'none'"), "the page has a strict Content-Security-Policy");
  await page.locator("#token").waitFor({ timeout: TIMEOUT });
  await shoot(page, "login.png");

  // 2. A wrong token is refused and not kept.
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await until(page, "#login-error", (t) => t.includes("refused"), "a wrong token is refused");
  check(await page.evaluate(() => sessionStorage.getItem("nimbus.token")) === null, "a refused token is not stored");

  // 3. The right token: the services list, live from the watch API.
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  const row = page.locator("tr", { has: page.locator(`a:text-is("${service}")`) });
  await row.waitFor({ timeout: TIMEOUT });
  check(true, `the services list shows ${service}`);
  await until(page, `tr:has(a:text-is("${service}")) [data-ready]`, (t) => t === "True", "the service is Ready=True in the list");
  check(!page.url().includes(token), "the token is not in the URL");
  check((await context.cookies()).length === 0, "the console sets no cookie");
  check(await page.evaluate(() => sessionStorage.getItem("nimbus.token")) === token, "the token is kept in sessionStorage");
  await shoot(page, "services.png");

  // 4. The service: URL, readiness, traffic, revisions with instances, the logs tail.
  await row.locator(`a:text-is("${service}")`).click();
  const url = await until(page, "#service-url", (t) => t.startsWith("http://"), "the service page shows its URL");
  check(url.startsWith(`http://${service}.default.`), `the URL is the service's (${url})`);
  await until(page, "#service-ready", (t) => t === "True", "the service page shows Ready=True");
  await until(page, ".percent", (t) => t === "100%", "the traffic split shows 100%");
  const revision = `${service}-00001`;
  await until(page, `.instances[data-revision="${revision}"]`, (t) => /^[1-9]\d* \/ /.test(t), "the revision has a live instance count of at least one");
  await until(page, "#logs", (t) => t.includes(logLine), "the logs tail shows the instance's line verbatim");
  await until(page, `.requests[data-revision="${revision}"]`, (t) => /^[1-9]/.test(t), "the revisions table counts the requests sent");
  check(await page.locator("#logs *").count() === 0, "log lines are text, never markup");
  check(await page.evaluate(() => window.__pwned === undefined), "a hostile log line ran nothing");
  // This server records Events and meters usage: both sections show real data.
  await until(page, "section:has(h2:text-is('Events')) table", (t) => t.length > 0, "the events section lists the service's events");
  await until(page, "section:has(h2:has-text('Usage')) table", (t) => t.includes(revision), "the usage section meters the revision");
  await shoot(page, "service.png");
  // A change made through the API shows without a reload (the watch stream).
  const patched = await page.request.patch(`${api}/apis/serving.knative.dev/v1/namespaces/default/services/${service}`, {
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/merge-patch+json" },
    data: JSON.stringify({ spec: { traffic: [{ latestRevision: true, percent: 100, tag: "live" }] } }),
  });
  check(patched.ok(), `the traffic patch was accepted (${patched.status()})`);
  await until(page, "section:has(h2:text-is('Traffic')) table", (t) => t.includes("live") && t.includes("100%"), "the new traffic tag shows live, without a reload");

  // 5. The revision: instances, requests and the chart over the last hour.
  await page.locator(`a:text-is("${revision}")`).first().click();
  await until(page, "#revision-instances", (t) => /^[1-9]\d* actual/.test(t), "the revision page shows its instances");
  await until(page, "#revision-requests", (t) => /^[1-9]/.test(t), "the revision page counts the requests sent");
  await until(page, "#chart-ready", (t) => Number(t) >= 1, "the chart's latest sample has a ready instance");
  check(await page.locator(".chart-svg polyline.ready").count() === 1, "the chart is an inline SVG");
  await until(page, "#logs", (t) => t.includes(logLine), "the revision's logs tail shows the line");
  await shoot(page, "revision.png");

  // 6. Usage and cost (a calm notice where the server has no usage API).
  await page.click("a[data-nav=usage]");
  await page.locator("section :is(table, .notice)").first().waitFor({ timeout: TIMEOUT });
  await shoot(page, "usage.png");

  // 7. Logging out forgets the token; the data pages need it again.
  await page.click("#logout");
  await page.locator("#token").waitFor({ timeout: TIMEOUT });
  check(await page.evaluate(() => sessionStorage.getItem("nimbus.token")) === null, "logging out forgets the token");

  // 8. Events and usage are drawn from their API contracts (served by other parts of Nimbus,
  // which this server may lack): answered here by the browser with hostile text in them.
  const hostile = "<img src=x onerror=window.__pwned=2>";
  await page.route("**/api/v1/namespaces/default/events?**", (route) => {
    if (route.request().url().includes("watch=true")) return route.fulfill({ status: 200, body: "" });
    return route.fulfill({ json: {
      kind: "EventList", apiVersion: "v1", metadata: { resourceVersion: "7" },
      items: [{ metadata: { name: "e1", namespace: "default", creationTimestamp: new Date().toISOString() },
        involvedObject: { kind: "Service", name: service }, type: "Warning", reason: "BudgetExceeded",
        message: hostile, count: 3, lastTimestamp: new Date().toISOString() }],
    } });
  });
  await page.route("**/apis/usage.nimbus.dev/v1alpha1/usage?**", (route) => route.fulfill({ json: {
    since: "2026-12-08T00:00:00Z", until: "2026-12-08T01:00:00Z", prices: {},
    rows: [{ namespace: "default", service, revision: `${service}-00001`, requests: 1234, instanceSeconds: 3600,
      vcpuSecondsAllocated: 3600, vcpuSecondsUsed: 12.5, gibSecondsAllocated: 1800, gibSecondsUsed: 90,
      coldStarts: 2, cost: 0.0123 }],
    total: { requests: 1234, instanceSeconds: 3600, vcpuSecondsAllocated: 3600, vcpuSecondsUsed: 12.5,
      gibSecondsAllocated: 1800, gibSecondsUsed: 90, coldStarts: 2, cost: 0.0123 },
  } }));
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.locator(`a:text-is("${service}")`).first().click();
  await until(page, "section:has(h2:text-is('Events')) table", (t) => t.includes("BudgetExceeded") && t.includes(hostile), "events are listed, their messages as text");
  await until(page, "section:has(h2:has-text('Usage')) table", (t) => t.includes("1,234") && t.includes("0.0123") && t.includes("TOTAL"), "usage rows and the total are shown");
  check(await page.locator("main img").count() === 0, "no markup from the API became elements");
  check(await page.evaluate(() => window.__pwned === undefined), "hostile event text ran nothing");
  await page.unrouteAll();

  check(errors.length === 0, `no script errors or CSP violations (${errors.join("; ")})`);
} finally {
  await browser.close();
}
