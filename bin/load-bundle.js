'use strict';
// Loads one of the CommonJS bundles scripts/bundle.mjs makes (the CLI, the sandbox process, the guest agent)
// with V8's code cache kept beside it. All run on paths people wait on (every `vrun` command, every pod's
// start), and Node 20 would otherwise spend about 35 ms starting its ES-module loader, resolve dozens of
// modules, and compile the code afresh each time. The cache is only an accelerator, rewritten (atomically, best
// effort) whenever it is missing or refused. V8 refuses a cache from another V8 or a damaged one, but checks the
// source only by its length, so the cache's name carries the bundle's size and mtime: a rebuilt bundle never
// meets an old cache (scripts/bundle.mjs removes old ones). The guest agent's cache is made with the initrd
// (writeCodeCache) and named explicitly: every guest boots from a fresh copy, so one written at run time would
// never be read.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

function compile(file, source, cachedData) {
  // The bundles have no import() left (scripts/bundle.mjs turns them into require()); should a dependency
  // bring one, it resolves as in any module rather than failing (the option exists from Node 20.12 on).
  const importModuleDynamically = vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  return new vm.Script(Module.wrap(source), { filename: file, cachedData, ...(importModuleDynamically ? { importModuleDynamically } : {}) });
}

function run(file, script) {
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  return mod.exports;
}

function writeAtomically(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Runs the bundle `file` and returns its exports. opts.cacheFile names the cache (default: beside the bundle,
 * by size and mtime); opts.onCache hears whether one was 'accepted', 'rejected' or 'missing'.
 */
function loadBundle(file, opts = {}) {
  const source = fs.readFileSync(file, 'utf8');
  let cacheFile = opts.cacheFile;
  if (cacheFile === undefined) {
    const st = fs.statSync(file);
    cacheFile = `${file}.${st.size}-${Math.trunc(st.mtimeMs)}.v8-cache`;
  }
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = compile(file, source, cachedData);
  const state = cachedData === undefined ? 'missing' : script.cachedDataRejected ? 'rejected' : 'accepted';
  if (state !== 'accepted') {
    // At exit, so the functions this run compiled are in the cache too.
    process.once('exit', () => {
      try {
        writeAtomically(cacheFile, script.createCachedData());
      } catch {
        // best effort: the next start compiles again
      }
    });
  }
  opts.onCache?.(state);
  return run(file, script);
}

/**
 * Makes the code cache of bundle `file` in `cacheFile`, for a bundle that will run where no cache can be kept:
 * the bundle's modules are evaluated (its top level only, which must start nothing), so the functions that run
 * are in the cache too.
 */
function writeCodeCache(file, cacheFile) {
  const script = compile(file, fs.readFileSync(file, 'utf8'), undefined);
  run(file, script);
  writeAtomically(cacheFile, script.createCachedData());
}

module.exports = { loadBundle, writeCodeCache };
