#!/usr/bin/env node
// Builds Shoal's browser side into web/dist/ (run `make wasm` first: it writes web/pkg/):
//
//   dist/shoal.js            the SDK as an ES module (hls.js not included)
//   dist/shoal.iife.js       the same as a classic script defining window.Shoal
//   dist/shoal_wasm_bg.wasm  shoal-engine, loaded next to the script when P2P starts
//   dist/types/              .d.ts (package "types")
//   dist/demo/               the demo page `shoal demo` serves (index.html, demo.js, hls.min.js, ...)
//   dist/bench/              pages' extras for `shoal bench browser` (p2p-media-loader bundle)
//   dist/sizes.json          raw and gzip sizes of what a page downloads
//
//   node build.mjs [--check]   --check: type-check only (tsc --noEmit), no output
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import * as esbuild from 'esbuild';

const web = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(web, 'dist');
const pkg = path.join(web, 'pkg');
const tsc = path.join(web, 'node_modules/typescript/bin/tsc');

function fail(msg) {
  process.stderr.write(`build: ${msg}\n`);
  process.exit(1);
}

function typecheck() {
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(web, 'tsconfig.json'), '--noEmit'], { stdio: 'inherit' });
  } catch {
    fail('type errors (tsc)');
  }
}

if (!fs.existsSync(path.join(pkg, 'shoal_wasm.js')) || !fs.existsSync(path.join(pkg, 'shoal_wasm_bg.wasm'))) {
  fail('web/pkg/ is missing: run `make wasm` (cargo + wasm-bindgen) first');
}
typecheck();
if (process.argv.includes('--check')) process.exit(0);

fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(path.join(dist, 'demo'), { recursive: true });
fs.mkdirSync(path.join(dist, 'bench'), { recursive: true });

const common = {
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ['es2020', 'chrome90', 'firefox90', 'safari15'],
  legalComments: 'none',
  logLevel: 'warning',
};

// The ES module. `import.meta.url` stays, so the wasm is found next to the file.
await esbuild.build({ ...common, entryPoints: [path.join(web, 'src/index.ts')], format: 'esm', outfile: path.join(dist, 'shoal.js') });
// The classic script (import.meta is empty there: the wasm URL comes from the script's src).
await esbuild.build({
  ...common,
  entryPoints: [path.join(web, 'src/iife.ts')],
  format: 'iife',
  outfile: path.join(dist, 'shoal.iife.js'),
  logOverride: { 'empty-import-meta': 'silent' },
});
fs.copyFileSync(path.join(pkg, 'shoal_wasm_bg.wasm'), path.join(dist, 'shoal_wasm_bg.wasm'));

// Declarations of the public API.
try {
  execFileSync(process.execPath, [tsc, '-p', path.join(web, 'tsconfig.types.json')], { stdio: 'inherit' });
} catch {
  fail('declaration build failed');
}

// The demo page.
await esbuild.build({ ...common, entryPoints: [path.join(web, 'demo/demo.ts')], format: 'esm', outfile: path.join(dist, 'demo/demo.js') });
for (const f of ['index.html', 'demo.css']) fs.copyFileSync(path.join(web, 'demo', f), path.join(dist, 'demo', f));
fs.copyFileSync(path.join(pkg, 'shoal_wasm_bg.wasm'), path.join(dist, 'demo/shoal_wasm_bg.wasm'));
fs.copyFileSync(path.join(web, 'node_modules/hls.js/dist/hls.min.js'), path.join(dist, 'demo/hls.min.js'));

// p2p-media-loader 2.3.1 for the browser benchmark: window.P2PML = { HlsJsP2PEngine }.
await esbuild.build({
  ...common,
  stdin: {
    contents: "import { HlsJsP2PEngine } from 'p2p-media-loader-hlsjs'; globalThis.P2PML = { HlsJsP2PEngine };",
    resolveDir: web,
    loader: 'js',
  },
  conditions: ['p2pml:core-as-bundle'],
  format: 'iife',
  outfile: path.join(dist, 'bench/p2pml.js'),
});

// Sizes: what a page using the SDK downloads.
const sizes = {};
for (const f of ['shoal.js', 'shoal.iife.js', 'shoal_wasm_bg.wasm']) {
  const b = fs.readFileSync(path.join(dist, f));
  sizes[f] = { bytes: b.length, gzip: zlib.gzipSync(b, { level: 9 }).length };
}
fs.writeFileSync(path.join(dist, 'sizes.json'), `${JSON.stringify(sizes, null, 1)}\n`);
for (const [f, s] of Object.entries(sizes)) {
  process.stdout.write(`${f.padEnd(20)} ${String(s.bytes).padStart(8)} B  ${String(s.gzip).padStart(8)} B gzip\n`);
}
