#!/usr/bin/env node
// Opens the `shoal demo` player page in headless Chromium tabs, samples every second what a
// visitor sees (video time and stalls, the share from peers, peers connected, the status line)
// and takes a screenshot of each tab at the end. Run by crates/cli/tests/browser_demo.rs.
//
//   node web/test/demo-page.mjs <config.json> <result.json>
// config: { chromium, outDir, url, tabs, durationMs, tabGapMs }
// result: { tabs: [{ samples: [{t, currentTime, waiting, share, peers, status, p2pBytes}],
//           stalls, consoleErrors, screenshot }], error }

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { chromiumArgs } from './lib/config.mjs';

const [configPath, resultPath] = process.argv.slice(2);
if (!configPath || !resultPath) {
  process.stderr.write('usage: demo-page.mjs <config.json> <result.json>\n');
  process.exit(1);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const durationMs = Math.min(Number(cfg.durationMs) || 60000, 10 * 60 * 1000);
const tabs = Math.min(Math.max(Number(cfg.tabs) || 1, 1), 8);
const gapMs = Math.min(Number(cfg.tabGapMs) || 0, 60000);

const watchdog = setTimeout(() => {
  process.stderr.write('demo-page: watchdog fired\n');
  process.exit(3);
}, durationMs + tabs * gapMs + 90000);
watchdog.unref();

const result = { tabs: [], error: null };
const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  args: chromiumArgs({ extraChromiumArgs: [] }),
});
try {
  const pages = [];
  for (let i = 0; i < tabs; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const tab = { samples: [], stalls: 0, consoleErrors: [], screenshot: null };
    page.on('console', (m) => {
      if (m.type() === 'error') tab.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => tab.consoleErrors.push(`pageerror: ${e.message}`));
    await page.goto(cfg.url, { waitUntil: 'load', timeout: 30000 });
    // A stall: the video waits for data after it has started playing.
    // A stall: after the first frame, the video waits for data for more than half a second
    // (shorter waits on a loaded 2-core machine are the decoder's, not the network's).
    await page.evaluate(() => {
      const v = document.getElementById('video');
      window.__demoStalls = 0;
      window.__demoWaits = [];
      let started = false;
      let since = null;
      v.addEventListener('playing', () => {
        started = true;
        if (since !== null) {
          const ms = performance.now() - since;
          window.__demoWaits.push(Math.round(ms));
          if (ms > 500) window.__demoStalls++;
          since = null;
        }
      });
      v.addEventListener('waiting', () => {
        if (started && !v.seeking && since === null) since = performance.now();
      });
    });
    pages.push({ page, tab, t0: Date.now() });
    result.tabs.push(tab);
    if (i + 1 < tabs) await new Promise((r) => setTimeout(r, gapMs));
  }
  const end = Date.now() + durationMs;
  // Bounded: one sample per second per tab until the end.
  for (let n = 0; n < durationMs / 1000 + 2 && Date.now() < end; n++) {
    for (const { page, tab, t0 } of pages) {
      const s = await page.evaluate(() => {
        const v = document.getElementById('video');
        const text = (id) => document.getElementById(id)?.textContent ?? '';
        const st = window.shoal?.stats ? window.shoal.stats() : null;
        return {
          currentTime: v ? v.currentTime : 0,
          stalls: window.__demoStalls ?? 0,
          waits: window.__demoWaits ?? [],
          share: text('share'),
          peers: text('peers'),
          status: text('status'),
          p2pBytes: st ? st.p2pBytes : null,
          httpBytes: st ? st.httpBytes : null,
        };
      });
      tab.stalls = s.stalls;
      tab.samples.push({ t: Date.now() - t0, ...s });
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (let i = 0; i < pages.length; i++) {
    const file = path.join(cfg.outDir, `demo-tab${i}.png`);
    await pages[i].page.screenshot({ path: file, fullPage: true });
    pages[i].tab.screenshot = file;
  }
} catch (e) {
  result.error = String(e?.stack ?? e);
} finally {
  await browser.close();
  fs.writeFileSync(resultPath, JSON.stringify(result, null, 1));
}
