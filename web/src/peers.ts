// One RTCPeerConnection and one ordered, reliable DataChannel (label `shoal`, binary) per
// neighbour, set up through the tracker's `signal` relay with trickle ICE. Payload shapes are
// the native SDK's (`crates/peer/src/signal.rs`): `{kind: "offer"|"answer", sdp}`,
// `{kind: "candidate", candidate, mid}`, `{kind: "bye"}`. The peer that got the other as a
// tracker candidate offers; on glare the offer of the lower peer id wins.

import type { Logger } from './log.js';

export type Signal =
  | { kind: 'offer'; sdp: string }
  | { kind: 'answer'; sdp: string }
  | { kind: 'candidate'; candidate: string; mid?: string }
  | { kind: 'bye' };

export interface PeerHost {
  /** Send a payload to `to` through the tracker. */
  signal(to: string, payload: Signal): void;
  onOpen(handle: number, remote: string): void;
  onMessage(handle: number, data: Uint8Array): void;
  /** The channel closed; `wasOpen` says whether `onOpen` was called for it. */
  onClose(handle: number, remote: string, wasOpen: boolean): void;
  onBufferedLow(handle: number): void;
}

export interface PeerOptions {
  iceServers: RTCIceServer[];
  maxPeers: number;
  connectTimeoutMs: number;
}

/** Largest SDP read, and largest candidate line (as the native SDK bounds them). */
const MAX_SDP = 16 * 1024;
const MAX_CANDIDATE = 512;
/** Candidates kept per peer while its description is not set yet, and peers kept so. */
const EARLY_CANDIDATES = 16;
const EARLY_PEERS = 64;
/** A peer whose connection failed is not tried again for this long. */
const RETRY_FAILED_AFTER_MS = 60_000;
/** `bufferedAmountLowThreshold` of every channel. */
export const BUFFERED_LOW = 64 * 1024;
/** Largest DataChannel message read (the wire protocol's are at most 16 KiB). */
const MAX_MESSAGE = 64 * 1024;

interface Conn {
  handle: number;
  remote: string;
  pc: RTCPeerConnection;
  dc: RTCDataChannel | null;
  offerer: boolean;
  /** The remote description is set; candidates can be added. */
  remoteSet: boolean;
  pending: RTCIceCandidateInit[];
  open: boolean;
  closed: boolean;
  timer: ReturnType<typeof setTimeout>;
}

/** The glare rule of `shoal_proto::tracker::offer_wins`: byte order of the peer ids. */
export function offerWins(own: string, other: string): boolean {
  return own < other;
}

export function parseSignal(v: unknown): Signal | null {
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  switch (o.kind) {
    case 'offer':
    case 'answer':
      if (typeof o.sdp !== 'string' || o.sdp.length > MAX_SDP) return null;
      return { kind: o.kind, sdp: o.sdp };
    case 'candidate':
      if (typeof o.candidate !== 'string' || o.candidate.length > MAX_CANDIDATE) return null;
      if (o.mid !== undefined && o.mid !== null && typeof o.mid !== 'string') return null;
      return typeof o.mid === 'string'
        ? { kind: 'candidate', candidate: o.candidate, mid: o.mid }
        : { kind: 'candidate', candidate: o.candidate };
    case 'bye':
      return { kind: 'bye' };
    default:
      return null;
  }
}

export class Peers {
  private conns = new Map<number, Conn>();
  private byRemote = new Map<string, number>();
  private early = new Map<string, { at: number; cands: RTCIceCandidateInit[] }>();
  private failed = new Map<string, number>();
  private banned = new Set<string>();
  private nextHandle = 1;
  private closedAll = false;
  connectAttempts = 0;
  connectsOpened = 0;
  connectFailures = 0;

  constructor(
    private readonly me: string,
    private readonly opts: PeerOptions,
    private readonly host: PeerHost,
    private readonly log: Logger,
  ) {}

  /** Connections open or being set up. */
  get count(): number {
    return this.conns.size;
  }

  room(): number {
    return Math.max(0, this.opts.maxPeers - this.conns.size);
  }

  openRemotes(): string[] {
    const out: string[] = [];
    for (const c of this.conns.values()) if (c.open) out.push(c.remote);
    return out;
  }

  openCount(): number {
    let n = 0;
    for (const c of this.conns.values()) if (c.open) n += 1;
    return n;
  }

  remoteOf(handle: number): string | null {
    return this.conns.get(handle)?.remote ?? null;
  }

  mayConnect(remote: string): boolean {
    const failedAt = this.failed.get(remote);
    return (
      remote !== this.me &&
      !this.banned.has(remote) &&
      !this.byRemote.has(remote) &&
      (failedAt === undefined || performance.now() - failedAt > RETRY_FAILED_AFTER_MS)
    );
  }

