#!/usr/bin/env node
'use strict';
// The `vrun` CLI: a CommonJS entry on the bundled CLI (see load-bundle.js for why).
const path = require('node:path');
const { loadBundle } = require('./load-bundle.js');

loadBundle(path.join(__dirname, '..', 'dist', 'cli', 'vrun.cjs')).main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything the command does is awaited by main(): leave now rather than wait for Node to tear the heap
    // down (5-10 ms of every command here), unless stdout or stderr still has output queued.
    if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit();
  },
  (err) => { process.stderr.write(`vrun: ${err?.message ?? err}\n`); process.exitCode = 125; },
);
