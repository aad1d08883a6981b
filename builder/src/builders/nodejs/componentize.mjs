// componentize-js, with what is the same for every function cached.
//
//   node componentize.mjs <componentize-js dir> <bundle.js> <wit dir> <world> <out.wasm> <cache dir> [--record]
//
// Two steps of componentize-js do not depend on the function, and every build uses the same glue
// and world:
// - it splices the world's bindings into StarlingMonkey before it runs the source (~3 s of a
//   ~6 s build here): its result is kept in <cache dir>/splice, keyed by the engine, the WIT and
//   the features;
// - wizer compiles StarlingMonkey before it runs it, and keeps the machine code in wasmtime's
//   cache under $XDG_CACHE_HOME (componentize-js gives wizer no environment, so the cache was
//   the passwd home's, which builds may not write: every build compiled it again). wizer is
//   given <cache dir>/xdg.
// Both are written once, when the toolchain is installed (`--record`, while the toolchain is
// writable), and read by later builds (the toolchain is read-only to them: a tenant's build
// writes no machine code another's runs). A different engine, WIT or feature set misses the
// cache and does what componentize-js does.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [pkg, source, wit, world, out, cacheDir, mode] = process.argv.slice(2);
if (!cacheDir || (mode !== undefined && mode !== '--record')) {
  console.error(
    'usage: componentize.mjs <componentize-js dir> <bundle.js> <wit dir> <world> <out.wasm> <cache dir> [--record]',
  );
  process.exit(2);
}
const record = mode === '--record';
const splices = join(cacheDir, 'splice');
const load = (path) => import(pathToFileURL(join(pkg, path)).href);
// The module instance componentize.js imports too, so it calls the wrapper set below.
const { splicer } = await load('lib/spidermonkey-embedding-splicer.js');
const { componentize } = await load('src/componentize.js');

// The WIT by content: each build copies it into its own directory, so its path differs.
function hashDir(hash, dir) {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  );
  for (const e of entries) {
    const path = join(dir, e.name);
    hash.update(`${e.name}\0${e.isDirectory() ? 'd' : 'f'}\0`);
    if (e.isDirectory()) hashDir(hash, path);
    else hash.update(readFileSync(path));
  }
}

function keyOf(engine, features, witWorld, witPath, worldName, debug) {
  const hash = createHash('sha256');
  hash.update(engine);
  hash.update(JSON.stringify([features, witWorld ?? null, worldName ?? null, debug ?? null]));
  if (witPath) hashDir(hash, witPath);
  return hash.digest('hex');
}

// componentize-js calls the splicer synchronously, so the cache is read and written that way.
const splice = splicer.spliceBindings;
let outcome = 'not called';
splicer.spliceBindings = (...args) => {
  const key = keyOf(...args);
  const [meta, wasm] = [join(splices, `${key}.json`), join(splices, `${key}.wasm`)];
  if (!record) {
    try {
      const value = JSON.parse(readFileSync(meta, 'utf8'));
      value.wasm = readFileSync(wasm);
      outcome = 'cached';
      return value;
    } catch {
      // Not recorded for this engine, WIT and features: splice as componentize-js does.
    }
  }
  const value = splice(...args);
  outcome = 'spliced';
  if (record) {
    const { wasm: bytes, ...rest } = value;
    mkdirSync(splices, { recursive: true });
    // The metadata is written last: an entry is whole once its .json exists.
    writeFileSync(`${wasm}.tmp`, bytes);
    renameSync(`${wasm}.tmp`, wasm);
    writeFileSync(`${meta}.tmp`, JSON.stringify(rest));
    renameSync(`${meta}.tmp`, meta);
    outcome = 'spliced and recorded';
  }
  return value;
};

const started = Date.now();
const { component } = await componentize({
  sourcePath: source,
  witPath: resolve(wit),
  worldName: world,
  env: { XDG_CACHE_HOME: resolve(cacheDir, 'xdg') },
});
await writeFile(out, component);
console.error(`componentize.mjs: bindings ${outcome}; ${Date.now() - started} ms`);
