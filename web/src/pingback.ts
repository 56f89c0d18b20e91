// Pingback for the browser SDK: every `pingback.interval_ms` of the join response (10 s by
// default) the counters since the previous report go to `pingback.url` (docs/pingback.md),
// with what the player experienced (stalls, play time, startup, distance behind the live
// edge). Never in the playback path: a timer, a fetch with a short timeout, at most
// MAX_QUEUE unsent reports kept (oldest dropped), and `navigator.sendBeacon` when the page
// goes away. Sent as text/plain so the POST is a CORS simple request (no preflight).

import { SDK_NAME, SDK_VERSION, type JoinResponse } from './api.js';
import type { Logger } from './log.js';

/** Most unsent reports kept while the pingback server is unreachable. */
export const MAX_QUEUE = 4;
/** Most reports in one POST (the server's batch limit). */
const MAX_BATCH = 8;
const POST_TIMEOUT_MS = 3_000;
/** Reports older than this are dropped (the server refuses ages over 10 min). */
const MAX_AGE_MS = 9 * 60_000;
const MAX_PEERS = 1_000;
const TIME_SLACK_MS = 2_000;

/** What the SDK counted, cumulative since it started. */
export interface Counters {
  httpBytes: number;
  manifestBytes: number;
  p2pDownBytes: number;
  p2pUpBytes: number;
  wastedBytes: number;
  segmentsVerified: number;
  verifyFailures: number;
  peersConnected: number;
  connectAttempts: number;
  connectsOpened: number;
  rendition: string | null;
}

/** The wire report (`shoal_proto::pingback::Report`). */
export interface Report {
  v: 1;
  session_id: string;
  ticket: string;
  seq: number;
  stream: string;
  rendition: string;
  p2p: boolean;
  p2p_reason?: string;
  platform: string;
  sdk: string;
  sdk_version: string;
  period_ms: number;
  age_ms: number;
  http_bytes: number;
  manifest_bytes: number;
  p2p_down_bytes: number;
  p2p_up_bytes: number;
  wasted_bytes: number;
  segments_verified: number;
  verify_failures: number;
  stalls: number;
  stall_ms: number;
  play_ms: number;
  startup_ms?: number;
  latency_ms?: number;
  peers_connected: number;
  connect_attempts: number;
  connects_opened: number;
}

/** Where the module touches the browser (replaced in unit tests). */
export interface PingbackEnv {
  /** Monotonic milliseconds. */
  now(): number;
  /** POST text; resolves to the HTTP status, rejects on network error or timeout. */
  post(url: string, body: string, timeoutMs: number): Promise<number>;
  /** Queue a POST that outlives the page; false when the browser refused it. */
  beacon(url: string, body: string): boolean;
}

const browserEnv: PingbackEnv = {
  now: () => performance.now(),
  async post(url, body, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain' },
        credentials: 'omit',
        keepalive: true,
        signal: ctl.signal,
      });
      return res.status;
    } finally {
      clearTimeout(timer);
    }
  },
  beacon(url, body) {
    if (typeof navigator === 'undefined' || typeof navigator.sendBeacon !== 'function') return false;
    return navigator.sendBeacon(url, new Blob([body], { type: 'text/plain' }));
  },
};

/** Media the watch follows (an HTMLMediaElement, or a stand-in in tests). */
type WatchedMedia = EventTarget & {
  paused?: boolean;
  seeking?: boolean;
  currentTime?: number;
  buffered?: { length: number; start(i: number): number; end(i: number): number };
};

/** Seconds of media buffered ahead of the playhead (0 when unknown). */
function bufferedAhead(m: WatchedMedia): number {
  const b = m.buffered;
  const t = m.currentTime;
  if (!b || typeof t !== 'number') return 0;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= t + 0.1 && t < b.end(i)) return b.end(i) - t;
  }
  return 0;
}

/** A `waiting` with at least this much media buffered ahead is the decoder short of CPU, not
 * delivery: data is there. It is not counted as a stall (the browser test runner draws the
 * same line). */
const HICCUP_BUFFER_S = 1.0;

/** Follows a media element: startup, stalls (waiting after the first `playing` with the buffer
 * nearly dry, not while seeking or paused), time stalled and time playing. */
export class PlayerWatch {
  startupMs: number | null = null;
  stalls = 0;
  private stallMs = 0;
  private playMs = 0;
  private playingSince: number | null = null;
  private stalledSince: number | null = null;
  private started = false;
  private media: EventTarget | null = null;
  private cleanup: (() => void) | null = null;

  constructor(
    private readonly now: () => number,
    /** When the viewer asked to play (startup is measured from here). */
    private readonly origin: number,
  ) {}

