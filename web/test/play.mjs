#!/usr/bin/env node
// Headless Chromium viewers of one live HLS stream, for Shoal's end-to-end tests.
//
//   node web/test/play.mjs <config.json> <result.json>
//
// Each viewer is a page in its own browser context that plays the stream with hls.js
// (player.html + player.js, served by request interception under <pageOrigin>/__shoal_test/,
// so nothing comes from the internet). Viewers open, close and take screenshots on a schedule.
// Config fields: see lib/config.mjs (normalizeConfig); the Rust side is
// shoal_testkit::browser::PlayConfig. The result is one JSON object:
//   { browserVersion, runStartEpochMs, durationMs, viewers: [ {id, openedAtMs, closedAtMs,
//     startupMs, firstPlayingAtMs, stalls, bufferStalledErrors, hlsErrors, errors, samples,
//     fragCount, fragBytes, levels, http, screenshots, extra, ...} ] }
// Run it inside the test's network namespace (shoal_testkit does).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { chromiumArgs, mimeType, normalizeConfig, planSchedule, resolveUnder } from './lib/config.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '..');
const TEST_PREFIX = '/__shoal_test/';

function log(msg) {
  process.stderr.write(`[play ${new Date().toISOString()}] ${msg}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function builtinAssets() {
  return {
    [`${TEST_PREFIX}player.html`]: path.join(here, 'player.html'),
    [`${TEST_PREFIX}player.js`]: path.join(here, 'player.js'),
    [`${TEST_PREFIX}hls.js`]: path.join(webDir, 'node_modules/hls.js/dist/hls.min.js'),
  };
}

/** Serves the player and configured directories under <pageOrigin>/__shoal_test/. */
async function serveTestAsset(route, cfg, assets) {
  const url = new URL(route.request().url());
  let file = assets[url.pathname] ?? null;
  for (const s of cfg.serve) {
    if (file) break;
    file = resolveUnder(s.prefix, s.dir, url.pathname);
  }
  if (!file) return route.fulfill({ status: 404, body: `not a test asset: ${url.pathname}` });
  try {
    const body = await fs.promises.readFile(file);
    return route.fulfill({
      status: 200,
      body,
      headers: { 'content-type': mimeType(file), 'cache-control': 'no-store' },
    });
  } catch (e) {
    return route.fulfill({ status: 404, body: `cannot read ${file}: ${e.message}` });
  }
}

class Viewer {
  constructor(spec, cfg, runStartEpochMs) {
    this.spec = spec;
    this.cfg = cfg;
    this.runStartEpochMs = runStartEpochMs;
    this.result = {
      id: spec.id,
      openedAtMs: null,
      closedAtMs: null,
      screenshots: [],
      http: { requests: 0, bytes: 0, playlistRequests: 0, mediaRequests: 0, mediaBytes: 0, failed: [] },
      pageErrors: [],
    };
    this.consoleLog = path.join(cfg.outDir, `${spec.id}.console.log`);
    this.context = null;
    this.page = null;
    this.opening = null;
  }

  now() {
    return Date.now() - this.runStartEpochMs;
  }

  open(browser) {
    this.opening = this.#open(browser).catch((e) => {
      this.result.pageErrors.push(`opening: ${e.message}`);
      log(`viewer ${this.spec.id}: opening failed: ${e.stack}`);
    });
    return this.opening;
  }

  async #open(browser) {
    const { cfg, spec } = this;
    this.result.openedAtMs = this.now();
    this.context = await browser.newContext({ viewport: cfg.viewport });
    const assets = builtinAssets();
    await this.context.route(`${cfg.pageOrigin}${TEST_PREFIX}**`, (route) => serveTestAsset(route, cfg, assets));
    this.context.on('requestfinished', (req) => this.#countRequest(req));
    this.context.on('requestfailed', (req) => {
      const h = this.result.http;
      if (h.failed.length < 200) h.failed.push({ atMs: this.now(), url: req.url(), error: req.failure()?.errorText ?? '?' });
    });
    const page = await this.context.newPage();
    this.page = page;
    page.on('console', (m) => {
      fs.appendFileSync(this.consoleLog, `${this.now()} ${m.type()}: ${m.text()}\n`);
    });
    page.on('pageerror', (e) => {
      if (this.result.pageErrors.length < 200) this.result.pageErrors.push(`${this.now()} ${e.message}`);
    });
    const pageCfg = {
      url: spec.url,
      runStartEpochMs: this.runStartEpochMs,
      sampleIntervalMs: cfg.sampleIntervalMs,
      hlsConfig: { ...cfg.hlsConfig, ...spec.hlsConfig },
      viewerId: spec.id,
    };
    await page.addInitScript((c) => {
      window.__shoalTestConfig = c;
    }, pageCfg);
    for (const script of [...cfg.initScripts, ...spec.initScripts]) {
      await page.addInitScript({ path: script });
    }
    await page.goto(`${cfg.pageOrigin}${TEST_PREFIX}player.html?viewer=${encodeURIComponent(spec.id)}`, {
      timeout: 20000,
    });
  }

  async #countRequest(req) {
    const url = new URL(req.url());
    if (url.pathname.startsWith(TEST_PREFIX)) return;
    const sizes = await req.sizes().catch(() => null);
    if (!sizes) return;
    const bytes = sizes.responseBodySize + sizes.responseHeadersSize;
    const h = this.result.http;
    h.requests += 1;
    h.bytes += bytes;
    if (url.pathname.endsWith('.m3u8')) {
      h.playlistRequests += 1;
    } else {
      h.mediaRequests += 1;
      h.mediaBytes += sizes.responseBodySize;
    }
  }

  async screenshot(atMs) {
    await this.opening;
    if (!this.page) return;
    const file = path.join(this.cfg.outDir, `${this.spec.id}-${atMs}ms.png`);
    try {
      await this.page.screenshot({ path: file, timeout: 10000 });
      const frame = await this.page.evaluate(() => window.__shoalTest?.frameStats?.() ?? null).catch(() => null);
      this.result.screenshots.push({ path: file, atMs: this.now(), frame });
    } catch (e) {
      this.result.pageErrors.push(`screenshot at ${atMs} ms: ${e.message}`);
    }
  }

  async close() {
    await this.opening;
    if (!this.context || this.result.closedAtMs !== null) return;
    try {
      const snap = await this.page.evaluate(() => (window.__shoalTest ? window.__shoalTest.snapshot() : null));
      if (snap) Object.assign(this.result, snap);
      else this.result.pageErrors.push('player did not start (no window.__shoalTest)');
    } catch (e) {
      this.result.pageErrors.push(`reading results: ${e.message}`);
    }
    this.result.closedAtMs = this.now();
    await this.context.close().catch(() => {});
  }
}

async function main() {
  const [configPath, resultPath] = process.argv.slice(2);
  if (!configPath || !resultPath) throw new Error('usage: play.mjs <config.json> <result.json>');
  const cfg = normalizeConfig(JSON.parse(fs.readFileSync(configPath, 'utf8')));
  fs.mkdirSync(cfg.outDir, { recursive: true });
  for (const f of Object.values(builtinAssets())) {
    if (!fs.existsSync(f)) throw new Error(`missing ${f}: run scripts/install-deps.sh (npm ci in web/)`);
  }

  // Hard stop: a hung browser must not hang the test beyond its own timeout.
  const watchdog = setTimeout(() => {
    log('watchdog: run exceeded durationMs + 90 s, exiting');
    process.exit(3);
  }, cfg.durationMs + 90000);
  watchdog.unref();

  // launch() gives every run a fresh temporary profile (--user-data-dir) and deletes it on close.
  log(`launching ${cfg.chromium}`);
  const b = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    args: chromiumArgs(cfg),
  });
  const browserVersion = b.version();
  const runStartEpochMs = Date.now();
  const viewers = new Map(cfg.viewers.map((v) => [v.id, new Viewer(v, cfg, runStartEpochMs)]));
  const pending = [];
  try {
    for (const ev of planSchedule(cfg.viewers, cfg.durationMs)) {
      await sleep(runStartEpochMs + ev.atMs - Date.now());
      const v = viewers.get(ev.id);
      log(`t=${Date.now() - runStartEpochMs}ms ${ev.kind} ${ev.id}`);
      // Opening and screenshots overlap later actions; closes are awaited in order.
      if (ev.kind === 'open') pending.push(v.open(b));
      else if (ev.kind === 'screenshot') pending.push(v.screenshot(ev.atMs));
      else await v.close();
    }
    await sleep(runStartEpochMs + cfg.durationMs - Date.now());
    await Promise.all(pending);
    await Promise.all([...viewers.values()].filter((v) => v.opening).map((v) => v.close()));
  } finally {
    await b.close().catch(() => {});
  }
  const result = {
    browserVersion,
    runStartEpochMs,
    durationMs: Date.now() - runStartEpochMs,
    viewers: [...viewers.values()].map((v) => v.result),
  };
  fs.writeFileSync(resultPath, JSON.stringify(result, null, 1));
  log(`wrote ${resultPath}`);
}

main().catch((e) => {
  log(`failed: ${e.stack || e}`);
  process.exit(1);
});
