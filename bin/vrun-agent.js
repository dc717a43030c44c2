#!/usr/bin/env node
'use strict';
// The guest agent: its bundle (agent.cjs) loaded with a V8 code cache (see load-bundle.js). In the guest
// initrd this file, load-bundle.js, agent.cjs and agent.cjs.v8-cache (made with the initrd) sit together in
// /opt/vrun; in a checkout the bundle is dist/agent/agent.cjs (host tests run it so).
const fs = require('node:fs');
const path = require('node:path');
const { loadBundle } = require('./load-bundle.js');

const beside = path.join(__dirname, 'agent.cjs');
const inGuest = fs.existsSync(beside);
const file = inGuest ? beside : path.join(__dirname, '..', 'dist', 'agent', 'agent.cjs');
let codeCache = 'missing';
const agent = loadBundle(file, { cacheFile: inGuest ? `${beside}.v8-cache` : undefined, onCache: (state) => { codeCache = state; } });
agent.main(process.argv.slice(2), { codeCache });
