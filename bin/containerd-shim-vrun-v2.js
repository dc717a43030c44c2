#!/usr/bin/env node
'use strict';
// bin/ is CommonJS (see bin/vrun.js); the shim itself stays an ES module, loaded from here.
import('../dist/src/shim/main.js')
  .then(({ main }) => main(process.argv.slice(2)))
  .then(
    (code) => { process.exitCode = code; },
    (err) => { process.stderr.write(`containerd-shim-vrun-v2: ${err?.message ?? err}\n`); process.exitCode = 1; },
  );
