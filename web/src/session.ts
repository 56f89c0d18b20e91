// A P2P session: shoal-engine (wasm) driven by the browser's I/O — DataChannels to peers, the
// tracker WebSocket, fetch() to the CDN — and the clock (performance.now()). The loop is the
// engine's contract (crates/engine/src/lib.rs): feed one input, drain every action in order,
// carry each out, wake the engine at its poll timeout.

import type { Action, ShoalEngine } from '../pkg/shoal_wasm.js';
import type { JoinResponse } from './api.js';
import { fetchWithFailover, type CdnBases } from './cdn.js';
import type { Logger } from './log.js';
import { Peers, type Signal } from './peers.js';
import type { ListedSegment } from './playlist.js';
import { TrackerClient, type ServerMsg } from './tracker.js';
import type { SegmentSource } from './types.js';

export interface WasmModule {
  ShoalEngine: typeof ShoalEngine;
}

export interface Delivered {
  data: ArrayBuffer;
  source: SegmentSource;
  verified: boolean;
  firstByteMs: number;
  totalMs: number;
}

export type Outcome = { ok: true; delivery: Delivered } | { ok: false; reason: string };

export interface SessionHost {
  log: Logger;
  onPeersChanged(kind: 'connected' | 'disconnected', peerId: string, open: number): void;
  onVerification(reason: string): void;
  /** The tracker refused the ticket: join again. */
  onUnauthorized(): void;
}

export interface PlayerSnapshot {
  rendition: string;
  playing: boolean;
  bufferedAheadMs: number;
  nextSeq: number | null;
}

export interface SessionOptions {
  engineConfig: Record<string, unknown>;
  iceServers: RTCIceServer[];
  maxPeers: number;
  connectTimeoutMs: number;
  /** CDN bases for the engine's fetches (failover on errors and slowness). */
  cdn?: CdnBases;
}

/** Actions drained per input at most (the engine emits a bounded number; this catches bugs). */
const MAX_ACTIONS = 100_000;
/** How often DataChannel buffer levels are reported while data is queued. */
const BUFFER_POLL_MS = 20;
/** Bye reasons that get a peer banned for the session (protocol error, bad data). */
const BAN_REASONS = new Set(['3', '4']);

interface Waiter {
  done: (o: Outcome) => void;
}

const key = (rendition: string, seq: number) => `${rendition}\n${seq}`;

export class Session {
  readonly peerId: string;
  private engine: ShoalEngine;
  private readonly t0 = performance.now();
  private draining = false;
  private closed = false;
  private tickTimer: ReturnType<typeof setTimeout> | null = null;
  private tickAt = Infinity;
  private bufferTimer: ReturnType<typeof setTimeout> | null = null;
  private reported = new Map<number, number>();
  private waiters = new Map<string, Waiter[]>();
  private http = new Map<number, AbortController>();
  private peers: Peers;
  private tracker: TrackerClient;
  private announceTimer: ReturnType<typeof setTimeout> | null = null;
  private announceIntervalMs = 7_500;
  private wantExtra = 0;
  private announcedRendition: string | null = null;
  private player: PlayerSnapshot | null = null;
  private lastDelivered: number | null = null;
  private readonly stream: string;
  private readonly minPeers: number;
  private readonly uploadKbps: number;
  swarmSize = 0;

  private readonly cdn: CdnBases | null;

