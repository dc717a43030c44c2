#!/usr/bin/env node
'use strict';
// The `vrun` CLI: a CommonJS entry on the bundled CLI (see load-bundle.js for why).
const path = require('node:path');
const { loadBundle } = require('./load-bundle.js');

loadBundle(path.join(__dirname, '..', 'dist', 'cli', 'vrun.cjs')).main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`vrun: ${err?.message ?? err}\n`); process.exitCode = 125; },
);