  setMedia(m: WatchedMedia | null): void {
    if (m === this.media) return;
    this.cleanup?.();
    this.cleanup = null;
    this.closeIntervals(false);
    this.media = m;
    if (!m) return;
    const on: Record<string, () => void> = {
      playing: () => {
        const t = this.now();
        if (!this.started) {
          this.started = true;
          this.startupMs = Math.max(0, Math.round(t - this.origin));
        }
        if (this.stalledSince !== null) {
          this.stallMs += t - this.stalledSince;
          this.stalledSince = null;
        }
        if (this.playingSince === null) this.playingSince = t;
      },
      waiting: () => {
        if (!this.started || m.seeking || m.paused) return;
        if (bufferedAhead(m) >= HICCUP_BUFFER_S) return;
        const t = this.now();
        if (this.playingSince !== null) {
          this.playMs += t - this.playingSince;
          this.playingSince = null;
        }
        if (this.stalledSince === null) {
          this.stalls += 1;
          this.stalledSince = t;
        }
      },
      pause: () => this.closeIntervals(true),
      seeking: () => this.closeIntervals(true),
      emptied: () => this.closeIntervals(true),
      ended: () => this.closeIntervals(true),
    };
    for (const [ev, fn] of Object.entries(on)) m.addEventListener(ev, fn);
    this.cleanup = () => {
      for (const [ev, fn] of Object.entries(on)) m.removeEventListener(ev, fn);
    };
  }

  /** Stop counting play and stall time (pause, seek): the viewer, not the network. */
  private closeIntervals(endStall: boolean): void {
    const t = this.now();
    if (this.playingSince !== null) this.playMs += t - this.playingSince;
    this.playingSince = null;
    if (endStall && this.stalledSince !== null) {
      this.stallMs += t - this.stalledSince;
      this.stalledSince = null;
    }
  }

  /** Cumulative play and stall time, open intervals included. */
  totals(): { playMs: number; stallMs: number; stalls: number } {
    const t = this.now();
    return {
      playMs: this.playMs + (this.playingSince !== null ? t - this.playingSince : 0),
      stallMs: this.stallMs + (this.stalledSince !== null ? t - this.stalledSince : 0),
      stalls: this.stalls,
    };
  }
}

interface Mark {
  at: number;
  c: Counters;
  playMs: number;
  stallMs: number;
  stalls: number;
}

const zero = (): Counters => ({
  httpBytes: 0, manifestBytes: 0, p2pDownBytes: 0, p2pUpBytes: 0, wastedBytes: 0, segmentsVerified: 0,
  verifyFailures: 0, peersConnected: 0, connectAttempts: 0, connectsOpened: 0, rendition: null,
});

export class Pingback {
  readonly player: PlayerWatch;
  private readonly env: PingbackEnv;
  private join: JoinResponse | null = null;
  private seq = 0;
  private prev: Mark;
  private startupSent = false;
  private queue: Array<{ report: Report; at: number }> = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private sending = false;
  /** Index into the session's pingback URLs (`url`, then `alternates`). */
  private target = 0;
  private hls: { latency?: unknown } | null = null;
  private stopped = false;
  private readonly onPageHide = () => this.beaconNow();
  dropped = 0;

  constructor(
    private readonly counters: () => Counters,
    private readonly log: Logger,
    env?: Partial<PingbackEnv>,
  ) {
    this.env = { ...browserEnv, ...(env ?? {}) };
    const t = this.env.now();
    this.player = new PlayerWatch(() => this.env.now(), t);
    this.prev = { at: t, c: zero(), playMs: 0, stallMs: 0, stalls: 0 };
    if (typeof addEventListener === 'function') addEventListener('pagehide', this.onPageHide);
  }

  /** A join succeeded (whatever its P2P decision): report under its session from now on. */
  setJoin(resp: JoinResponse): void {
    if (this.stopped || !resp.pingback || typeof resp.pingback.url !== 'string' || resp.pingback.url === '') return;
    if (this.join?.session_id !== resp.session_id) {
      this.seq = 0;
      this.target = 0;
    }
    this.join = resp;
    if (this.timer) clearInterval(this.timer);
    const every = Math.min(600_000, Math.max(1_000, Number(resp.pingback.interval_ms) || 10_000));
    this.timer = setInterval(() => {
      this.tick();
      void this.flush();
    }, every);
  }

  /** The hls.js instance, for its distance behind the live edge. */
  attachHls(hls: { latency?: unknown } | null): void {
    this.hls = hls;
  }

