// The search page in Debian's Chromium: for each URL (interleaved, RUNS
// times), navigation start → DOMContentLoaded and → first contentful
// paint, from the page's own Performance entries. Prints JSON:
// [{dcl: [ms...], fcp: [ms...]}, ...] in the order of RELIVE_URLS.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

(async () => {
  const urls = JSON.parse(process.env.RELIVE_URLS);
  const runs = Number(process.env.RELIVE_RUNS || 20);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "relive-bench-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
    viewport: { width: 1280, height: 800 },
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    await page.goto(process.env.RELIVE_URL + "/login");
    await page.fill("#token", process.env.RELIVE_TOKEN);
    await Promise.all([page.waitForNavigation(), page.press("#token", "Enter")]);
    const out = urls.map(() => ({ dcl: [], fcp: [] }));
    // One warm-up navigation each (the script and stylesheet cached).
    for (const u of urls) await page.goto(u, { waitUntil: "load" });
    for (let r = 0; r < runs; r++) {
      for (let k = 0; k < urls.length; k++) {
        await page.goto(urls[k], { waitUntil: "load" });
        await page.waitForSelector("#results");
        // The paint entry can be reported a little after load: wait for it
        // (at most 2 s; a run without one is reported as null).
        const t = await page.evaluate(() => new Promise((resolve) => {
          const nav = performance.getEntriesByType("navigation")[0];
          const done = (fcp) => resolve({ dcl: nav.domContentLoadedEventEnd, fcp });
          const seen = performance.getEntriesByName("first-contentful-paint")[0];
          if (seen) return done(seen.startTime);
          new PerformanceObserver((list) => {
            const e = list.getEntriesByName("first-contentful-paint")[0];
            if (e) done(e.startTime);
          }).observe({ type: "paint", buffered: true });
          setTimeout(() => done(null), 2000);
        }));
        out[k].dcl.push(t.dcl);
        out[k].fcp.push(t.fcp);
      }
    }
    console.log(JSON.stringify(out));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
