// The SDK's face: `new Shoal(options)`, `shoal.hlsConfig(config)` (hls.js fragment and
// playlist loaders), `shoal.attach(hls)` (player state from the media element), stats and
// events. Playback never depends on Shoal: without the API, the tracker, peers or the wasm,
// and on any engine failure, fragments load from the CDN with hls.js's own loader.

import { join, JoinError, type JoinResponse } from './api.js';
import { CdnBases, RESPONSE_TIMEOUT_MS, worthFailover } from './cdn.js';
import { consoleLogger, type Logger } from './log.js';
import { Pingback, type Counters as PingbackCounters } from './pingback.js';
import { parseMaster, parseMedia, renditionName, streamFromUrl, type ListedSegment } from './playlist.js';
import { Session, type Delivered } from './session.js';
import type { HlsLike, ShoalEvents, ShoalOptions, ShoalStats } from './types.js';
import { loadWasm } from './wasm.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- hls.js objects are used structurally */

type Listener<K extends keyof ShoalEvents> = (data: ShoalEvents[K]) => void;

const PLAYER_REPORT_MS = 250;
const JOIN_RETRY_MAX = 8;
const REJOIN_MIN_INTERVAL_MS = 30_000;
/** Longest wait for the first frame before P2P starts anyway. */
const START_GRACE_MS = 3_000;

function newStats(): any {
  return {
    aborted: false,
    loaded: 0,
    retry: 0,
    total: 0,
    chunkCount: 0,
    bwEstimate: 0,
    loading: { start: 0, first: 0, end: 0 },
    parsing: { start: 0, end: 0 },
    buffering: { start: 0, first: 0, end: 0 },
  };
}

function copyStats(to: any, from: any): void {
  if (!from || to === from) return;
  for (const k of ['aborted', 'loaded', 'retry', 'total', 'chunkCount', 'bwEstimate']) {
    if (k in from) to[k] = from[k];
  }
  if (from.loading) Object.assign(to.loading, from.loading);
}

interface Route {
  session: Session;
  rendition: string;
  seq: number;
}

export class Shoal {
  private readonly opts: ShoalOptions;
  private readonly log: Logger;
  private stream: string | null;
  private renditions = new Map<string, { url: string; bandwidth: number }>();
  private urlToRendition = new Map<string, string>();
  private playlists = new Map<string, ListedSegment[]>();
  private session: Session | null = null;
  private joined: JoinResponse | null = null;
  private p2pReason: string | null;
  private joining = false;
  private joinAttempts = 0;
  private noTrackerJoins = 0;
  private joinTimer: ReturnType<typeof setTimeout> | null = null;
  private lastRejoin = -Infinity;
  private media: HTMLMediaElement | null = null;
  private mediaCleanup: (() => void) | null = null;
  private waiting = false;
  private rendition: string | null = null;
  private nextSeq: number | null = null;
  private direct = { bytes: 0, loads: 0, fallbacks: 0 };
  private carried = { httpBytes: 0, p2pBytes: 0, uploadBytes: 0, manifestBytes: 0, segments: 0, fromPeers: 0, verified: 0, verifyFailures: 0, banned: 0, wasted: 0 };
  private listeners = new Map<keyof ShoalEvents, Set<(d: any) => void>>();
  private playerTimer: ReturnType<typeof setInterval>;
  private statsTimer: ReturnType<typeof setInterval> | null = null;
  private destroyed = false;
  private readonly pingback: Pingback;
  /** @internal CDN bases in failover order (master playlist directory, then the API's list). */
  readonly cdn = new CdnBases();

  constructor(options: ShoalOptions = {}) {
    this.opts = { ...options };
    this.log = options.log ?? consoleLogger;
    this.stream = options.stream ?? null;
    this.p2pReason = options.api ? 'joining' : 'no_api';
    this.pingback = new Pingback(() => this.pingbackCounters(), this.log);
    const maxPeers = options.maxPeers ?? 12;
    if (!(Number.isInteger(maxPeers) && maxPeers >= 0 && maxPeers <= 48)) throw new Error('maxPeers must be 0..=48');
    this.playerTimer = setInterval(() => this.reportPlayer(), PLAYER_REPORT_MS);
    const every = options.statsIntervalMs ?? 1_000;
    if (every > 0) this.statsTimer = setInterval(() => this.emit('stats', this.stats()), every);
    if (this.stream) this.startJoin();
  }

