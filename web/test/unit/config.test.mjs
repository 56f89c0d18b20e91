import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chromiumArgs, mimeType, normalizeConfig, planSchedule, resolveUnder } from '../lib/config.mjs';

const base = { url: 'http://127.0.0.1:8080/live/master.m3u8', durationMs: 20000, outDir: '/tmp/x' };

test('defaults: one viewer at t=0, page origin = stream origin, mDNS hiding off', () => {
  const c = normalizeConfig(base);
  assert.equal(c.viewers.length, 1);
  assert.deepEqual(c.viewers[0].openAtMs, 0);
  assert.equal(c.viewers[0].closeAtMs, null);
  assert.equal(c.pageOrigin, 'http://127.0.0.1:8080');
  assert.ok(chromiumArgs(c).includes('--disable-features=WebRtcHideLocalIpsWithMdns'));
  assert.ok(!chromiumArgs({ ...c, hideLocalIpsWithMdns: true }).some((a) => a.includes('Mdns')));
});

test('a viewer count expands to ids v0..vN-1', () => {
  const c = normalizeConfig({ ...base, viewers: 3 });
  assert.deepEqual(c.viewers.map((v) => v.id), ['v0', 'v1', 'v2']);
});

test('bad configs are rejected with the field named', () => {
  assert.throws(() => normalizeConfig({ ...base, url: undefined }), /url/);
  assert.throws(() => normalizeConfig({ ...base, url: 'not a url' }), /not a URL/);
  assert.throws(() => normalizeConfig({ ...base, durationMs: 0 }), /durationMs/);
  assert.throws(() => normalizeConfig({ ...base, durationMs: -5 }), /durationMs/);
  assert.throws(() => normalizeConfig({ ...base, viewers: [{ id: 'a' }, { id: 'a' }] }), /twice/);
  assert.throws(() => normalizeConfig({ ...base, viewers: [{ id: '../x' }] }), /viewer id/);
  assert.throws(() => normalizeConfig({ ...base, viewers: [{ openAtMs: 500, closeAtMs: 100 }] }), /closes before/);
  assert.throws(() => normalizeConfig({ ...base, viewers: 65 }), /at most/);
  assert.throws(() => normalizeConfig({ ...base, serve: [{ prefix: '/x/', dir: '/tmp' }] }), /prefix/);
  assert.throws(() => normalizeConfig({ ...base, outDir: undefined }), /outDir/);
});

test('schedule: time order, opens before closes at equal times, nothing at or after the end', () => {
  const c = normalizeConfig({
    ...base,
    durationMs: 10000,
    viewers: [
      { id: 'a', openAtMs: 0, closeAtMs: 5000, screenshotsAtMs: [4000, 6000] },
      { id: 'b', openAtMs: 5000, screenshotsAtMs: [9999, 10000] },
      { id: 'c', openAtMs: 10000 },
    ],
  });
  const plan = planSchedule(c.viewers, c.durationMs).map((e) => `${e.atMs}:${e.kind}:${e.id}`);
  assert.deepEqual(plan, ['0:open:a', '4000:screenshot:a', '5000:open:b', '5000:close:a', '9999:screenshot:b']);
});

test('resolveUnder never leaves the directory', () => {
  assert.equal(resolveUnder('/p/', '/srv/', '/p/a/b.js'), '/srv/a/b.js');
  assert.equal(resolveUnder('/p/', '/srv', '/p/../etc/passwd'), null);
  assert.equal(resolveUnder('/p/', '/srv', '/p/a/%2e%2e/%2e%2e/x'), null);
  assert.equal(resolveUnder('/p/', '/srv', '/p//etc/passwd'), null);
  assert.equal(resolveUnder('/p/', '/srv', '/p/%00'), null);
  assert.equal(resolveUnder('/p/', '/srv', '/p/%E0%A4%A'), null);
  assert.equal(resolveUnder('/p/', '/srv', '/q/a.js'), null);
});

test('mime types of what HLS and the SDK serve', () => {
  assert.equal(mimeType('/a/master.m3u8'), 'application/vnd.apple.mpegurl');
  assert.equal(mimeType('/a/seg.ts'), 'video/mp2t');
  assert.equal(mimeType('/a/x.wasm'), 'application/wasm');
  assert.equal(mimeType('/a/noext'), 'application/octet-stream');
});
