// The browser SDK's failover rules (same as the native SDK's): CDN bases, tracker liveness,
// pingback alternates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importSdk } from './sdk-import.mjs';

const cdn = await importSdk('src/cdn.ts');
const tracker = await importSdk('src/tracker.ts');
const pb = await importSdk('src/pingback.ts');

test('CDN bases: the master directory first, then the API list; the base that worked leads', () => {
  const c = new cdn.CdnBases();
  assert.deepEqual(c.candidates('http://a/live/demo/1.ts'), ['http://a/live/demo/1.ts'], 'no bases: as given');
  c.setPrimary('http://a/live/demo/master.m3u8?x=1');
  c.add(['http://b/live/demo', 'http://a/live/demo/', 'not a url']);
  assert.equal(c.size, 2);
  assert.deepEqual(c.candidates('http://a/live/demo/240p/7.ts'), ['http://a/live/demo/240p/7.ts', 'http://b/live/demo/240p/7.ts']);
  c.worked('http://b/live/demo/240p/7.ts');
  assert.deepEqual(c.candidates('http://a/live/demo/240p/8.ts'), ['http://b/live/demo/240p/8.ts', 'http://a/live/demo/240p/8.ts']);
  assert.deepEqual(c.candidates('http://elsewhere/x'), ['http://elsewhere/x']);
  assert.ok(cdn.worthFailover(0) && cdn.worthFailover(503) && !cdn.worthFailover(404) && !cdn.worthFailover(200));
});

test('fetchWithFailover: errors and 5xx move on, 404 does not, the last base waits', async () => {
  const c = new cdn.CdnBases();
  c.setPrimary('http://a/l/master.m3u8');
  c.add(['http://b/l/', 'http://c/l/']);
  const seen = [];
  const fake = async (u) => {
    seen.push(u);
    if (u.startsWith('http://a/')) throw new TypeError('connection refused');
    if (u.startsWith('http://b/')) return new Response('busy', { status: 503 });
    return new Response('ok', { status: 200 });
  };
  const res = await cdn.fetchWithFailover(c, 'http://a/l/1.ts', {}, new AbortController().signal, fake);
  assert.equal(await res.text(), 'ok');
  assert.deepEqual(seen, ['http://a/l/1.ts', 'http://b/l/1.ts', 'http://c/l/1.ts']);
  seen.length = 0;
  await cdn.fetchWithFailover(c, 'http://a/l/2.ts', {}, new AbortController().signal, fake);
  assert.deepEqual(seen, ['http://c/l/2.ts'], 'the base that answered goes first');
  const notFound = async (u) => {
    seen.push(u);
    return new Response('no', { status: 404 });
  };
  seen.length = 0;
  const r = await cdn.fetchWithFailover(c, 'http://a/l/3.ts', {}, new AbortController().signal, notFound);
  assert.equal(r.status, 404);
  assert.equal(seen.length, 1, 'a 404 is the same everywhere');
});

test('fetchWithFailover: a base that does not answer in time is left', async () => {
  const c = new cdn.CdnBases();
  c.setPrimary('http://slow/l/master.m3u8');
  c.add(['http://fast/l/']);
  const fake = (u, init) =>
    u.startsWith('http://slow/')
      ? new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))))
      : Promise.resolve(new Response('ok'));
  const t = Date.now();
  const res = await cdn.fetchWithFailover(c, 'http://slow/l/1.ts', {}, new AbortController().signal, fake);
  assert.equal(await res.text(), 'ok');
  const took = Date.now() - t;
  assert.ok(took >= cdn.RESPONSE_TIMEOUT_MS - 50 && took < cdn.RESPONSE_TIMEOUT_MS + 1000, `${took} ms`);
});

test('tracker liveness: ping when idle, leave a tracker that answers nothing', () => {
  const l = new tracker.Liveness();
  l.sent(0);
  assert.equal(l.check(tracker.REPLY_TIMEOUT_MS - 1), 'fine');
  assert.equal(l.check(tracker.REPLY_TIMEOUT_MS), 'silent', 'announce never answered');
  const m = new tracker.Liveness();
  m.received(0, false);
  assert.equal(m.check(60_000), 'fine', 'no ping before the first peers answer');
  m.sent(10);
  m.received(20, true);
  assert.equal(m.check(20 + tracker.IDLE_PING_MS), 'ping');
  m.sent(20 + tracker.IDLE_PING_MS);
  assert.equal(m.check(20 + tracker.IDLE_PING_MS + tracker.REPLY_TIMEOUT_MS), 'silent');
});

test('pingback: a node that does not answer is left for the next, reports kept', async () => {
  const posts = [];
  const down = new Set(['http://pb1/v1/pingback']);
  const env = {
    now: () => 1000,
    post: async (url, body) => {
      posts.push(url);
      if (down.has(url)) throw new Error('refused');
      return 200;
    },
    beacon: () => true,
  };
  const counters = () => ({
    httpBytes: 0, manifestBytes: 0, p2pDownBytes: 0, p2pUpBytes: 0, wastedBytes: 0, segmentsVerified: 0,
    verifyFailures: 0, peersConnected: 0, connectAttempts: 0, connectsOpened: 0, rendition: '240p',
  });
  const p = new pb.Pingback(counters, () => undefined, env);
  p.setJoin({
    version: 1, session_id: 's', peer_id: '0123456789abcdef', stream: 'demo', trackers: [], stun: [],
    pingback: { url: 'http://pb1/v1/pingback', interval_ms: 1_000_000, alternates: ['http://pb2/v1/pingback'] },
    cdn: [], origin_public_key: '', key_id: '', p2p: false, ticket: 't', ticket_expires_ms: 0, engine: {}, api: [], server_time_ms: 0,
  });
  p.tick();
  await p.flush();
  assert.deepEqual(posts, ['http://pb1/v1/pingback', 'http://pb2/v1/pingback'], 'moved on at once');
  assert.equal(p.url, 'http://pb2/v1/pingback');
  p.tick();
  await p.flush();
  assert.equal(posts.at(-1), 'http://pb2/v1/pingback', 'and stays there');
  p.stop();
});