  // ------------------------------------------------------------------ public API

  /**
   * An hls.js config with Shoal's fragment and playlist loaders installed on top of `base`
   * (which is not modified). Pass it to `new Hls(...)`.
   */
  hlsConfig<T extends object>(base?: T): T & { fLoader: unknown; pLoader: unknown } {
    return { ...(base ?? ({} as T)), fLoader: this.fragmentLoaderClass(), pLoader: this.playlistLoaderClass() };
  }

  /** Follow the player's media element (buffer, playing/stalled) through `hls`. */
  attach(hls: HlsLike): void {
    this.pingback.attachHls(hls as { latency?: unknown });
    if (hls.media) this.setMedia(hls.media);
    hls.on('hlsMediaAttached', (_e, data: { media?: HTMLMediaElement }) => {
      if (data?.media) this.setMedia(data.media);
    });
    hls.on('hlsMediaDetaching', () => this.setMedia(null));
  }

  on<K extends keyof ShoalEvents>(event: K, fn: Listener<K>): void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
  }

  off<K extends keyof ShoalEvents>(event: K, fn: Listener<K>): void {
    this.listeners.get(event)?.delete(fn);
  }

  stats(): ShoalStats {
    const e = this.session?.stats() ?? null;
    const num = (k: string) => (e && typeof e[k] === 'number' ? (e[k] as number) : 0);
    const c = this.carried;
    const httpBytes = c.httpBytes + num('httpBytes') + this.direct.bytes;
    const p2pBytes = c.p2pBytes + num('p2pDownBytes');
    return {
      p2p: this.session !== null,
      p2pReason: this.session ? null : this.p2pReason,
      peerId: this.session?.peerId ?? null,
      peers: this.session?.openPeers() ?? 0,
      swarmSize: this.session?.swarmSize ?? 0,
      httpBytes,
      p2pBytes,
      uploadBytes: c.uploadBytes + num('p2pUpBytes'),
      manifestBytes: c.manifestBytes + num('manifestBytes'),
      share: httpBytes + p2pBytes > 0 ? p2pBytes / (httpBytes + p2pBytes) : 0,
      segments: c.segments + num('delivered') + this.direct.loads,
      segmentsFromPeers: c.fromPeers + num('deliveredFromPeers') + num('deliveredMixed'),
      segmentsVerified: c.verified + num('segmentsVerified'),
      verifyFailures: c.verifyFailures + num('verifyFailures'),
      peersBanned: c.banned + num('peersBanned'),
      directLoads: this.direct.loads,
      fallbacks: this.direct.fallbacks,
      wastedBytes: c.wasted + num('wastedBytes'),
      engine: e,
    };
  }

  /** Stop P2P and timers. Loaders made by this instance keep working, CDN only. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.playerTimer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.pingback.stop();
    if (this.joinTimer) clearTimeout(this.joinTimer);
    this.endSession('destroyed');
    this.p2pReason = 'destroyed';
    this.setMedia(null);
    this.listeners.clear();
  }

  /** What pingback reports (cumulative; docs/pingback.md). */
  private pingbackCounters(): PingbackCounters {
    const s = this.stats();
    const c = this.session?.connectStats();
    return {
      httpBytes: s.httpBytes,
      manifestBytes: s.manifestBytes,
      p2pDownBytes: s.p2pBytes,
      p2pUpBytes: s.uploadBytes,
      wastedBytes: s.wastedBytes,
      segmentsVerified: s.segmentsVerified,
      verifyFailures: s.verifyFailures,
      peersConnected: s.peers,
      connectAttempts: c?.attempts ?? 0,
      connectsOpened: c?.opened ?? 0,
      rendition: this.rendition,
    };
  }

  // ------------------------------------------------------------------ events

  private emit<K extends keyof ShoalEvents>(event: K, data: ShoalEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(data);
      } catch (e) {
        this.log('error', `a ${event} listener threw: ${(e as Error).message}`);
      }
    }
  }

  // ------------------------------------------------------------------ join and session

  private startJoin(): void {
    const configured = (Array.isArray(this.opts.api) ? this.opts.api : [this.opts.api]).filter(
      (a): a is string => typeof a === 'string' && a !== '',
    );
    if (this.joining || this.session || this.destroyed || configured.length === 0 || !this.stream) return;
    this.joining = true;
    this.p2pReason = 'joining';
    const apis = [...configured, ...(this.joined?.api ?? []).filter((a) => !configured.includes(a))];
    join(apis, this.stream, this.opts.token, this.opts.joinTimeoutMs ?? 5_000)
      .then((resp) => this.onJoined(resp))
      .catch((e: unknown) => {
        this.joining = false;
        const retry = e instanceof JoinError ? e.retry : true;
        const msg = (e as Error)?.message ?? String(e);
        this.p2pReason = retry ? 'api_unreachable' : 'join_refused';
        this.log('warn', `${msg}: playing from the CDN`);
        this.emit('p2p', { enabled: false, reason: this.p2pReason, peerId: null });
        if (retry && this.joinAttempts < JOIN_RETRY_MAX && !this.destroyed) {
          const wait = Math.min(60_000, 2_000 * 2 ** this.joinAttempts);
          this.joinAttempts += 1;
          this.joinTimer = setTimeout(() => {
            this.joinTimer = null;
            this.startJoin();
          }, wait);
        }
      });
  }

  private async onJoined(resp: JoinResponse): Promise<void> {
    this.joined = resp;
    this.cdn.add(Array.isArray(resp.cdn) ? resp.cdn : []);
    try {
      if (this.destroyed) return;
      this.pingback.setJoin(resp);
      if (!resp.p2p || resp.origin_public_key === '' || resp.trackers.length === 0) {
        this.p2pReason = resp.p2p_reason ?? (resp.trackers.length === 0 ? 'no_tracker' : 'no_origin_key');
        this.log('info', `P2P is off for this session (${this.p2pReason}): CDN only`);
        this.emit('p2p', { enabled: false, reason: this.p2pReason, peerId: resp.peer_id });
        if (this.p2pReason === 'no_tracker' && !this.destroyed) {
          // No tracker is live in the cluster (all of P2P down): transient, unlike a policy's
          // "no". Join again later (5 s doubling to 60 s); the CDN plays meanwhile.
          const wait = Math.min(60_000, 5_000 * 2 ** Math.min(4, this.noTrackerJoins));
          this.noTrackerJoins += 1;
          if (this.joinTimer) clearTimeout(this.joinTimer);
          this.joinTimer = setTimeout(() => {
            this.joinTimer = null;
            this.startJoin();
          }, wait);
        }
        return;
      }
      this.noTrackerJoins = 0;
      if (typeof RTCPeerConnection !== 'function' || typeof WebAssembly !== 'object') {
        this.p2pReason = 'unsupported';
        this.log('info', 'this browser lacks WebRTC or WebAssembly: CDN only');
        this.emit('p2p', { enabled: false, reason: 'unsupported', peerId: resp.peer_id });
        return;
      }
      // Start-up is the CDN's job (the first segments never wait for peers): fetching and
      // compiling the engine and opening peer connections wait until the first frame plays
      // (at most START_GRACE_MS), so they do not compete with it for the CPU and the network.
      await this.playbackStarted(START_GRACE_MS);
      if (this.destroyed) return;
      let wasm;
      try {
        wasm = await loadWasm(this.opts.wasmUrl);
      } catch (e) {
        this.p2pReason = 'wasm';
        this.log('warn', `loading the engine failed (${(e as Error).message}): CDN only`);
        this.emit('p2p', { enabled: false, reason: 'wasm', peerId: resp.peer_id });
        return;
      }
      if (this.destroyed) return;
      const stun = this.opts.stun ?? resp.stun;
      const engineConfig = { ...resp.engine, ...(this.opts.engine ?? {}) };
      let session: Session;
      try {
        session = new Session(
          wasm,
          resp,
          {
            engineConfig,
            iceServers: stun.length > 0 ? [{ urls: stun }] : [],
            maxPeers: this.opts.maxPeers ?? 12,
            connectTimeoutMs: this.opts.connectTimeoutMs ?? 15_000,
            cdn: this.cdn,
          },
          {
            log: this.log,
            onPeersChanged: (kind, peerId, open) =>
              this.emit(kind === 'connected' ? 'peerConnected' : 'peerDisconnected', { peerId, peers: open }),
            onVerification: (reason) => this.emit('verification', { reason }),
            onUnauthorized: () => this.rejoin(),
          },
        );
      } catch (e) {
        this.p2pReason = 'engine_config';
        this.log('warn', `engine refused its configuration (${(e as Error).message}): CDN only`);
        this.emit('p2p', { enabled: false, reason: 'engine_config', peerId: resp.peer_id });
        return;
      }
      this.session = session;
      this.p2pReason = null;
      for (const [name, r] of this.renditions) session.addRendition(name, r.url, r.bandwidth);
      for (const [name, segs] of this.playlists) session.playlist(name, segs);
      this.reportPlayer();
      this.log('info', `P2P on: peer ${resp.peer_id}, trackers ${resp.trackers.join(' ')}`);
      this.emit('p2p', { enabled: true, reason: null, peerId: resp.peer_id });
    } finally {
      this.joining = false;
    }
  }

  /** Keep the counters of a session that ends, so stats stay cumulative. */
  private endSession(reason: string): void {
    const s = this.session;
    if (!s) return;
    const e = s.stats();
    const n = (k: string) => (e && typeof e[k] === 'number' ? (e[k] as number) : 0);
    const c = this.carried;
    c.httpBytes += n('httpBytes');
    c.p2pBytes += n('p2pDownBytes');
    c.uploadBytes += n('p2pUpBytes');
    c.manifestBytes += n('manifestBytes');
    c.segments += n('delivered');
    c.fromPeers += n('deliveredFromPeers') + n('deliveredMixed');
    c.verified += n('segmentsVerified');
    c.verifyFailures += n('verifyFailures');
    c.banned += n('peersBanned');
    c.wasted += n('wastedBytes');
    this.session = null;
    s.close(reason);
  }

  private rejoin(): void {
    const now = performance.now();
    if (now - this.lastRejoin < REJOIN_MIN_INTERVAL_MS || this.destroyed) return;
    this.lastRejoin = now;
    this.log('info', 'tracker refused the ticket: joining again');
    this.endSession('rejoin');
    this.joinAttempts = 0;
    this.startJoin();
  }

  // ------------------------------------------------------------------ playlists

  private registerRendition(name: string, url: string, bandwidth: number): void {
    this.renditions.set(name, { url, bandwidth });
    this.urlToRendition.set(url, name);
    this.session?.addRendition(name, url, bandwidth);
  }

  private renditionOfUrl(url: string): string | undefined {
    return this.urlToRendition.get(url) ?? this.urlToRendition.get(url.split('?')[0] as string);
  }

  /** @internal Every playlist hls.js loads passes here (master and media). */
  onPlaylist(type: string, url: string, text: unknown): void {
    if (typeof text !== 'string') return;
    if (type === 'manifest') {
      this.cdn.setPrimary(url);
      if (!this.stream) {
        this.stream = streamFromUrl(url);
        if (this.stream) this.startJoin();
        else this.p2pReason = 'no_stream_name';
      }
      const variants = parseMaster(text, url);
      for (const v of variants) if (!this.renditions.has(v.name)) this.registerRendition(v.name, v.url, v.bandwidth);
      if (variants.length === 1 && variants[0]?.name === 'main') this.onMedia('main', url, text);
      return;
    }
    if (type !== 'level') return; // alternate audio/subtitle tracks stay on the CDN
    let name = this.renditionOfUrl(url);
    if (!name) {
      name = renditionName(url, this.renditions.size, [...this.renditions.keys()]);
      this.registerRendition(name, url, 0);
    }
    this.onMedia(name, url, text);
  }

  private onMedia(name: string, url: string, text: string): void {
    const m = parseMedia(text, url);
    if (!m) return;
    if (!m.shareable) {
      this.playlists.delete(name);
      return;
    }
    this.playlists.set(name, m.segments);
    // hls.js (re)loads the playlist of the level it plays: the swarm to announce in.
    if (this.rendition !== name) {
      this.rendition = name;
      this.nextSeq = null;
    }
    this.session?.playlist(name, m.segments);
    this.reportPlayer();
  }

  // ------------------------------------------------------------------ player

  private setMedia(m: HTMLMediaElement | null): void {
    if (this.media === m) return;
    this.pingback.player.setMedia(m);
    this.mediaCleanup?.();
    this.mediaCleanup = null;
    this.media = m;
    this.waiting = false;
    if (!m) return;
    const onWaiting = () => {
      this.waiting = true;
      this.reportPlayer();
    };
    const onPlaying = () => {
      this.waiting = false;
      this.reportPlayer();
    };
    const onOther = () => this.reportPlayer();
    m.addEventListener('waiting', onWaiting);
    m.addEventListener('playing', onPlaying);
    for (const ev of ['pause', 'seeking', 'seeked', 'emptied']) m.addEventListener(ev, onOther);
    this.mediaCleanup = () => {
      m.removeEventListener('waiting', onWaiting);
      m.removeEventListener('playing', onPlaying);
      for (const ev of ['pause', 'seeking', 'seeked', 'emptied']) m.removeEventListener(ev, onOther);
    };
  }

  /** Resolves once the media element has played a frame, or after `maxMs`. */
  private playbackStarted(maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const started = () => {
        const m = this.media;
        return !!m && m.readyState >= 3 && !m.paused && m.currentTime > 0;
      };
      if (started()) {
        resolve();
        return;
      }
      const t0 = performance.now();
      const check = setInterval(() => {
        if (started() || performance.now() - t0 >= maxMs || this.destroyed) {
          clearInterval(check);
          resolve();
        }
      }, 50);
    });
  }

  private bufferedAheadMs(): number {
    const m = this.media;
    if (!m) return 0;
    const t = m.currentTime;
    const b = m.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && b.end(i) > t) return Math.round((b.end(i) - t) * 1000);
    }
    return 0;
  }

  private reportPlayer(): void {
    const s = this.session;
    const r = this.rendition;
    if (!s || !r) return;
    const m = this.media;
    const playing = !!m && !m.paused && !m.seeking && !this.waiting && m.readyState >= 3;
    s.playerState({ rendition: r, playing, bufferedAheadMs: this.bufferedAheadMs(), nextSeq: this.nextSeq });
  }

  // ------------------------------------------------------------------ fragments

  /** @internal Whether the engine can serve this fragment request, and for which rendition. */
  route(ctx: any): Route | null {
    const s = this.session;
    const frag = ctx?.frag;
    if (!s || !frag || typeof frag.sn !== 'number' || ctx.part) return null;
    // hls.js sets rangeStart = rangeEnd = 0 for a whole fragment.
    if ((ctx.rangeStart ?? 0) > 0 || (ctx.rangeEnd ?? 0) > 0) return null;
    if (frag.byteRangeStartOffset !== undefined && frag.byteRangeStartOffset !== null && frag.byteRange?.length) return null;
    let rendition = typeof frag.baseurl === 'string' ? this.renditionOfUrl(frag.baseurl) : undefined;
    const seq = frag.sn as number;
    if (!rendition) {
      for (const [name, segs] of this.playlists) {
        if (segs.some((x) => x.seq === seq && x.url === ctx.url)) {
          rendition = name;
          break;
        }
      }
    }
    if (!rendition) return null;
    const listed = this.playlists.get(rendition)?.find((x) => x.seq === seq);
    if (!listed || listed.url !== ctx.url) return null;
    return { session: s, rendition, seq };
  }

  /** @internal */
  onFragmentRequested(r: Route): void {
    this.rendition = r.rendition;
    this.nextSeq = r.seq;
    this.reportPlayer();
  }

  /** @internal */
  onFragmentLoaded(rendition: string | null, seq: number, bytes: number, d: Delivered | null): void {
    if (rendition !== null && rendition === this.rendition && this.nextSeq === seq) this.nextSeq = seq + 1;
    if (!d) {
      this.direct.bytes += bytes;
      this.direct.loads += 1;
    }
    this.emit('segment', {
      rendition: rendition ?? '',
      seq,
      bytes,
      source: d ? d.source : 'cdn',
      verified: d ? d.verified : false,
      direct: !d,
    });
  }

  /** @internal */
  onFallback(reason: string): void {
    this.direct.fallbacks += 1;
    this.log('info', `loading from the CDN directly: ${reason}`);
  }

  /** @internal How long a fragment may wait for the engine before it is loaded directly. */
  watchdogMs(loadPolicyMaxMs: number | undefined): number {
    const cap = typeof loadPolicyMaxMs === 'number' && loadPolicyMaxMs > 0 ? loadPolicyMaxMs : 120_000;
    return Math.min(cap, Math.max(10_000, this.bufferedAheadMs() + 10_000));
  }

  /** @internal Load with hls.js's own loader class, moving to the same path under the next
   * CDN base on a network error, a 5xx or a timeout (each base but the last gets
   * RESPONSE_TIMEOUT_MS to first byte); the base that answered is tried first next time.
   * `setInner` receives every loader made, so abort/destroy reach the one in flight. */
  loadWithFailover(config: any, context: any, loaderConfig: any, callbacks: any, setInner: (l: any) => void): void {
    const tries = this.cdn.candidates(String(context?.url ?? ''));
    const attempt = (i: number) => {
      const inner = new config.loader(config);
      setInner(inner);
      context.url = tries[i];
      const isLast = i === tries.length - 1;
      let cfg = loaderConfig;
      if (!isLast && loaderConfig) {
        const lp = loaderConfig.loadPolicy;
        cfg = {
          ...loaderConfig,
          timeout: Math.min(loaderConfig.timeout ?? Infinity, RESPONSE_TIMEOUT_MS),
          ...(lp ? { loadPolicy: { ...lp, maxTimeToFirstByteMs: Math.min(lp.maxTimeToFirstByteMs ?? Infinity, RESPONSE_TIMEOUT_MS) } } : {}),
        };
      }
      const next = (what: string): boolean => {
        if (isLast) return false;
        this.log('info', `${tries[i]}: ${what}; trying ${tries[i + 1]}`);
        try {
          inner.destroy?.();
        } catch {
          // gone already
        }
        attempt(i + 1);
        return true;
      };
      inner.load(context, cfg, {
        ...callbacks,
        onSuccess: (response: any, stats: any, ctx: any, details: any) => {
          this.cdn.worked(tries[i] as string);
          callbacks.onSuccess(response, stats, ctx, details);
        },
        onError: (err: any, ctx: any, details: any, stats: any) => {
          if (worthFailover(Number(err?.code ?? 0)) && next(`HTTP ${err?.code ?? 0}`)) return;
          callbacks.onError(err, ctx, details, stats);
        },
        onTimeout: (stats: any, ctx: any, details: any) => {
          if (next('timeout')) return;
          callbacks.onTimeout(stats, ctx, details);
        },
      });
    };
    attempt(0);
  }

  private fragmentLoaderClass(): unknown {
    const shoal = this;
    return class ShoalFragmentLoader {
      context: any = null;
      stats: any = newStats();
      private readonly config: any;
      private inner: any = null;
      private cancel: (() => void) | null = null;
      private timer: ReturnType<typeof setTimeout> | null = null;
      private callbacks: any = null;
      private finished = false;

      constructor(config: any) {
        this.config = config;
      }

      load(context: any, loaderConfig: any, callbacks: any): void {
        this.context = context;
        this.callbacks = callbacks;
        this.stats.loading.start = performance.now();
        let route: Route | null = null;
        try {
          route = shoal.route(context);
        } catch (e) {
          shoal.log('error', `routing a fragment: ${(e as Error).message}`);
        }
        if (!route) {
          this.loadDirect(context, loaderConfig, callbacks, null);
          return;
        }
        const r = route;
        shoal.onFragmentRequested(r);
        const fallback = (reason: string) => {
          if (this.finished || this.inner) return;
          this.stopWaiting();
          shoal.onFallback(`${r.rendition}/${r.seq}: ${reason}`);
          this.loadDirect(context, loaderConfig, callbacks, r.rendition);
        };
        this.timer = setTimeout(() => fallback('engine did not deliver in time'), shoal.watchdogMs(loaderConfig?.loadPolicy?.maxLoadTimeMs));
        this.cancel = r.session.request(r.rendition, r.seq, (o) => {
          this.cancel = null;
          if (this.finished) return;
          if (!o.ok) {
            fallback(o.reason);
            return;
          }
          this.stopWaiting();
          this.deliver(r, o.delivery);
        });
      }

      private deliver(r: Route, d: Delivered): void {
        this.finished = true;
        const now = performance.now();
        const st = this.stats;
        const total = Math.max(1, d.totalMs);
        // What the CDN would have taken (the engine's timing), ending now: ABR is not misled
        // by a peer delivery, nor by time spent waiting for one.
        st.loading.end = now;
        st.loading.start = now - total;
        st.loading.first = Math.min(now, st.loading.start + Math.max(0, d.firstByteMs));
        st.loaded = d.data.byteLength;
        st.total = d.data.byteLength;
        st.chunkCount = 1;
        shoal.onFragmentLoaded(r.rendition, r.seq, d.data.byteLength, d);
        const cb = this.callbacks;
        const ctx = this.context;
        cb.onSuccess({ url: ctx.url, data: d.data }, st, ctx, null);
      }

      private stopWaiting(): void {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        const c = this.cancel;
        this.cancel = null;
        c?.();
      }

      private loadDirect(context: any, loaderConfig: any, callbacks: any, rendition: string | null): void {
        const sn = context?.frag?.sn;
        const wrap = {
          onSuccess: (response: any, stats: any, ctx: any, details: any) => {
            this.finished = true;
            copyStats(this.stats, stats);
            const bytes = response?.data?.byteLength ?? 0;
            if (typeof sn === 'number') shoal.onFragmentLoaded(rendition ?? shoal.route(ctx)?.rendition ?? null, sn, bytes, null);
            callbacks.onSuccess(response, this.stats, ctx, details);
          },
          onError: (err: any, ctx: any, details: any, stats: any) => {
            this.finished = true;
            copyStats(this.stats, stats);
            callbacks.onError(err, ctx, details, this.stats);
          },
          onTimeout: (stats: any, ctx: any, details: any) => {
            this.finished = true;
            copyStats(this.stats, stats);
            callbacks.onTimeout(stats === this.stats ? stats : this.stats, ctx, details);
          },
          onAbort: (stats: any, ctx: any, details: any) => {
            copyStats(this.stats, stats);
            callbacks.onAbort?.(this.stats, ctx, details);
          },
          onProgress: callbacks.onProgress
            ? (stats: any, ctx: any, data: any, details: any) => {
                copyStats(this.stats, stats);
                callbacks.onProgress(this.stats, ctx, data, details);
              }
            : undefined,
        };
        shoal.loadWithFailover(this.config, context, loaderConfig, wrap, (l) => {
          this.inner = l;
        });
      }

      abort(): void {
        if (this.inner) {
          this.inner.abort();
          return;
        }
        if (this.finished) return;
        this.finished = true;
        this.stopWaiting();
        this.stats.aborted = true;
        this.callbacks?.onAbort?.(this.stats, this.context, null);
      }

      destroy(): void {
        this.finished = true;
        this.stopWaiting();
        this.inner?.destroy();
        this.inner = null;
        this.callbacks = null;
      }

      getCacheAge(): number | null {
        return this.inner?.getCacheAge?.() ?? null;
      }

      getResponseHeader(name: string): string | null {
        return this.inner?.getResponseHeader?.(name) ?? null;
      }
    };
  }

  private playlistLoaderClass(): unknown {
    const shoal = this;
    return class ShoalPlaylistLoader {
      private inner: any;
      private readonly config: any;

      constructor(config: any) {
        this.config = config;
        this.inner = new config.loader(config);
      }

      get context(): any {
        return this.inner.context;
      }

      set context(v: any) {
        this.inner.context = v;
      }

      get stats(): any {
        return this.inner.stats;
      }

      set stats(v: any) {
        this.inner.stats = v;
      }

      load(context: any, loaderConfig: any, callbacks: any): void {
        const onSuccess = callbacks.onSuccess;
        const wrapped = {
          ...callbacks,
          onSuccess: (response: any, stats: any, ctx: any, details: any) => {
            try {
              shoal.onPlaylist(String(ctx?.type ?? ''), String(response?.url || ctx?.url || ''), response?.data);
            } catch (e) {
              shoal.log('error', `reading a playlist: ${(e as Error).message}`);
            }
            onSuccess(response, stats, ctx, details);
          },
        };
        // The first load (the master) has made no loader of ours yet: hls.js built this one.
        this.inner.destroy?.();
        shoal.loadWithFailover(this.config, context, loaderConfig, wrapped, (l) => {
          this.inner = l;
        });
      }

      abort(): void {
        this.inner.abort();
      }

      destroy(): void {
        this.inner.destroy();
      }

      getCacheAge(): number | null {
        return this.inner.getCacheAge?.() ?? null;
      }

      getResponseHeader(name: string): string | null {
        return this.inner.getResponseHeader?.(name) ?? null;
      }
    };
  }
}
