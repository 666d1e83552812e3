// Builds the playground into dist/: index.html, app.js, app.css — fixed
// names, no hashes, no source maps, so the same sources and lockfile always
// give byte-identical files (the gateway embeds whatever is in dist/).
//
//   npm ci && npm run build    # prints each file's size and sha256

import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');

const common = {
  bundle: true,
  minify: true,
  legalComments: 'none',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  logLevel: 'warning',
  charset: 'utf8',
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await esbuild.build({
  ...common,
  entryPoints: [join(src, 'main.js')],
  outfile: join(dist, 'app.js'),
  format: 'iife',
  platform: 'browser',
});
await esbuild.build({
  ...common,
  entryPoints: [join(src, 'style.css')],
  outfile: join(dist, 'app.css'),
});
await copyFile(join(src, 'index.html'), join(dist, 'index.html'));

for (const name of (await readdir(dist)).sort()) {
  const bytes = await readFile(join(dist, name));
  const sha = createHash('sha256').update(bytes).digest('hex');
  console.log(`dist/${name.padEnd(10)} ${String(bytes.length).padStart(7)} bytes  sha256 ${sha}`);
}
