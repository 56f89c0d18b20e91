// Validation and scheduling for play.mjs, kept pure so node's test runner covers them.

export const BASE_CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

const MAX_DURATION_MS = 30 * 60 * 1000;
const MAX_VIEWERS = 64;
const ID_RE = /^[A-Za-z0-9_-]{1,32}$/;

/** Chromium flags for a run: the base set, mDNS host hiding off unless asked for, extras. */
export function chromiumArgs(cfg) {
  const args = [...BASE_CHROMIUM_ARGS];
  if (!cfg.hideLocalIpsWithMdns) args.push('--disable-features=WebRtcHideLocalIpsWithMdns');
  return args.concat(cfg.extraChromiumArgs);
}

function fail(msg) {
  throw new Error(`play config: ${msg}`);
}

function nonNegInt(v, what) {
  if (!Number.isInteger(v) || v < 0) fail(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
}

function stringList(v, what) {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) fail(`${what} must be a list of strings`);
  return v;
}

/** Fills defaults and rejects what the runner cannot do, with a message naming the field. */
export function normalizeConfig(raw) {
  if (raw === null || typeof raw !== 'object') fail('not an object');
  if (typeof raw.url !== 'string') fail('url (the master playlist) is required');
  let url;
  try {
    url = new URL(raw.url);
  } catch {
    fail(`url ${JSON.stringify(raw.url)} is not a URL`);
  }
  const durationMs = nonNegInt(raw.durationMs, 'durationMs');
  if (durationMs === 0 || durationMs > MAX_DURATION_MS) fail(`durationMs must be in 1..=${MAX_DURATION_MS}`);
  if (typeof raw.outDir !== 'string' || raw.outDir === '') fail('outDir is required');

  let viewers = raw.viewers ?? 1;
  if (typeof viewers === 'number') {
    nonNegInt(viewers, 'viewers');
    viewers = Array.from({ length: viewers }, (_, i) => ({ id: `v${i}` }));
  }
  if (!Array.isArray(viewers) || viewers.length === 0) fail('viewers must be a positive count or a non-empty list');
  if (viewers.length > MAX_VIEWERS) fail(`at most ${MAX_VIEWERS} viewers`);
  const seen = new Set();
  viewers = viewers.map((v, i) => {
    const id = v.id ?? `v${i}`;
    if (typeof id !== 'string' || !ID_RE.test(id)) fail(`viewer id ${JSON.stringify(id)}: use [A-Za-z0-9_-]{1,32}`);
    if (seen.has(id)) fail(`viewer id ${id} used twice`);
    seen.add(id);
    const openAtMs = nonNegInt(v.openAtMs ?? 0, `viewer ${id} openAtMs`);
    const closeAtMs = v.closeAtMs === undefined || v.closeAtMs === null ? null : nonNegInt(v.closeAtMs, `viewer ${id} closeAtMs`);
    if (closeAtMs !== null && closeAtMs <= openAtMs) fail(`viewer ${id} closes before it opens`);
    const screenshotsAtMs = (v.screenshotsAtMs ?? []).map((t) => nonNegInt(t, `viewer ${id} screenshotsAtMs`));
    return {
      id,
      openAtMs,
      closeAtMs,
      url: v.url ?? url.href,
      initScripts: stringList(v.initScripts, `viewer ${id} initScripts`),
      screenshotsAtMs,
      hlsConfig: v.hlsConfig ?? {},
    };
  });

  const serve = (raw.serve ?? []).map((s) => {
    if (typeof s?.prefix !== 'string' || !s.prefix.startsWith('/__shoal_test/') || !s.prefix.endsWith('/')) {
      fail('serve[].prefix must start with /__shoal_test/ and end with /');
    }
    if (typeof s.dir !== 'string' || s.dir === '') fail('serve[].dir is required');
    return { prefix: s.prefix, dir: s.dir };
  });

  const sampleIntervalMs = nonNegInt(raw.sampleIntervalMs ?? 500, 'sampleIntervalMs');
  if (sampleIntervalMs < 50) fail('sampleIntervalMs must be at least 50');

  return {
    url: url.href,
    pageOrigin: raw.pageOrigin ?? url.origin,
    durationMs,
    outDir: raw.outDir,
    chromium: raw.chromium ?? '/usr/bin/chromium',
    viewers,
    initScripts: stringList(raw.initScripts, 'initScripts'),
    serve,
    hlsConfig: raw.hlsConfig ?? {},
    sampleIntervalMs,
    hideLocalIpsWithMdns: raw.hideLocalIpsWithMdns === true,
    extraChromiumArgs: stringList(raw.extraChromiumArgs, 'extraChromiumArgs'),
    viewport: raw.viewport ?? { width: 960, height: 540 },
  };
}

/**
 * Every timed action of a run, in time order: opens, screenshots, closes. Actions at or after
 * the end are dropped (the runner closes every page at the end anyway); at equal times opens
 * come first and closes last.
 */
export function planSchedule(viewers, durationMs) {
  const rank = { open: 0, screenshot: 1, close: 2 };
  const events = [];
  for (const v of viewers) {
    if (v.openAtMs >= durationMs) continue;
    events.push({ atMs: v.openAtMs, kind: 'open', id: v.id });
    for (const t of v.screenshotsAtMs) {
      const closed = v.closeAtMs !== null && t >= v.closeAtMs;
      if (t >= v.openAtMs && t < durationMs && !closed) events.push({ atMs: t, kind: 'screenshot', id: v.id });
    }
    if (v.closeAtMs !== null && v.closeAtMs < durationMs) events.push({ atMs: v.closeAtMs, kind: 'close', id: v.id });
  }
  return events.sort((a, b) => a.atMs - b.atMs || rank[a.kind] - rank[b.kind]);
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.png': 'image/png',
};

export function mimeType(file) {
  const dot = file.lastIndexOf('.');
  return (dot >= 0 && MIME[file.slice(dot).toLowerCase()]) || 'application/octet-stream';
}

/**
 * Maps a URL path under `prefix` to a file under `dir`, or null when it would escape `dir`
 * (`..`, encoded slashes, absolute paths).
 */
export function resolveUnder(prefix, dir, urlPath) {
  if (!urlPath.startsWith(prefix)) return null;
  let rel;
  try {
    rel = decodeURIComponent(urlPath.slice(prefix.length));
  } catch {
    return null;
  }
  if (rel === '' || rel.includes('\0') || rel.startsWith('/')) return null;
  const parts = rel.split('/');
  if (parts.some((p) => p === '..' || p === '.' || p === '' || p.includes('\\'))) return null;
  return `${dir.replace(/\/+$/, '')}/${parts.join('/')}`;
}
