#!/usr/bin/env node
// Opens the pingback dashboard (`/dashboard` of `shoal serve`) in headless Chromium, samples
// what it shows every second (its update counter, the points drawn in each chart, the tiles,
// the stream table, the decision log) and takes screenshots. Every request the page makes is
// recorded, so a test can prove nothing came from anywhere but the dashboard's own origin.
// Run by crates/cli/tests/browser_dashboard.rs.
//
//   node web/test/dashboard.mjs <config.json> <result.json>
// config: { chromium, outDir, url, durationMs, screenshotsAtMs: number[], width?, height? }
// result: { browserVersion, samples: [{t, updates, errors, points: {chartId: n}, tiles: {id: text},
//           streams: [[cells]], decisions: [text]}], requests: [url], failedRequests: [url],
//           consoleErrors: [text], screenshots: [{atMs, path}], error }

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_CHROMIUM_ARGS } from './lib/config.mjs';

const [configPath, resultPath] = process.argv.slice(2);
if (!configPath || !resultPath) {
  process.stderr.write('usage: dashboard.mjs <config.json> <result.json>\n');
  process.exit(1);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const durationMs = Math.min(Number(cfg.durationMs) || 20000, 10 * 60 * 1000);
const shots = (cfg.screenshotsAtMs ?? []).filter((t) => Number.isFinite(t) && t >= 0 && t <= durationMs).sort((a, b) => a - b);

const watchdog = setTimeout(() => {
  process.stderr.write('dashboard: watchdog fired\n');
  process.exit(3);
}, durationMs + 60000);
watchdog.unref();

const result = { browserVersion: null, samples: [], requests: [], failedRequests: [], consoleErrors: [], screenshots: [], error: null };
const browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: BASE_CHROMIUM_ARGS });
result.browserVersion = browser.version();
try {
  const ctx = await browser.newContext({ viewport: { width: cfg.width ?? 1600, height: cfg.height ?? 1300 } });
  const page = await ctx.newPage();
  page.on('request', (r) => result.requests.push(r.url()));
  page.on('requestfailed', (r) => result.failedRequests.push(`${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('console', (m) => {
    if (m.type() === 'error') result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.consoleErrors.push(`pageerror: ${e.message}`));
  const t0 = Date.now();
  await page.goto(cfg.url, { waitUntil: 'load', timeout: 30000 });
  let next = 0;
  // Bounded: one sample per second for durationMs.
  for (let i = 0; i <= Math.ceil(durationMs / 1000); i++) {
    const t = Date.now() - t0;
    while (next < shots.length && shots[next] <= t) {
      const file = path.join(cfg.outDir, `dashboard-${shots[next]}ms.png`);
      await page.screenshot({ path: file, fullPage: true });
      result.screenshots.push({ atMs: shots[next], path: file });
      next++;
    }
    const sample = await page.evaluate(() => {
      const d = window.__dashboard || { updates: 0, errors: 0 };
      const points = {};
      for (const el of document.querySelectorAll('.chart')) points[el.id] = Number(el.dataset.points || 0);
      const tiles = {};
      for (const el of document.querySelectorAll('.tile .v')) tiles[el.id] = el.textContent;
      const streams = [...document.querySelectorAll('#streams tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent));
      const decisions = [...document.querySelectorAll('#decisions li')].map((li) => li.textContent);
      const paths = document.querySelectorAll('.chart svg path').length;
      return { updates: d.updates, errors: d.errors, points, tiles, streams, decisions, paths, status: document.getElementById('status')?.textContent ?? '' };
    });
    result.samples.push({ t, ...sample });
    if (t >= durationMs) break;
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - ((Date.now() - t0) % 1000))));
  }
  for (; next < shots.length; next++) {
    const file = path.join(cfg.outDir, `dashboard-${shots[next]}ms.png`);
    await page.screenshot({ path: file, fullPage: true });
    result.screenshots.push({ atMs: shots[next], path: file });
  }
} catch (e) {
  result.error = String(e?.stack ?? e);
} finally {
  await browser.close();
}
fs.writeFileSync(resultPath, JSON.stringify(result, null, 1));
clearTimeout(watchdog);
