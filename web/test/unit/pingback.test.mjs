// web/src/pingback.ts under node: reports are differences, the player watch counts stalls the
// way the browser runner does, the queue is bounded and survives an unreachable server, and
// the page going away sends a beacon.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importSdk } from './sdk-import.mjs';

const pb = await importSdk('src/pingback.ts');

const JOIN = {
  version: 1, session_id: 'sess-1', peer_id: '0123456789abcdef', stream: 'demo', trackers: [], stun: [],
  pingback: { url: 'http://pb.test/v1/pingback', interval_ms: 1_000_000 }, cdn: [], origin_public_key: '', key_id: '',
  p2p: false, p2p_reason: 'holdback', ticket: 't1.k.a.b', ticket_expires_ms: 0, engine: {}, api: [], server_time_ms: 0,
};

function world() {
  const w = { t: 1000, posts: [], beacons: [], status: 200, fail: false };
  w.env = {
    now: () => w.t,
    post: async (url, body) => {
      if (w.fail) throw new Error('unreachable');
      w.posts.push({ url, body: JSON.parse(body) });
      return w.status;
    },
    beacon: (url, body) => {
      w.beacons.push({ url, body: JSON.parse(body) });
      return true;
    },
  };
  w.counters = {
    httpBytes: 0, manifestBytes: 0, p2pDownBytes: 0, p2pUpBytes: 0, wastedBytes: 0, segmentsVerified: 0,
    verifyFailures: 0, peersConnected: 0, connectAttempts: 0, connectsOpened: 0, rendition: '720p',
  };
  return w;
}

function media() {
  const m = new EventTarget();
  m.paused = false;
  m.seeking = false;
  m.fire = (ev) => m.dispatchEvent(new Event(ev));
  return m;
}

test('reports carry differences, startup once, and the join decision', async () => {
  const w = world();
  const p = new pb.Pingback(() => ({ ...w.counters }), () => {}, w.env);
  assert.equal(p.tick(), null, 'no report before a join');
  p.setJoin(JOIN);
  const m = media();
  p.player.setMedia(m);
  w.t = 1700;
  m.fire('playing'); // startup 700 ms after the SDK started
  w.t = 5700;
  m.fire('waiting'); // a stall after 4 s of play
  w.t = 6200;
  m.fire('playing');
  w.t = 11000;
  w.counters.httpBytes = 5_000_000;
  w.counters.segmentsVerified = 3;
  const r1 = p.tick();
  assert.equal(r1.seq, 1);
  assert.equal(r1.period_ms, 10_000);
  assert.equal(r1.http_bytes, 5_000_000);
  assert.equal(r1.startup_ms, 700);
  assert.equal(r1.stalls, 1);
  assert.equal(r1.stall_ms, 500);
  assert.equal(r1.play_ms, 4_000 + 4_800);
  assert.equal(r1.p2p, false);
  assert.equal(r1.p2p_reason, 'holdback');
  assert.equal(r1.ticket, 't1.k.a.b');
  assert.equal(r1.sdk, 'shoal-web');
  w.t = 21000;
  w.counters.httpBytes = 6_000_000;
  const r2 = p.tick();
  assert.equal(r2.seq, 2);
  assert.equal(r2.http_bytes, 1_000_000);
  assert.equal(r2.startup_ms, undefined, 'startup goes once');
  assert.equal(r2.stalls, 0);
  assert.equal(r2.play_ms, 10_000);
  // Pausing is the viewer's choice: neither play nor stall time.
  // A `waiting` with seconds of media buffered is the decoder's hiccup, not a stall.
  m.currentTime = 100;
  m.buffered = { length: 1, start: () => 96, end: () => 104 };
  m.fire('waiting');
  w.t = 21500;
  m.fire('playing');
  m.buffered = { length: 1, start: () => 96, end: () => 100.5 }; // half a second left: a stall
  m.fire('waiting');
  w.t = 22000;
  m.fire('playing');
  w.t = 31000;
  const r3 = p.tick();
  assert.equal(r3.stalls, 1, 'only the waiting with the buffer nearly dry');
  assert.equal(r3.stall_ms, 500);
  assert.equal(r3.play_ms, 10_000 - 500);
  m.paused = true;
  m.fire('pause');
  m.fire('waiting');
  w.t = 41000;
  const r4 = p.tick();
  assert.equal(r4.play_ms, 0);
  assert.equal(r4.stall_ms, 0);
  assert.equal(r4.stalls, 0);
  await p.flush();
  assert.equal(w.posts.length, 1);
  assert.deepEqual(w.posts[0].body.map((r) => r.seq), [1, 2, 3, 4], 'one batch, in order');
  assert.deepEqual(w.posts[0].body.map((r) => r.age_ms), [30_000, 20_000, 10_000, 0]);
  await p.flush();
  assert.equal(w.posts.length, 1, 'delivered reports are forgotten');
  p.stop();
});

test('an unreachable server: reports kept (bounded), sent later; refused ones dropped', async () => {
  const w = world();
  const p = new pb.Pingback(() => ({ ...w.counters }), () => {}, w.env);
  p.setJoin(JOIN);
  w.fail = true;
  for (let i = 0; i < 6; i++) {
    w.t += 10_000;
    p.tick();
    await p.flush();
  }
  assert.equal(p.dropped, 2, 'the oldest beyond MAX_QUEUE are dropped');
  w.fail = false;
  await p.flush();
  assert.deepEqual(w.posts[0].body.map((r) => r.seq), [3, 4, 5, 6]);
  w.status = 400;
  w.t += 10_000;
  p.tick();
  await p.flush();
  w.status = 200;
  await p.flush();
  assert.equal(w.posts.length, 2, 'a 400 batch is not sent again');
  w.status = 503;
  w.t += 10_000;
  p.tick();
  await p.flush();
  w.status = 200;
  await p.flush();
  assert.equal(w.posts.length, 4, 'a 503 batch is sent again');
  assert.deepEqual(w.posts[3].body.map((r) => r.seq), [8]);
  p.stop();
});

test('a new session restarts the sequence; stop sends a beacon once', () => {
  const w = world();
  const p = new pb.Pingback(() => ({ ...w.counters }), () => {}, w.env);
  p.setJoin(JOIN);
  w.t += 10_000;
  p.tick();
  p.setJoin({ ...JOIN, session_id: 'sess-2', p2p: true, p2p_reason: undefined });
  w.t += 10_000;
  w.counters.p2pDownBytes = 1234;
  p.stop();
  p.stop();
  assert.equal(w.beacons.length, 1);
  const body = w.beacons[0].body;
  assert.deepEqual(body.map((r) => [r.session_id, r.seq]), [['sess-1', 1], ['sess-2', 1], ['sess-2', 2]].slice(0, body.length));
  assert.equal(body.at(-1).p2p_down_bytes, 1234);
  assert.equal(body.at(-1).p2p, true);
  assert.equal('p2p_reason' in body.at(-1), false);
});
