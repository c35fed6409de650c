// Builds dist/console.js (src/console.js with uPlot) and dist/console.css
// (src/console.css with uPlot's stylesheet) with esbuild, minified.
//
//   node build.mjs               # writes dist/
//   node build.mjs --out DIR     # writes DIR instead (the Go test compares it with dist/)
//
// esbuild and uplot are loaded from ./node_modules, or from the
// node_modules directory named by $VIGIE_CONSOLE_NODE_MODULES.
import { createRequire } from 'node:module';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const mods = resolve(process.env.VIGIE_CONSOLE_NODE_MODULES || join(here, 'node_modules'));
const esbuild = createRequire(import.meta.url)(join(mods, 'esbuild'));

const args = process.argv.slice(2);
const i = args.indexOf('--out');
const out = i >= 0 ? resolve(args[i + 1]) : join(here, 'dist');
mkdirSync(out, { recursive: true });

for (const [entry, name] of [['console.js', 'console.js'], ['console.css', 'console.css']]) {
  const res = await esbuild.build({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    format: entry.endsWith('.js') ? 'iife' : undefined,
    target: 'es2020',
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    nodePaths: [mods],
    write: false,
  });
  const code = res.outputFiles[0].contents;
  writeFileSync(join(out, name), code);
  console.log(`${name}: ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped`);
}