  constructor(
    wasm: WasmModule,
    private readonly join: JoinResponse,
    opts: SessionOptions,
    private readonly host: SessionHost,
  ) {
    this.peerId = join.peer_id;
    this.stream = join.stream;
    this.cdn = opts.cdn ?? null;
    // Throws on a configuration the engine refuses; the caller stays CDN-only.
    this.engine = new wasm.ShoalEngine(
      JSON.stringify(opts.engineConfig),
      join.peer_id,
      join.stream,
      join.origin_public_key,
      this.now(),
    );
    const cfg = opts.engineConfig;
    this.minPeers = typeof cfg.min_peers === 'number' ? cfg.min_peers : 4;
    const up = typeof cfg.upload_kbps === 'number' ? cfg.upload_kbps : 0;
    this.uploadKbps = cfg.consume_only === true ? 0 : Math.max(1, up);
    this.peers = new Peers(
      join.peer_id,
      { iceServers: opts.iceServers, maxPeers: opts.maxPeers, connectTimeoutMs: opts.connectTimeoutMs },
      {
        signal: (to, payload) => this.signal(to, payload),
        onOpen: (h, remote) => {
          this.host.log('info', `peer ${remote} connected`);
          this.feed((e, now) => e.peerConnected(h, now));
          this.host.onPeersChanged('connected', remote, this.peers.openCount());
        },
        onMessage: (h, data) => this.feed((e, now) => e.peerMessage(h, data, now)),
        onClose: (h, remote, wasOpen) => {
          this.reported.delete(h);
          if (!wasOpen) return;
          this.host.log('info', `peer ${remote} disconnected`);
          this.feed((e, now) => e.peerDisconnected(h, now));
          this.host.onPeersChanged('disconnected', remote, this.peers.openCount());
        },
        onBufferedLow: (h) => this.reportBuffer(h),
      },
      host.log,
    );
    this.tracker = new TrackerClient(
      join.trackers,
      {
        onConnected: () => this.announceSoon(0),
        onDisconnected: () => {
          if (this.announceTimer) clearTimeout(this.announceTimer);
          this.announceTimer = null;
          this.announcedRendition = null;
        },
        onMessage: (m) => this.onTracker(m),
      },
      host.log,
    );
    this.tracker.start();
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  // ------------------------------------------------------------------ engine loop

  /** Feed one input and, unless already inside a drain, carry out every action. */
  private feed(f: (e: ShoalEngine, now: number) => void): void {
    if (this.closed) return;
    try {
      f(this.engine, this.now());
    } catch (e) {
      this.host.log('error', `engine input failed: ${(e as Error).message}`);
      return;
    }
    if (!this.draining) this.drain();
  }

  private drain(): void {
    this.draining = true;
    try {
      for (let i = 0; i < MAX_ACTIONS && !this.closed; i++) {
        const a = this.engine.poll();
        if (!a) break;
        try {
          this.carryOut(a);
        } catch (e) {
          this.host.log('error', `carrying out ${a.kind}: ${(e as Error).message}`);
        } finally {
          a.free();
        }
      }
    } finally {
      this.draining = false;
    }
    this.scheduleTick();
  }

  private scheduleTick(): void {
    if (this.closed) return;
    const t = this.engine.pollTimeout();
    if (t === undefined) return;
    if (this.tickTimer !== null && t >= this.tickAt) return;
    if (this.tickTimer !== null) clearTimeout(this.tickTimer);
    this.tickAt = t;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = null;
      this.tickAt = Infinity;
      this.feed((e, now) => e.tick(now));
    }, Math.max(0, t - this.now()));
  }

  private carryOut(a: Action): void {
    switch (a.kind) {
      case 'send': {
        const d = a.data;
        if (d) {
          this.peers.send(a.peer, d);
          this.reported.set(a.peer, -1);
          this.armBufferPoll();
        }
        return;
      }
      case 'disconnect': {
        const remote = this.peers.remoteOf(a.peer);
        if (remote && BAN_REASONS.has(a.reason)) this.peers.ban(remote);
        this.peers.close(a.peer, false, false);
        return;
      }
      case 'fetch':
        this.startFetch(a.id, a.url, a.rangeStart, a.rangeEnd, a.fetchKind === 'manifest');
        return;
      case 'cancel': {
        const c = this.http.get(a.id);
        this.http.delete(a.id);
        c?.abort();
        return;
      }
      case 'deliver': {
        const data = a.data;
        const d: Delivered = {
          data: data ? toArrayBuffer(data) : new ArrayBuffer(0),
          source: a.source as SegmentSource,
          verified: a.verified,
          firstByteMs: a.firstByteMs,
          totalMs: a.totalMs,
        };
        if (this.player && a.rendition === this.player.rendition) {
          this.lastDelivered = Math.max(this.lastDelivered ?? 0, a.seq);
        }
        this.settle(a.rendition, a.seq, { ok: true, delivery: d });
        return;
      }
      case 'deliverFailed':
        this.settle(a.rendition, a.seq, { ok: false, reason: a.reason });
        return;
      case 'needPeers':
        this.wantExtra = a.count;
        this.announceSoon(0);
        return;
      case 'event':
        this.host.log('warn', a.reason);
        this.host.onVerification(a.reason);
        return;
      default:
        this.host.log('debug', `unknown engine action ${a.kind}`);
    }
  }

  /** Hand an outcome to every waiter, outside the drain (their callbacks call back in). */
  private settle(rendition: string, seq: number, o: Outcome): void {
    const k = key(rendition, seq);
    const ws = this.waiters.get(k);
    if (!ws) return;
    this.waiters.delete(k);
    queueMicrotask(() => {
      for (const w of ws) w.done(o);
    });
  }

  // ------------------------------------------------------------------ HTTP

  private startFetch(id: number, url: string, start: number | undefined, end: number | undefined, manifest: boolean): void {
    const ctl = new AbortController();
    this.http.set(id, ctl);
    const headers: Record<string, string> = {};
    if (start !== undefined) headers.range = `bytes=${start}-${end ?? ''}`;
    const live = () => !this.closed && this.http.get(id) === ctl;
    void (async () => {
      try {
        // A manifest cached by the browser for its max-age would lack the newest entries:
        // revalidate it every time (segments are immutable and may come from the cache).
        const init: RequestInit = { headers, credentials: 'omit', cache: manifest ? 'no-cache' : 'default' };
        const res = this.cdn
          ? await fetchWithFailover(this.cdn, url, init, ctl.signal)
          : await fetch(url, { ...init, signal: ctl.signal });
        if (!live()) return;
        this.feed((e, now) => e.httpResponse(id, res.status, totalOf(res), now));
        if (!res.body) {
          const buf = new Uint8Array(await res.arrayBuffer());
          if (!live()) return;
          if (buf.byteLength > 0) this.feed((e, now) => e.httpData(id, buf, now));
        } else {
          const reader = res.body.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (!live()) {
              void reader.cancel().catch(() => undefined);
              return;
            }
            if (done) break;
            if (value && value.byteLength > 0) this.feed((e, now) => e.httpData(id, value, now));
          }
        }
        this.http.delete(id);
        this.feed((e, now) => e.httpDone(id, now));
      } catch (err) {
        if (!live()) return;
        this.http.delete(id);
        const reason = (err as Error)?.message ?? String(err);
        this.feed((e, now) => e.httpFailed(id, reason, now));
      }
    })();
  }

  // ------------------------------------------------------------------ DataChannel buffers

  private reportBuffer(h: number): void {
    const amount = this.peers.bufferedAmount(h);
    if (this.reported.get(h) === amount) return;
    if (amount === 0) this.reported.delete(h);
    else this.reported.set(h, amount);
    this.feed((e, now) => e.peerBuffered(h, amount, now));
  }

  /**
   * The engine counts what it writes; tell it what the channels actually still hold, every
   * BUFFER_POLL_MS while any of them holds something (no timer runs while all are empty).
   */
  private armBufferPoll(): void {
    if (this.bufferTimer !== null || this.closed) return;
    this.bufferTimer = setTimeout(() => {
      this.bufferTimer = null;
      for (const h of [...this.reported.keys()]) this.reportBuffer(h);
      if (this.reported.size > 0) this.armBufferPoll();
    }, BUFFER_POLL_MS);
  }

  // ------------------------------------------------------------------ player

  addRendition(name: string, url: string, bandwidth: number): void {
    this.feed((e, now) => e.addRendition(name, url, bandwidth >>> 0, now));
  }

  playlist(rendition: string, segments: readonly ListedSegment[]): void {
    const seqs = new Float64Array(segments.map((s) => s.seq));
    const urls = segments.map((s) => s.url);
    const durs = new Uint32Array(segments.map((s) => Math.max(0, Math.min(s.durationMs, 0xffffffff))));
    this.feed((e, now) => e.playlist(rendition, seqs, urls, durs, now));
  }

  playerState(p: PlayerSnapshot): void {
    const changed = this.player?.rendition !== p.rendition;
    if (changed) this.lastDelivered = null;
    this.player = p;
    this.feed((e, now) => e.playerState(p.rendition, p.playing, p.bufferedAheadMs, p.nextSeq ?? undefined, now));
    if (changed || this.announcedRendition !== p.rendition) this.announceSoon(0);
  }

  /** Ask the engine for a segment; `done` is called once (unless cancelled first). */
  request(rendition: string, seq: number, done: (o: Outcome) => void): () => void {
    const k = key(rendition, seq);
    const w: Waiter = { done };
    const list = this.waiters.get(k);
    if (list) list.push(w);
    else this.waiters.set(k, [w]);
    this.feed((e, now) => e.playerRequest(rendition, seq, now));
    return () => {
      const ws = this.waiters.get(k);
      if (!ws) return;
      const rest = ws.filter((x) => x !== w);
      if (rest.length > 0) {
        this.waiters.set(k, rest);
        return;
      }
      this.waiters.delete(k);
      this.feed((e, now) => e.playerAbort(rendition, seq, now));
    };
  }

  // ------------------------------------------------------------------ tracker

  private signal(to: string, payload: Signal): void {
    this.tracker.send({ type: 'signal', to, payload });
  }

  private announceSoon(delayMs: number): void {
    if (this.closed || !this.tracker.connected) return;
    if (this.announceTimer !== null) clearTimeout(this.announceTimer);
    this.announceTimer = setTimeout(() => {
      this.announceTimer = null;
      this.announce();
    }, delayMs);
  }

  private announce(): void {
    const p = this.player;
    if (!p) {
      this.announceSoon(500); // no rendition yet
      return;
    }
    const open = this.peers.openRemotes();
    const wanted = Math.max(this.minPeers, this.wantExtra);
    const want = open.length < wanted || this.wantExtra > 0 ? this.peers.room() : 0;
    this.wantExtra = 0;
    this.tracker.send({
      type: 'announce',
      swarm: { stream: this.stream, rendition: p.rendition },
      peer_id: this.peerId,
      ticket: this.join.ticket,
      position: { seq: this.lastDelivered ?? p.nextSeq ?? 0, buffer_ms: Math.round(p.bufferedAheadMs) },
      upload_kbps: this.uploadKbps,
      nat: 'unknown',
      connected: open.slice(0, 64),
      want,
    });
    this.announcedRendition = p.rendition;
    this.announceSoon(this.announceIntervalMs);
  }

  private onTracker(m: ServerMsg): void {
    switch (m.type) {
      case 'peers': {
        if (typeof m.interval_ms === 'number') {
          this.announceIntervalMs = Math.min(60_000, Math.max(1_000, m.interval_ms / 2));
          this.announceSoon(this.announceIntervalMs);
        }
        if (typeof m.swarm_size === 'number') {
          this.swarmSize = m.swarm_size;
          this.feed((e, now) => e.swarmSize(m.swarm_size >>> 0, now));
        }
        for (const c of Array.isArray(m.candidates) ? m.candidates.slice(0, 64) : []) {
          if (this.peers.room() === 0) break;
          if (typeof c?.peer_id === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(c.peer_id)) this.peers.connectTo(c.peer_id);
        }
        return;
      }
      case 'signal':
        if (typeof m.from === 'string') this.peers.onSignal(m.from, m.payload);
        return;
      case 'pong':
        return;
      case 'error':
        this.host.log(m.fatal ? 'warn' : 'debug', `tracker: ${m.code}: ${m.reason}`);
        if (m.code === 'unauthorized') this.host.onUnauthorized();
        return;
    }
  }

  // ------------------------------------------------------------------ stats, end

  stats(): Record<string, number | null> | null {
    try {
      return JSON.parse(this.engine.statsJson()) as Record<string, number | null>;
    } catch {
      return null;
    }
  }

  openPeers(): number {
    return this.peers.openCount();
  }

  connectStats(): { attempts: number; opened: number; failures: number } {
    return { attempts: this.peers.connectAttempts, opened: this.peers.connectsOpened, failures: this.peers.connectFailures };
  }

  /** Stop everything; pending requests are told to go to the CDN. */
  close(reason: string): void {
    if (this.closed) return;
    this.peers.closeAll();
    this.closed = true;
    this.tracker.close();
    if (this.tickTimer) clearTimeout(this.tickTimer);
    if (this.announceTimer) clearTimeout(this.announceTimer);
    if (this.bufferTimer) clearTimeout(this.bufferTimer);
    for (const c of this.http.values()) c.abort();
    this.http.clear();
    const ws = [...this.waiters.values()].flat();
    this.waiters.clear();
    queueMicrotask(() => {
      for (const w of ws) w.done({ ok: false, reason });
    });
    this.engine.free();
  }
}

function toArrayBuffer(u: Uint8Array): ArrayBuffer {
  if (u.byteOffset === 0 && u.byteLength === u.buffer.byteLength && u.buffer instanceof ArrayBuffer) return u.buffer;
  return u.slice().buffer as ArrayBuffer;
}

/** The whole object's size: Content-Length of a 200, or the total of a Content-Range. */
function totalOf(res: Response): number | undefined {
  if (res.status === 206) {
    const m = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
    return m ? Number(m[1]) : undefined;
  }
  const len = res.headers.get('content-length');
  if (len === null) return undefined;
  const n = Number(len);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
