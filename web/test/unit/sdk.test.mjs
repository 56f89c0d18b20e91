import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importSdk } from './sdk-import.mjs';

const pl = await importSdk('src/playlist.ts');
const peers = await importSdk('src/peers.ts');
const api = await importSdk('src/api.ts');

const MASTER = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS="avc1.42c01e"
360p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=2800000
720p/index.m3u8?token=x
`;

test('master playlist: variants named like the native SDK, URLs absolute, I-frames left out', () => {
  const v = pl.parseMaster(MASTER, 'http://cdn.test/live/demo/master.m3u8');
  assert.deepEqual(v, [
    { name: '360p', url: 'http://cdn.test/live/demo/360p/index.m3u8', bandwidth: 900000 },
    { name: '720p', url: 'http://cdn.test/live/demo/720p/index.m3u8?token=x', bandwidth: 2800000 },
  ]);
});

test('rendition names follow crates/peer/src/playlist.rs rendition_name', () => {
  assert.equal(pl.renditionName('720p/index.m3u8', 0, []), '720p');
  assert.equal(pl.renditionName('low.m3u8', 0, []), 'low');
  assert.equal(pl.renditionName('a/index.m3u8', 3, ['a']), 'v3', 'taken names fall back to v{i}');
  assert.equal(pl.renditionName('../index.m3u8', 1, []), 'index', 'a .. directory falls to the file stem');
  assert.equal(pl.renditionName('bad name/index.m3u8', 2, []), 'v2');
  assert.equal(pl.renditionName('http://h/x.m3u8', 0, []), 'h', 'same split as the Rust side');
  assert.equal(pl.renditionName('.hidden/index.m3u8', 0, []), 'v0');
});

test('a media playlist as the manifest is one rendition named main', () => {
  assert.deepEqual(pl.parseMaster('#EXTM3U\n#EXTINF:2,\n1.ts\n', 'http://h/a/index.m3u8'), [
    { name: 'main', url: 'http://h/a/index.m3u8', bandwidth: 0 },
  ]);
  assert.deepEqual(pl.parseMaster('not a playlist', 'http://h/x'), []);
});

test('media playlist: sequence numbers, absolute URLs, durations', () => {
  const text = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:00.000Z
#EXTINF:2.000,
41.ts
#EXT-X-DISCONTINUITY
#EXTINF:1.967,
42.ts
#EXTINF:2,
http://other.test/x/43.ts
`;
  const m = pl.parseMedia(text, 'http://cdn.test/live/demo/720p/index.m3u8');
  assert.equal(m.shareable, true);
  assert.equal(m.ended, false);
  assert.equal(m.targetDurationMs, 2000);
  assert.deepEqual(m.segments, [
    { seq: 41, url: 'http://cdn.test/live/demo/720p/41.ts', durationMs: 2000 },
    { seq: 42, url: 'http://cdn.test/live/demo/720p/42.ts', durationMs: 1967 },
    { seq: 43, url: 'http://other.test/x/43.ts', durationMs: 2000 },
  ]);
  assert.equal(pl.parseMedia(MASTER, 'http://h/m.m3u8'), null, 'a master is not a media playlist');
  const ranged = pl.parseMedia('#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:100@0\nall.ts\n#EXT-X-ENDLIST\n', 'http://h/a.m3u8');
  assert.equal(ranged.shareable, false, 'byte-range segments are not shared');
  assert.equal(ranged.ended, true);
});

test('playlist limits: huge texts are refused, long lists keep the newest segments', () => {
  assert.equal(pl.parseMedia(`#EXTM3U\n${'#'.repeat(pl.MAX_PLAYLIST_CHARS)}`, 'http://h/a.m3u8'), null);
  let text = '#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n';
  for (let i = 0; i < pl.MAX_SEGMENTS + 500; i++) text += `#EXTINF:2,\n${i}.ts\n`;
  const m = pl.parseMedia(text, 'http://h/r/index.m3u8');
  assert.equal(m.segments.length, pl.MAX_SEGMENTS);
  assert.equal(m.segments.at(-1).seq, pl.MAX_SEGMENTS + 499);
});

test('stream name from the master URL', () => {
  assert.equal(pl.streamFromUrl('http://127.0.0.1:8080/live/demo/master.m3u8'), 'demo');
  assert.equal(pl.streamFromUrl('http://h/x.m3u8'), null);
  assert.equal(pl.streamFromUrl('not a url'), null);
});

test('signal payloads: the native SDK shapes, bounded, anything else refused', () => {
  assert.deepEqual(peers.parseSignal({ kind: 'offer', sdp: 'v=0\r\n' }), { kind: 'offer', sdp: 'v=0\r\n' });
  assert.deepEqual(peers.parseSignal({ kind: 'candidate', candidate: 'candidate:1 1 udp 1 10.77.0.1 5000 typ host', mid: '0', x: 1 }), {
    kind: 'candidate',
    candidate: 'candidate:1 1 udp 1 10.77.0.1 5000 typ host',
    mid: '0',
  });
  assert.deepEqual(peers.parseSignal({ kind: 'bye' }), { kind: 'bye' });
  assert.equal(peers.parseSignal({ kind: 'offer', sdp: 'a'.repeat(16 * 1024 + 1) }), null);
  assert.equal(peers.parseSignal({ kind: 'candidate', candidate: 'c'.repeat(513) }), null);
  assert.equal(peers.parseSignal({ kind: 'nope' }), null);
  assert.equal(peers.parseSignal([]), null);
  assert.equal(peers.parseSignal(null), null);
});

test('glare: the lower peer id offers (shoal_proto::tracker::offer_wins)', () => {
  assert.equal(peers.offerWins('a', 'b'), true);
  assert.equal(peers.offerWins('b', 'a'), false);
  assert.equal(peers.offerWins('a', 'a'), false);
});

test('join response: required fields checked, optional ones defaulted', () => {
  const ok = {
    version: 1, session_id: 's', peer_id: '0123456789abcdef', stream: 'demo', trackers: ['ws://h/v1/tracker'],
    stun: ['stun:127.0.0.1:3478'], pingback: { url: 'http://h/v1/pingback', interval_ms: 10000 }, cdn: [],
    origin_public_key: 'AAAA', key_id: '00', p2p: true, ticket: 't', ticket_expires_ms: 1, engine: {}, api: [], server_time_ms: 0,
  };
  assert.equal(api.checkJoinResponse(ok).peer_id, '0123456789abcdef');
  const { engine: _e, api: _a, ...minimal } = ok;
  assert.deepEqual(api.checkJoinResponse(minimal).engine, {});
  assert.throws(() => api.checkJoinResponse({ ...ok, trackers: 'ws://x' }), /trackers/);
  assert.throws(() => api.checkJoinResponse({ ...ok, p2p: 'yes' }), /p2p/);
  assert.throws(() => api.checkJoinResponse({ ...ok, engine: [] }), /engine/);
  assert.throws(() => api.checkJoinResponse('x'), /not an object/);
});
