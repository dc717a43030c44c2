#!/usr/bin/env node
import { main } from '../dist/src/shim/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`containerd-shim-vrun-v2: ${err?.message ?? err}\n`); process.exitCode = 1; },
);
