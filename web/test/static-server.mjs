#!/usr/bin/env node
// A static file server for tests (e.g. an ffmpeg-made HLS stream): no caching, CORS open.
//   node web/test/static-server.mjs --root DIR [--host 127.0.0.1] [--port 0]
// Prints `SHOAL_STATIC_READY http://HOST:PORT` once listening.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { mimeType, resolveUnder } from './lib/config.mjs';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const root = path.resolve(arg('root', '.'));
const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '0'));

const server = http.createServer((req, res) => {
  const headers = { 'access-control-allow-origin': '*', 'cache-control': 'no-store' };
  if (req.method === 'OPTIONS') {
    res.writeHead(204, { ...headers, 'access-control-allow-methods': 'GET, HEAD', 'access-control-allow-headers': '*' });
    return res.end();
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, headers);
    return res.end();
  }
  const urlPath = new URL(req.url, 'http://x').pathname;
  const file = resolveUnder('/', root, urlPath);
  if (!file) {
    res.writeHead(404, headers);
    return res.end();
  }
  fs.readFile(file, (err, body) => {
    if (err) {
      res.writeHead(404, headers);
      return res.end();
    }
    res.writeHead(200, { ...headers, 'content-type': mimeType(file), 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
});
server.listen(port, host, () => {
  const a = server.address();
  process.stdout.write(`SHOAL_STATIC_READY http://${host}:${a.port} root=${root}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
