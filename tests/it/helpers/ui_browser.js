// The web UI in a real Chromium (Debian's), driven by playwright-core.
// Run by tests/it/ui.rs with: RELIVE_URL, RELIVE_TOKEN (admin), RELIVE_OUT
// (screenshots), RELIVE_SEED_ID (the seed's incident), RELIVE_APPROVE_KEY (an
// action of it waiting for approval), RELIVE_HOSTILE (a VM name that is
// markup), RELIVE_BIN / RELIVE_DATA / RELIVE_NEW_LOGS (an ingest to run while
// the incident list is open). Exits non-zero with the reason on failure.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("RELIVE_URL");
const OUT = env("RELIVE_OUT");
const TIMEOUT = 15000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "relive-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.RELIVE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
    viewport: { width: 1280, height: 800 },
    timezoneId: "Europe/Berlin",
  });
  const dialogs = [];
  const errors = [];
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  const shot = async (name, full) => {
    await page.screenshot({ path: path.join(OUT, name), fullPage: !!full });
  };
  try {
    // Log in: the list sends a browser to the form and back.
    await page.goto(BASE + "/incidents");
    check(page.url().includes("/login"), "not sent to the login form: " + page.url());
    await shot("login.png");
    await page.fill("#token", env("RELIVE_TOKEN"));
    await Promise.all([page.waitForURL(/\/incidents$/), page.press("#token", "Enter")]);
    await page.waitForSelector("#incident-rows tr[data-id]");
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "relive_session");
    check(session && session.httpOnly && session.sameSite === "Strict", "session cookie: " + JSON.stringify(cookies));
    check(await page.evaluate(() => document.cookie.indexOf("relive_session") < 0), "the session cookie is readable by script");

    // A VM named with markup is text: no element, no dialog.
    const hostile = env("RELIVE_HOSTILE");
    const row = page.locator("#incident-rows tr", { hasText: hostile });
    check(await row.count() >= 1, "the hostile VM's incident is not listed as text");
    check(await page.locator("#incident-rows img").count() === 0, "markup from a log became an element");
    // Times in the browser's zone, UTC on hover.
    await shot("incidents.png", true);

    // Live: a new incident appears without a reload.
    await page.evaluate(() => { window.__relive_marker = 1; });
    await page.waitForFunction(() => document.body.dataset.stream === "open");
    execFileSync(env("RELIVE_BIN"), ["--data", env("RELIVE_DATA"), "ingest", env("RELIVE_NEW_LOGS")], { stdio: "ignore" });
    await page.waitForSelector("#incident-rows tr:has-text('migration-disabled')", { timeout: 20000 });
    check(await page.evaluate(() => window.__relive_marker === 1), "the page reloaded instead of updating");
    check((await page.textContent("#live")).includes("New incident"), "the live region did not announce it");
    await shot("incidents-live.png", true);

    // Search: the histogram, the counts and the results.
    await page.goto(BASE + "/search");
    await page.fill("#q", "event_id:21502");
    await Promise.all([page.waitForURL(/q=event_id/), page.press("#q", "Enter")]);
    await page.waitForSelector("#results tbody tr");
    const bars = await page.locator("#histogram svg a.bar").count();
    check(bars >= 1, "no histogram bars");
    const hosts = await page.locator("#by-host li").count();
    check(hosts >= 2, "no counts by host");
    const summary = await page.textContent("#result-summary");
    const total = Number(summary.trim().split(/\s+/)[0]);
    check(total >= 3, "summary: " + summary);
    // Expand an event: its ECS JSON.
    await page.locator("#results details summary").first().click();
    check((await page.locator("#results details[open] pre.event").first().textContent()).includes("\"event_id\": 21502"), "the expanded event is not the ECS event");
    await shot("search.png", true);
    // A count filters the results; a bar zooms into its time.
    await Promise.all([page.waitForURL(/host/), page.locator("#by-host li a").first().click()]);
    const narrowed = Number((await page.textContent("#result-summary")).trim().split(/\s+/)[0]);
    check(narrowed < total && narrowed >= 1, `a host count did not narrow ${total} to fewer: ${narrowed}`);
    await Promise.all([page.waitForURL(/until=/), page.locator("#histogram svg a.bar").first().click()]);
    check(new URL(page.url()).searchParams.get("since"), "a bar did not zoom in");
    // The query's error points at the problem.
    await page.fill("#q", "event_id:(21502");
    await page.press("#q", "Enter");
    await page.waitForSelector(".query-error");
    check((await page.textContent(".query-error pre.caret")).includes("^"), "no caret under the query");

    // The seed's incident: three lanes with the right events.
    await page.goto(BASE + "/incidents/" + encodeURIComponent(env("RELIVE_SEED_ID")));
    const lane = async (name) => (await page.locator(`table.lanes td[data-lane="${name}"]`).allTextContents()).join("\n");
    const source = await lane("source");
    const destination = await lane("destination");
    const cluster = await lane("cluster");
    check(/21502/.test(source), "source lane without 21502: " + source.slice(0, 300));
    check(/21066/.test(destination) && /1106/.test(destination), "destination lane without 21066 and 1106: " + destination.slice(0, 300));
    check(/cluster\.log/.test(cluster), "cluster lane without the cluster log: " + cluster.slice(0, 300));
    const headers = await page.locator("table.lanes thead th").allTextContents();
    check(headers.some((h) => h.includes("NODE-B")) && headers.some((h) => h.includes("NODE-A")), "lane titles: " + headers);
    // An event expands to its raw form with file and offset.
    await page.locator("table.lanes details.event summary").first().click();
    check(/at byte \d+/.test(await page.locator("table.lanes details.event[open]").first().textContent()), "no file and offset");
    // Times: local in the page, UTC on hover.
    const t = page.locator("dl.facts time").first();
    check((await t.getAttribute("title")).endsWith("UTC"), "no UTC on hover");
    check(await t.evaluate((el) => el.classList.contains("local")), "time not shown in the browser's zone");
    await shot("incident.png", true);

    // Approve: the action's state changes in place.
    const key = env("RELIVE_APPROVE_KEY");
    const action = page.locator(`#plan tr[data-key="${key}"]`);
    check((await action.locator("td.state").textContent()).includes("awaiting approval"), "not waiting");
    await action.locator("button.approve").focus();
    await page.keyboard.press("Enter");
    await page.waitForFunction((k) => {
      const r = document.querySelector(`#plan tr[data-key="${k}"] td.state`);
      return r && r.textContent.includes("approved");
    }, key);
    await page.waitForFunction(() => document.getElementById("audit").textContent.includes("approved"));
    await shot("incident-approved.png", true);

    // A phone-sized screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.waitForSelector("table.lanes");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, "the incident page is wider than a phone: " + overflow + " px");
    await shot("incident-phone.png", true);

    // The migrations page renders its charts.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(BASE + "/migrations");
    await page.waitForSelector("#matrix");
    await shot("migrations.png", true);

    check(dialogs.length === 0, "a dialog opened: " + dialogs.join(", "));
    check(errors.length === 0, "script errors: " + errors.join("\n"));
    console.log(JSON.stringify({ ok: true, total, narrowed, bars }));
  } catch (e) {
    await shot("failure.png", true).catch(() => {});
    console.error(String(e && e.stack || e));
    process.exitCode = 1;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})();
