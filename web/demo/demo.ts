// The demo page: the live stream through hls.js + Shoal, and live figures (share from peers,
// CDN vs peer bytes, peers, upload). Where to play comes from the page's own URL
// (`?src=<master.m3u8>&api=<api base>&stream=<name>`) or else from `config.json` next to the
// page, which `shoal demo` serves: `{"src": "...", "api": "...", "stream": "..."}`.

import { Shoal, type ShoalStats } from '../src/index.js';

interface DemoConfig {
  src: string;
  api?: string;
  stream?: string;
  /** Viewer token for the API's join (`shoal demo` mints one per run). */
  token?: string;
  /** The pingback dashboard, linked from the page. */
  dashboard?: string;
}

declare global {
  interface Window {
    Hls: any;
    shoal?: Shoal;
    hls?: any;
  }
}

const $ = (id: string) => document.getElementById(id) as HTMLElement;

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

async function loadConfig(): Promise<DemoConfig> {
  const q = new URLSearchParams(location.search);
  let cfg: Partial<DemoConfig> = {};
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (res.ok) cfg = (await res.json()) as Partial<DemoConfig>;
  } catch {
    // no config.json: the URL must say
  }
  const src = q.get('src') ?? cfg.src;
  if (!src) throw new Error('no stream: give ?src=<master.m3u8> or serve config.json');
  const out: DemoConfig = { src: new URL(src, location.href).href };
  const api = q.get('api') ?? cfg.api;
  if (api) out.api = new URL(api, location.href).href.replace(/\/+$/, '');
  const stream = q.get('stream') ?? cfg.stream;
  if (stream) out.stream = stream;
  const token = q.get('token') ?? cfg.token;
  if (token) out.token = token;
  if (cfg.dashboard) out.dashboard = cfg.dashboard;
  return out;
}

/** Per-second samples of cumulative bytes, for the last-30-s share and the chart. */
const history: { t: number; http: number; p2p: number }[] = [];
const CHART_SECONDS = 120;
const CHART_WINDOW = 12;

function windowShare(s: ShoalStats, seconds: number): number | null {
  const now = performance.now();
  const old = history.find((h) => h.t >= now - seconds * 1000);
  if (!old) return null;
  const http = s.httpBytes - old.http;
  const p2p = s.p2pBytes - old.p2p;
  return http + p2p > 0 ? p2p / (http + p2p) : null;
}

function drawChart(): void {
  const c = $('chart') as HTMLCanvasElement;
  const ctx = c.getContext('2d');
  if (!ctx) return;
  const w = c.width;
  const h = c.height;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#2a3038';
  for (const y of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(0, h - y * h);
    ctx.lineTo(w, h - y * h);
    ctx.stroke();
  }
  // Share over a sliding 12-s window (six 2-s segments), over the last CHART_SECONDS.
  const pts: [number, number][] = [];
  for (let i = CHART_WINDOW; i < history.length; i += 1) {
    const a = history[i - CHART_WINDOW];
    const b = history[i];
    if (!a || !b) continue;
    const http = b.http - a.http;
    const p2p = b.p2p - a.p2p;
    if (http + p2p <= 0) continue;
    const x = w - ((history.length - 1 - i) / CHART_SECONDS) * w;
    pts.push([x, h - (p2p / (http + p2p)) * (h - 4) - 2]);
  }
  ctx.strokeStyle = '#3db0e0';
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
  ctx.stroke();
}

function render(s: ShoalStats, hls: any): void {
  history.push({ t: performance.now(), http: s.httpBytes, p2p: s.p2pBytes });
  while (history.length > CHART_SECONDS + 5) history.shift();
  $('share').textContent = pct(s.share);
  const recent = windowShare(s, 30);
  $('share-window').textContent = `last 30 s: ${recent === null ? '–' : pct(recent)}`;
  const total = s.httpBytes + s.p2pBytes;
  ($('bar-cdn') as HTMLElement).style.width = total ? `${(s.httpBytes / total) * 100}%` : '0';
  ($('bar-p2p') as HTMLElement).style.width = total ? `${(s.p2pBytes / total) * 100}%` : '0';
  $('cdn-bytes').textContent = fmtBytes(s.httpBytes);
  $('p2p-bytes').textContent = fmtBytes(s.p2pBytes);
  $('peers').textContent = String(s.peers);
  $('swarm').textContent = s.swarmSize ? String(s.swarmSize) : '–';
  $('upload').textContent = fmtBytes(s.uploadBytes);
  $('segments').textContent = `${s.segments} (${s.segmentsFromPeers})`;
  $('verified').textContent = `${s.segmentsVerified} / ${s.verifyFailures}`;
  const lat = typeof hls?.latency === 'number' && Number.isFinite(hls.latency) ? `${hls.latency.toFixed(1)} s` : '–';
  $('latency').textContent = lat;
  $('p2p').textContent = s.p2p ? 'on' : `off (${s.p2pReason ?? '?'})`;
  $('peer-id').textContent = s.peerId ?? '–';
  drawChart();
}

async function main(): Promise<void> {
  const status = $('status');
  const Hls = window.Hls;
  if (!Hls || !Hls.isSupported()) {
    status.textContent = 'this browser cannot play HLS with hls.js (no Media Source Extensions)';
    return;
  }
  const cfg = await loadConfig();
  $('source').textContent = `stream ${cfg.src}${cfg.api ? ` · API ${cfg.api}` : ' · no API: CDN only'}`;
  const opts: ConstructorParameters<typeof Shoal>[0] = {
    log: (level, msg) => {
      if (level !== 'debug') console.log(`[shoal ${level}] ${msg}`);
    },
  };
  if (cfg.api) opts.api = cfg.api;
  if (cfg.stream) opts.stream = cfg.stream;
  if (cfg.token) opts.token = cfg.token;
  if (cfg.dashboard) {
    const a = document.createElement('a');
    a.href = cfg.dashboard;
    a.textContent = ' · dashboard';
    $('source').appendChild(a);
  }
  const shoal = new Shoal(opts);
  const hls = new Hls(shoal.hlsConfig({ enableWorker: true }));
  shoal.attach(hls);
  window.shoal = shoal;
  window.hls = hls;
  const video = $('video') as HTMLVideoElement;
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch(() => (status.textContent = 'press play'));
  });
  hls.on(Hls.Events.ERROR, (_e: string, d: any) => {
    if (d.fatal) status.textContent = `player error: ${d.type} ${d.details}`;
  });
  video.addEventListener('playing', () => (status.textContent = 'playing'));
  video.addEventListener('waiting', () => (status.textContent = 'buffering…'));
  shoal.on('stats', (s) => render(s, hls));
  shoal.on('p2p', (p) => {
    status.textContent = p.enabled ? `P2P on as ${p.peerId}` : `CDN only (${p.reason})`;
  });
  hls.loadSource(cfg.src);
  hls.attachMedia(video);
}

main().catch((e: unknown) => {
  $('status').textContent = `cannot start: ${(e as Error).message}`;
});
