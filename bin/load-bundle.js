'use strict';
// Loads one of the CommonJS bundles scripts/bundle.mjs makes (the CLI, the sandbox process) with V8's code
// cache kept beside it. Both run on paths people wait on (every `vrun` command, every pod's start), and Node 20
// would otherwise spend about 35 ms starting its ES-module loader, resolve dozens of modules, and compile the
// code afresh each time. The cache is only an accelerator, rewritten (atomically, best effort) whenever it is
// missing or refused. V8 refuses a cache from another V8 or a damaged one, but checks the source only by its
// length, so the cache's name carries the bundle's size and mtime: a rebuilt bundle never meets an old cache
// (scripts/bundle.mjs removes old ones).
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

function loadBundle(file) {
  const source = fs.readFileSync(file, 'utf8');
  const st = fs.statSync(file);
  const cacheFile = `${file}.${st.size}-${Math.trunc(st.mtimeMs)}.v8-cache`;
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  // The bundles have no import() left (scripts/bundle.mjs turns them into require()); should a dependency
  // bring one, it resolves as in any module rather than failing (the option exists from Node 20.12 on).
  const importModuleDynamically = vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData, ...(importModuleDynamically ? { importModuleDynamically } : {}) });
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  if (cachedData === undefined || script.cachedDataRejected) {
    // At exit, so the functions this run compiled are in the cache too.
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
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  return mod.exports;
}

module.exports = { loadBundle };