  ban(remote: string): void {
    this.banned.add(remote);
  }

  /** Bytes queued in the channel to `handle` (0 when it is gone). */
  bufferedAmount(handle: number): number {
    const dc = this.conns.get(handle)?.dc;
    return dc && dc.readyState === 'open' ? dc.bufferedAmount : 0;
  }

  openHandles(): number[] {
    const out: number[] = [];
    for (const c of this.conns.values()) if (c.open) out.push(c.handle);
    return out;
  }

  /** Write one message; a channel that refuses it is closed. */
  send(handle: number, data: Uint8Array): void {
    const c = this.conns.get(handle);
    if (!c || !c.dc || c.dc.readyState !== 'open') return;
    try {
      c.dc.send(data as Uint8Array<ArrayBuffer>);
    } catch (e) {
      this.log('debug', `send to ${c.remote}: ${(e as Error).message}`);
      this.close(handle, false);
    }
  }

  private newConn(remote: string, offerer: boolean): Conn {
    const pc = new RTCPeerConnection({ iceServers: this.opts.iceServers });
    const handle = this.nextHandle++;
    const c: Conn = {
      handle,
      remote,
      pc,
      dc: null,
      offerer,
      remoteSet: false,
      pending: [],
      open: false,
      closed: false,
      timer: setTimeout(() => {
        if (!c.open && !c.closed) {
          this.log('info', `connection to ${remote} did not open in time`);
          this.failed.set(remote, performance.now());
          this.connectFailures += 1;
          this.close(handle, true);
        }
      }, this.opts.connectTimeoutMs),
    };
    pc.onicecandidate = (ev: RTCPeerConnectionIceEvent) => {
      if (c.closed) return;
      const cand = ev.candidate;
      if (!cand || !cand.candidate) return; // end of candidates: the native side needs nothing
      // Browsers offer TCP candidates too; peers connect over UDP only.
      if (/ tcp /i.test(cand.candidate)) return;
      const sig: Signal = { kind: 'candidate', candidate: cand.candidate };
      if (cand.sdpMid !== null && cand.sdpMid !== undefined) sig.mid = cand.sdpMid;
      this.host.signal(remote, sig);
    };
    pc.onconnectionstatechange = () => {
      if (c.closed) return;
      const s = pc.connectionState;
      if (s === 'failed' || s === 'closed') {
        if (!c.open) {
          this.failed.set(remote, performance.now());
          this.connectFailures += 1;
        }
        this.close(handle, !c.open);
      }
    };
    this.conns.set(handle, c);
    this.byRemote.set(remote, handle);
    this.connectAttempts += 1;
    return c;
  }

  private setupChannel(c: Conn, dc: RTCDataChannel): void {
    c.dc = dc;
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = BUFFERED_LOW;
    dc.onopen = () => {
      if (c.closed || c.open) return;
      c.open = true;
      clearTimeout(c.timer);
      this.failed.delete(c.remote);
      this.connectsOpened += 1;
      this.host.onOpen(c.handle, c.remote);
    };
    dc.onmessage = (ev: MessageEvent) => {
      if (c.closed || !c.open) return;
      const d = ev.data;
      if (d instanceof ArrayBuffer && d.byteLength <= MAX_MESSAGE) {
        this.host.onMessage(c.handle, new Uint8Array(d));
      } else {
        // Text or oversized messages are not part of the protocol.
        this.host.onMessage(c.handle, new Uint8Array(0));
      }
    };
    dc.onclose = () => this.close(c.handle, false);
    dc.onbufferedamountlow = () => {
      if (!c.closed && c.open) this.host.onBufferedLow(c.handle);
    };
  }

  /** Offer a connection to a tracker candidate. */
  connectTo(remote: string): void {
    if (this.closedAll || !this.mayConnect(remote) || this.room() === 0) return;
    const c = this.newConn(remote, true);
    this.setupChannel(c, c.pc.createDataChannel('shoal', { ordered: true }));
    c.pc
      .createOffer()
      .then((offer) => (c.closed ? undefined : c.pc.setLocalDescription(offer)))
      .then(() => {
        const sdp = c.pc.localDescription?.sdp;
        if (!c.closed && sdp) this.host.signal(remote, { kind: 'offer', sdp });
      })
      .catch((e: Error) => {
        this.log('debug', `offer to ${remote}: ${e.message}`);
        this.close(c.handle, false);
      });
  }

