// Builds dist/s.js from src/vigie.js with esbuild (ES2019, IIFE, minified)
// and prints its minified and gzipped sizes.
//
//   node build.mjs                # writes dist/s.js
//   node build.mjs --out FILE     # writes FILE instead (the Go test compares it with dist/s.js)
//
// esbuild is loaded from ./node_modules, or from the node_modules directory
// named by $VIGIE_JS_NODE_MODULES.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const mods = process.env.VIGIE_JS_NODE_MODULES;
const esbuild = createRequire(import.meta.url)(mods ? join(resolve(mods), 'esbuild') : 'esbuild');

const args = process.argv.slice(2);
const i = args.indexOf('--out');
const out = i >= 0 ? resolve(args[i + 1]) : join(here, 'dist', 's.js');

const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const res = await esbuild.build({
  entryPoints: [join(here, 'src', 'vigie.js')],
  bundle: true,
  format: 'iife',
  target: 'es2019',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  define: { __VERSION__: JSON.stringify(pkg.version) },
  write: false,
});
const code = res.outputFiles[0].contents;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, code);
console.log(`${out}: ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped`);
