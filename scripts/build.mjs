// Compiles the TypeScript sources to dist/ with swc: decorator metadata included (type-graphql and MikroORM need it),
// no type checking (that is `npm run typecheck`), fast enough to run before every `npm start`.
import { transformFile } from '@swc/core';
import { mkdir, readdir, writeFile, stat, copyFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sourceDirs = ['lib', 'gateway', 'subgraphs', 'workers', 'training', 'bench', 'scripts', 'test'];
const rootFiles = ['start.ts'];
const out = join(root, 'dist');

export const swcOptions = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
    target: 'es2022',
    keepClassNames: true,
  },
  module: { type: 'es6' },
  sourceMaps: true,
};

async function* walk(dir) {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name === '__pycache__') continue;
      yield* walk(full);
    } else yield full;
  }
}

async function compile(file) {
  const rel = relative(root, file);
  const target = join(out, rel.replace(/\.ts$/, '.js'));
  const [src, dst] = await Promise.all([stat(file), stat(target).catch(() => null)]);
  if (dst && dst.mtimeMs >= src.mtimeMs) return false;
  await mkdir(dirname(target), { recursive: true });
  const result = await transformFile(file, { ...swcOptions, filename: file, sourceFileName: relative(dirname(target), file) });
  await writeFile(target, result.code + `\n//# sourceMappingURL=${target.split('/').pop()}.map\n`);
  if (result.map) await writeFile(target + '.map', result.map);
  return true;
}

async function copy(file) {
  const target = join(out, relative(root, file));
  const [src, dst] = await Promise.all([stat(file), stat(target).catch(() => null)]);
  if (dst && dst.mtimeMs >= src.mtimeMs) return false;
  await mkdir(dirname(target), { recursive: true });
  await copyFile(file, target);
  return true;
}

const jobs = [];
for (const dir of sourceDirs) {
  for await (const file of walk(join(root, dir))) {
    if (file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.endsWith('.test.ts')) jobs.push(compile(file));
    // A worker thread's script (plain JavaScript), and the plain modules it imports, are loaded from beside the
    // module that starts it.
    else if (file.endsWith('.mjs')) jobs.push(copy(file));
    // Non-TS assets a service reads at run time (SQL, HTML, ONNX, Python) are read from the source tree, not copied.
  }
}
for (const f of rootFiles) jobs.push(compile(join(root, f)).catch(() => false));
const built = (await Promise.all(jobs)).filter(Boolean).length;
if (built > 0) process.stderr.write(`build: compiled ${built} file(s) to dist/\n`);