  onSignal(from: string, raw: unknown): void {
    if (this.closedAll || this.banned.has(from) || from === this.me) return;
    const sig = parseSignal(raw);
    if (!sig) {
      this.log('debug', `unreadable signal from ${from}`);
      return;
    }
    const h = this.byRemote.get(from);
    const c = h === undefined ? undefined : this.conns.get(h);
    switch (sig.kind) {
      case 'offer': {
        if (c) {
          const oursPending = c.offerer && !c.remoteSet;
          if (oursPending && offerWins(this.me, from)) return; // glare: our offer wins
          this.close(c.handle, false, false);
        }
        if (this.room() === 0) {
          this.host.signal(from, { kind: 'bye' });
          return;
        }
        this.answer(from, sig.sdp);
        return;
      }
      case 'answer': {
        if (!c || !c.offerer || c.remoteSet) return;
        c.remoteSet = true;
        c.pc
          .setRemoteDescription({ type: 'answer', sdp: sig.sdp })
          .then(() => this.applyPending(c))
          .catch((e: Error) => {
            this.log('debug', `answer from ${from}: ${e.message}`);
            this.close(c.handle, true);
          });
        return;
      }
      case 'candidate': {
        const text = sig.candidate.trim().replace(/^a=/, '');
        if (text === '') return;
        const init: RTCIceCandidateInit =
          sig.mid !== undefined ? { candidate: text, sdpMid: sig.mid } : { candidate: text, sdpMLineIndex: 0 };
        if (c && c.remoteSet) {
          c.pending.push(init);
          this.applyPending(c);
        } else if (c) {
          if (c.pending.length < EARLY_CANDIDATES) c.pending.push(init);
        } else {
          let e = this.early.get(from);
          if (!e) {
            if (this.early.size >= EARLY_PEERS) return;
            e = { at: performance.now(), cands: [] };
            this.early.set(from, e);
          }
          if (e.cands.length < EARLY_CANDIDATES) e.cands.push(init);
        }
        return;
      }
      case 'bye': {
        if (c) {
          if (!c.open) this.failed.set(from, performance.now());
          this.close(c.handle, false, false);
        }
        return;
      }
    }
  }

  private answer(from: string, sdp: string): void {
    const c = this.newConn(from, false);
    c.pc.ondatachannel = (ev: RTCDataChannelEvent) => {
      if (!c.closed && !c.dc) this.setupChannel(c, ev.channel);
    };
    const early = this.early.get(from);
    this.early.delete(from);
    if (early && performance.now() - early.at < 20_000) c.pending.push(...early.cands);
    c.remoteSet = true;
    c.pc
      .setRemoteDescription({ type: 'offer', sdp })
      .then(() => (c.closed ? undefined : c.pc.createAnswer()))
      .then((answer) => (c.closed || !answer ? undefined : c.pc.setLocalDescription(answer)))
      .then(() => {
        const local = c.pc.localDescription?.sdp;
        if (c.closed || !local) return;
        this.host.signal(from, { kind: 'answer', sdp: local });
        this.applyPending(c);
      })
      .catch((e: Error) => {
        this.log('debug', `offer from ${from}: ${e.message}`);
        this.close(c.handle, true);
      });
  }

  private applyPending(c: Conn): void {
    if (c.closed || !c.pc.remoteDescription) return;
    const cands = c.pending;
    c.pending = [];
    for (const init of cands) {
      c.pc.addIceCandidate(init).catch((e: Error) => {
        // mDNS names the other side cannot resolve, unknown mids: not fatal.
        this.log('debug', `candidate from ${c.remote} ignored: ${e.message}`);
      });
    }
  }

  /**
   * Forget a connection. `bye` tells the remote through the tracker when the channel never
   * opened (an open channel's closing is seen by the remote itself).
   */
  close(handle: number, bye: boolean, notify = true): void {
    const c = this.conns.get(handle);
    if (!c || c.closed) return;
    c.closed = true;
    clearTimeout(c.timer);
    this.conns.delete(handle);
    if (this.byRemote.get(c.remote) === handle) this.byRemote.delete(c.remote);
    if (c.dc) {
      c.dc.onopen = c.dc.onmessage = c.dc.onclose = c.dc.onbufferedamountlow = null;
      try {
        c.dc.close();
      } catch {
        // already closed
      }
    }
    c.pc.onicecandidate = c.pc.onconnectionstatechange = c.pc.ondatachannel = null;
    try {
      c.pc.close();
    } catch {
      // already closed
    }
    if (bye && !c.open && !this.closedAll) this.host.signal(c.remote, { kind: 'bye' });
    if (notify || c.open) this.host.onClose(handle, c.remote, c.open);
  }

  closeAll(): void {
    for (const h of [...this.conns.keys()]) this.close(h, false);
    this.closedAll = true;
  }
}
