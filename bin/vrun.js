#!/usr/bin/env node
'use strict';
// The `vrun` CLI, bundled into one CommonJS file by scripts/bundle.mjs: an ES-module entry would cost every
// command the start of Node's ES-module loader (about 35 ms here). The bundle is compiled with V8's code cache
// kept beside it, which saves most of the remaining compile time (about 15 ms). The cache is only an
// accelerator, rewritten (atomically, best effort) whenever it is missing or refused. V8 refuses a cache from
// another V8 or a damaged one, but it checks the source only by its length, so the cache's name carries the
// bundle's size and mtime: a rebuilt bundle never meets an old cache (scripts/bundle.mjs removes old ones).
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const file = path.join(__dirname, '..', 'dist', 'cli', 'vrun.cjs');

function loadBundle() {
  const source = fs.readFileSync(file, 'utf8');
  const st = fs.statSync(file);
  const cacheFile = `${file}.${st.size}-${Math.trunc(st.mtimeMs)}.v8-cache`;
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  if (cachedData === undefined || script.cachedDataRejected) {
    // At exit, so the functions this command compiled are in the cache too.
    process.once('exit', () => {
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      try {
        fs.writeFileSync(tmp, script.createCachedData());
        fs.renameSync(tmp, cacheFile);
      } catch {
        fs.rmSync(tmp, { force: true });
      }
    });
  }
  return mod.exports;
}

loadBundle().main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`vrun: ${err?.message ?? err}\n`); process.exitCode = 125; },
);
