// `npm run bench -- <name> [args]`: builds, then runs one benchmark of bench/ (each prints its numbers as JSON).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const names = readdirSync(here)
  .filter((f) => f.endsWith('.js') && !['run.js', 'inference-support.js'].includes(f))
  .map((f) => f.replace(/\.js$/, ''));
const [name, ...args] = process.argv.slice(2);
if (!name || !names.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <name> [args]\nbenchmarks: ${names.join(', ')}\n`);
  process.exit(name ? 2 : 0);
}
const result = spawnSync(process.execPath, ['--expose-gc', join(here, `${name}.js`), ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
