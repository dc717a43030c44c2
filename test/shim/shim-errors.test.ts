/**
 * Bad input through a real containerd to the real shim binary, caught before any VM boots: containerd
 * shows the shim's error, and the shim it started for the failed task cleans up and exits.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, RUNTIME, startShimEnv, type ShimEnv } from './shim-fixture.js';

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the vrun shim refuses bad input with clear errors', () => {
  let env: ShimEnv;
  let runDir: string;
  const savedRun = process.env.VRUN_RUN;
  const fifo = () => ['--fifo-dir', path.join(env.dir, 'fifo')];
  const podDirs = () => (fs.existsSync(path.join(runDir, 'shim')) ? fs.readdirSync(path.join(runDir, 'shim')) : []);

  beforeAll(async () => {
    runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimerr-'));
    process.env.VRUN_RUN = runDir;
    env = await startShimEnv();
  });

  afterAll(async () => {
    await env?.stop();
    if (savedRun === undefined) delete process.env.VRUN_RUN;
    else process.env.VRUN_RUN = savedRun;
    fs.rmSync(runDir, { recursive: true, force: true });
  });

  it('a malformed bundle config: the error names the field', async () => {
    const spec = JSON.parse(execFileSync('ctr', ['oci', 'spec'], { encoding: 'utf8' })) as { process: { cwd: string; args: string[] } };
    spec.process.cwd = 'not/absolute';
    spec.process.args = ['true'];
    const specPath = path.join(env.dir, 'bad-spec.json');
    fs.writeFileSync(specPath, JSON.stringify(spec));
    const r = await env.ctr(['run', '--config', specPath, ...fifo(), '--runtime', RUNTIME, 'badspec']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('bundle config.json: process.cwd must be an absolute path');
    await until('the failed task\'s shim to exit and clean up', () => podDirs().length === 0);
    await env.ctr(['containers', 'rm', 'badspec']);
  });

  it('unknown runtime options, and options of another runtime', async () => {
    const opts = path.join(env.dir, 'shim-options.json');
    fs.writeFileSync(opts, JSON.stringify({ vmm: 'qemu-tcg', turbo: true }));
    const r = await env.ctr(['run', '--snapshotter', 'native', ...fifo(), '--runtime', RUNTIME, '--runtime-config-path', opts, IMAGE, 'badopts', 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${opts} has unknown option(s) "turbo"`);
    await until('the failed task\'s shim to exit and clean up', () => podDirs().length === 0);
    await env.ctr(['containers', 'rm', 'badopts']);

    fs.writeFileSync(opts, JSON.stringify({ vmm: 'bochs' }));
    const r2 = await env.ctr(['run', '--snapshotter', 'native', ...fifo(), '--runtime', RUNTIME, '--runtime-config-path', opts, IMAGE, 'badvmm', 'true']);
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toContain('invalid "vmm" "bochs"');
    await env.ctr(['containers', 'rm', 'badvmm']);
  });
});