  /** Make the next report (counters since the previous one) and queue it. */
  tick(): Report | null {
    const j = this.join;
    if (!j) return null;
    const t = this.env.now();
    const c = this.counters();
    const p = this.player.totals();
    const prev = this.prev;
    // A counter that went down was reset (a new engine after a rejoin): count it from zero.
    const d = (a: number, b: number) => Math.max(0, Math.round(a >= b ? a - b : a));
    const periodMs = d(t, prev.at);
    const maxTime = periodMs + TIME_SLACK_MS;
    const playMs = Math.min(d(p.playMs, prev.playMs), maxTime);
    const stallMs = Math.min(d(p.stallMs, prev.stallMs), maxTime - playMs);
    const startup = !this.startupSent && this.player.startupMs !== null ? this.player.startupMs : undefined;
    const latency = typeof this.hls?.latency === 'number' && isFinite(this.hls.latency) && this.hls.latency >= 0
      ? Math.round(this.hls.latency * 1000)
      : undefined;
    this.seq += 1;
    const r: Report = {
      v: 1,
      session_id: j.session_id,
      ticket: j.ticket,
      seq: this.seq,
      stream: j.stream,
      rendition: c.rendition ?? '',
      p2p: j.p2p,
      ...(j.p2p_reason ? { p2p_reason: j.p2p_reason } : {}),
      platform: 'web',
      sdk: SDK_NAME,
      sdk_version: SDK_VERSION,
      period_ms: periodMs,
      age_ms: 0,
      http_bytes: d(c.httpBytes, prev.c.httpBytes),
      manifest_bytes: d(c.manifestBytes, prev.c.manifestBytes),
      p2p_down_bytes: d(c.p2pDownBytes, prev.c.p2pDownBytes),
      p2p_up_bytes: d(c.p2pUpBytes, prev.c.p2pUpBytes),
      wasted_bytes: d(c.wastedBytes, prev.c.wastedBytes),
      segments_verified: d(c.segmentsVerified, prev.c.segmentsVerified),
      verify_failures: d(c.verifyFailures, prev.c.verifyFailures),
      stalls: playMs + stallMs > 0 ? d(p.stalls, prev.stalls) : 0,
      stall_ms: stallMs,
      play_ms: playMs,
      ...(startup !== undefined ? { startup_ms: startup } : {}),
      ...(latency !== undefined && latency <= 3_600_000 ? { latency_ms: latency } : {}),
      peers_connected: Math.min(MAX_PEERS, Math.max(0, Math.round(c.peersConnected))),
      connect_attempts: d(c.connectAttempts, prev.c.connectAttempts),
      connects_opened: d(c.connectsOpened, prev.c.connectsOpened),
    };
    if (startup !== undefined) this.startupSent = true;
    this.prev = { at: t, c: { ...c }, playMs: p.playMs, stallMs: p.stallMs, stalls: p.stalls };
    this.queue.push({ report: r, at: t });
    while (this.queue.length > MAX_QUEUE) {
      this.queue.shift();
      this.dropped += 1;
    }
    return r;
  }

  private batch(): { body: string; n: number } | null {
    const t = this.env.now();
    this.queue = this.queue.filter((q) => t - q.at < MAX_AGE_MS);
    if (this.queue.length === 0) return null;
    const items = this.queue.slice(0, MAX_BATCH).map((q) => ({ ...q.report, age_ms: Math.max(0, Math.round(t - q.at)) }));
    return { body: JSON.stringify(items), n: items.length };
  }

  /** The session's pingback URLs in the order to use them (a cluster lists alternates). */
  private urls(): string[] {
    const j = this.join;
    if (!j) return [];
    const out = [j.pingback.url];
    for (const a of j.pingback.alternates ?? []) {
      if (typeof a === 'string' && a !== '' && !out.includes(a) && out.length < 8) out.push(a);
    }
    return out;
  }

  /** The URL reports go to now. */
  get url(): string | null {
    const u = this.urls();
    return u.length > 0 ? (u[this.target % u.length] as string) : null;
  }

  /** POST what is queued; keep it when the server cannot be reached. A node that does not
   * answer (network error, timeout, 5xx) is left for the next URL, tried at once. */
  async flush(): Promise<void> {
    const urls = this.urls();
    if (urls.length === 0 || !urls[0] || this.sending) return;
    const b = this.batch();
    if (!b) return;
    this.sending = true;
    try {
      for (let attempt = 0; attempt < Math.min(2, urls.length); attempt++) {
        const url = urls[this.target % urls.length] as string;
        let status = 0;
        try {
          status = await this.env.post(url, b.body, POST_TIMEOUT_MS);
        } catch {
          status = 0;
        }
        if (status >= 200 && status < 300) {
          this.queue.splice(0, b.n);
          return;
        }
        if (status >= 400 && status < 500) {
          if (status !== 429) {
            this.log('warn', `pingback refused ${b.n} report(s) (HTTP ${status}); dropping them`);
            this.queue.splice(0, b.n);
          }
          return;
        }
        // No answer or a server error: keep them, and go to the next node.
        this.target += 1;
      }
    } finally {
      this.sending = false;
    }
  }

  /** The page is going away: one more report and everything queued, by beacon. */
  private beaconNow(): void {
    const url = this.url;
    if (!url) return;
    this.tick();
    const b = this.batch();
    if (b && this.env.beacon(url, b.body)) this.queue.splice(0, b.n);
  }

  /** The SDK is destroyed: last report by beacon, timers off. */
  stop(): void {
    if (this.stopped) return;
    this.beaconNow();
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.player.setMedia(null);
    if (typeof removeEventListener === 'function') removeEventListener('pagehide', this.onPageHide);
  }
}
