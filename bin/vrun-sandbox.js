#!/usr/bin/env node
'use strict';
// Internal: the sandbox process `vrun run` starts (`vrun-sandbox.js STATE_DIR`), the bundled
// src/sandbox/daemon.ts (see load-bundle.js for why bundled). Not a command for people.
const path = require('node:path');
const { loadBundle } = require('./load-bundle.js');

loadBundle(path.join(__dirname, '..', 'dist', 'sandbox', 'daemon.cjs'));
