// Compiles one SDK source module (TypeScript) with esbuild and imports it, so the SDK's pure
// parts run under node's test runner without a build step.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export async function importSdk(rel) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-sdk-'));
  const file = path.join(out, `${path.basename(rel, '.ts')}.mjs`);
  await esbuild.build({ entryPoints: [path.join(web, rel)], bundle: true, format: 'esm', platform: 'neutral', outfile: file, logLevel: 'error' });
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}
