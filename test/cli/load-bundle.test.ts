import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';

// bin/load-bundle.js compiles the CLI and sandbox bundles with a V8 code cache kept beside them. V8 checks a
// cache against its source only by length, so these run real node processes against a real cache.
const loader = path.join(projectRoot(), 'bin', 'load-bundle.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-load-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(file: string): string {
  return execFileSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(loader)}).loadBundle(${JSON.stringify(file)}).value()))`], {
    encoding: 'utf8',
  });
}

const caches = () => readdirSync(dir).filter((f) => f.endsWith('.v8-cache'));

describe('bundles loaded with a code cache', () => {
  const file = path.join(dir, 'bundle.cjs');

  it('writes a cache on the first load and runs from it on the next', () => {
    writeFileSync(file, 'exports.value = () => "one";\n');
    expect(load(file)).toBe('one');
    expect(caches()).toHaveLength(1);
    expect(load(file)).toBe('one');
    expect(caches()).toHaveLength(1);
  });

  it('runs a rebuilt bundle of the same length as the new code, not the cached old one', () => {
    writeFileSync(file, 'exports.value = () => "two";\n');
    const later = new Date(Date.now() + 5000);
    utimesSync(file, later, later);
    expect(load(file)).toBe('two');
  });

  it('ignores a damaged cache and still runs the bundle', () => {
    for (const c of caches()) writeFileSync(path.join(dir, c), Buffer.alloc(512, 0x5a));
    expect(load(file)).toBe('two');
  });
});

describe('a code cache made ahead of time (the guest agent\'s, made with the initrd)', () => {
  const file = path.join(dir, 'agent-like.cjs');
  const cacheFile = path.join(dir, 'agent-like.cjs.v8-cache');
  const loadWith = (): string =>
    execFileSync(
      process.execPath,
      ['-e', `let s; const m = require(${JSON.stringify(loader)}).loadBundle(${JSON.stringify(file)}, { cacheFile: ${JSON.stringify(cacheFile)}, onCache: (x) => { s = x; } }); process.stdout.write(s + ' ' + m.value());`],
      { encoding: 'utf8' },
    );

  it('is accepted by the next load, which names it, and the bundle runs from it', () => {
    writeFileSync(file, 'let n = 0; exports.value = () => `ran ${++n}`;\n');
    execFileSync(process.execPath, ['-e', `require(${JSON.stringify(loader)}).writeCodeCache(${JSON.stringify(file)}, ${JSON.stringify(cacheFile)})`]);
    expect(loadWith()).toBe('accepted ran 1');
  });

  it('is reported as rejected, not used, when it is damaged', () => {
    writeFileSync(cacheFile, Buffer.alloc(4096, 0x5a));
    expect(loadWith()).toBe('rejected ran 1');
  });
});
