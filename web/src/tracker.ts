// The tracker WebSocket (docs/tracker-protocol.md, crates/proto/src/tracker.rs): one
// connection at a time to the first URL that answers, reconnecting with backoff. It carries
// JSON frames; what to announce and when is the session's decision.

import type { Logger } from './log.js';

export interface Announce {
  swarm: { stream: string; rendition: string };
  peer_id: string;
  ticket: string;
  position: { seq: number; buffer_ms: number };
  upload_kbps: number;
  nat: 'unknown';
  connected: string[];
  want: number;
}

export interface Candidate {
  peer_id: string;
  locality: string;
  nat: string;
  seq: number;
  score: number;
}

export type ServerMsg =
  | { type: 'peers'; swarm_size: number; interval_ms: number; locality: string; candidates: Candidate[] }
  | { type: 'signal'; from: string; payload: unknown }
  | { type: 'pong' }
  | { type: 'error'; code: string; reason: string; fatal: boolean };

export interface TrackerHandler {
  onConnected(url: string): void;
  onDisconnected(reason: string): void;
  onMessage(msg: ServerMsg): void;
}

/** Largest frame read (the tracker's own limit is 64 KiB). */
const MAX_FRAME_CHARS = 64 * 1024;
const CONNECT_TIMEOUT_MS = 5_000;
/** Client messages per second kept below the tracker's limit (20/s, burst 40). */
const RATE_PER_SEC = 12;
const RATE_BURST = 24;
/** Messages waiting for rate or a connection; beyond it the oldest are dropped. */
const MAX_QUEUE = 256;
/** Liveness (same rule as crates/peer/src/tracker.rs): a tracker node partitioned away sends no
 * close, so after IDLE_PING_MS without a frame the client sends `ping`, and a tracker that
 * answers nothing for REPLY_TIMEOUT_MS after something was sent is left for the next URL. */
export const IDLE_PING_MS = 4_000;
export const REPLY_TIMEOUT_MS = 4_000;
const LIVENESS_TICK_MS = 500;

/** When the tracker has gone silent (pure; the client feeds it the clock). */
export class Liveness {
  private awaitingSince: number | null = null;
  private lastRx: number | null = null;
  private announced = false;

  sent(now: number): void {
    if (this.awaitingSince === null) this.awaitingSince = now;
  }

  received(now: number, peers: boolean): void {
    this.awaitingSince = null;
    this.lastRx = now;
    this.announced = this.announced || peers;
  }

  check(now: number): 'fine' | 'ping' | 'silent' {
    if (this.awaitingSince !== null) return now - this.awaitingSince >= REPLY_TIMEOUT_MS ? 'silent' : 'fine';
    if (this.announced && this.lastRx !== null && now - this.lastRx >= IDLE_PING_MS) return 'ping';
    return 'fine';
  }
}

export class TrackerClient {
  private ws: WebSocket | null = null;
  private idx = 0;
  private backoffMs = 500;
  private connectedAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private queue: string[] = [];
  private tokens = RATE_BURST;
  private lastRefill = performance.now();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private live = new Liveness();
  private liveTimer: ReturnType<typeof setInterval> | null = null;
  private silent = false;
  url: string | null = null;

  constructor(
    private readonly urls: string[],
    private readonly handler: TrackerHandler,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.urls.length > 0) this.connect();
  }

  get connected(): boolean {
    return this.url !== null;
  }

  private connect(): void {
    if (this.closed) return;
    const url = this.urls[this.idx % this.urls.length] as string;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.log('warn', `tracker ${url}: ${(e as Error).message}`);
      this.retry(false);
      return;
    }
    this.ws = ws;
    const openTimer = setTimeout(() => {
      if (ws.readyState !== WebSocket.OPEN) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      this.url = url;
      this.connectedAt = performance.now();
      this.live = new Liveness();
      this.silent = false;
      if (this.liveTimer) clearInterval(this.liveTimer);
      this.liveTimer = setInterval(() => this.checkLiveness(ws), LIVENESS_TICK_MS);
      this.log('info', `tracker connected: ${url}`);
      this.handler.onConnected(url);
      this.flush();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws || typeof ev.data !== 'string' || ev.data.length > MAX_FRAME_CHARS) return;
      let msg: ServerMsg;
      try {
        msg = JSON.parse(ev.data) as ServerMsg;
      } catch {
        this.log('debug', 'tracker sent an unreadable frame');
        return;
      }
      if (msg && typeof msg === 'object' && typeof msg.type === 'string') {
        this.live.received(performance.now(), msg.type === 'peers');
        this.handler.onMessage(msg);
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      if (this.liveTimer) clearInterval(this.liveTimer);
      this.liveTimer = null;
      this.ws = null;
      this.queue = [];
      const was = this.url !== null;
      this.url = null;
      const reason = `closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`;
      if (was) {
        this.log('info', `tracker connection lost: ${reason}`);
        this.handler.onDisconnected(reason);
      }
      // A silent tracker is unreachable: retrying it first would only wait for the timeout.
      this.retry(was && !this.silent && performance.now() - this.connectedAt > 30_000);
    };
    ws.onerror = () => {
      // onclose follows and decides.
    };
  }

  private checkLiveness(ws: WebSocket): void {
    if (this.ws !== ws) return;
    const now = performance.now();
    const state = this.live.check(now);
    if (state === 'ping') {
      this.send({ type: 'ping' });
    } else if (state === 'silent') {
      this.silent = true;
      this.log('info', `tracker ${this.url}: no answer in ${REPLY_TIMEOUT_MS} ms, moving on`);
      // A socket to a partitioned host may never report its close: act now.
      const handler = ws.onclose;
      ws.onclose = null;
      try {
        ws.close();
      } catch {
        // already closing
      }
      handler?.call(ws, new CloseEvent('close', { code: 4000, reason: 'silent' }));
    }
  }

  /** A connection that lasted is worth retrying first; a flapping one moves on. */
  private retry(lasted: boolean): void {
    if (this.closed) return;
    let wait = 0;
    if (lasted) {
      this.backoffMs = 500;
      this.idx = 0;
      wait = this.backoffMs;
    } else {
      this.idx += 1;
      if (this.idx % this.urls.length === 0) {
        wait = this.backoffMs;
        this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
      }
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, wait);
  }

  /** Queue a message; messages for a connection that is not up are dropped. */
  send(msg: object): void {
    if (!this.connected || this.closed) return;
    const type = (msg as { type?: unknown }).type;
    if (type === 'announce' || type === 'ping') this.live.sent(performance.now());
    this.queue.push(JSON.stringify(msg));
    if (this.queue.length > MAX_QUEUE) this.queue.shift();
    this.flush();
  }

  private flush(): void {
    const now = performance.now();
    this.tokens = Math.min(RATE_BURST, this.tokens + ((now - this.lastRefill) / 1000) * RATE_PER_SEC);
    this.lastRefill = now;
    const ws = this.ws;
    while (this.queue.length > 0 && this.tokens >= 1 && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(this.queue.shift() as string);
      this.tokens -= 1;
    }
    if (this.queue.length > 0 && this.flushTimer === null && !this.closed) {
      const waitMs = Math.max(10, ((1 - this.tokens) / RATE_PER_SEC) * 1000);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.flush();
      }, waitMs);
    }
  }

  close(): void {
    this.closed = true;
    if (this.liveTimer) clearInterval(this.liveTimer);
    this.liveTimer = null;
    if (this.timer) clearTimeout(this.timer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.queue = [];
    const ws = this.ws;
    this.ws = null;
    this.url = null;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
  }
}
