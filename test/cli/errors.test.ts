import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const runDir = mkdtempSync(path.join(os.tmpdir(), 'vrun-cli-err-'));

function vrun(args: string[]) {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/vrun.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Everything the runtime created under its run dir, except the names directory it keeps. */
function leftovers(): string[] {
  return readdirSync(runDir).filter((e) => e !== 'names' && e !== 'emulation-notice-shown');
}

describe('vrun CLI bad input', () => {
  it.each([
    [['run', '--memory', 'lots', 'busybox', 'true'], /invalid value "lots" for --memory/],
    [['run', '-v', '/nonexistent/vrun-test:/data', 'busybox', 'true'], /volume host path \/nonexistent\/vrun-test does not exist/],
    [['run', '--frobnicate', 'busybox'], /unknown flag: --frobnicate/],
    [['run', '--cpus', 'many', 'busybox'], /invalid value "many" for --cpus/],
    [['run', '--vmm', 'xen', 'busybox'], /invalid --vmm "xen"/],
    [['run', 'no-such-image-vrun-test:1'], /no-such-image-vrun-test/],
    [['logs', 'no-such-container'], /no such container: no-such-container/],
    [['exec', 'no-such-container', 'true'], /no such container/],
    [['inspect', 'no-such-container'], /no such container/],
    [['frob'], /unknown command "frob"/],
  ])('vrun %j: one line on stderr, exit 125, nothing left behind', (args, msg) => {
    const r = vrun(args);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(msg);
    const lines = r.stderr.trimEnd().split('\n').filter((l) => !l.startsWith('hint:') && !l.startsWith("See 'vrun --help'"));
    expect(lines).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
    expect(leftovers()).toEqual([]);
  });

  it('prints a stack trace only with --debug', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'bin/vrun.js'), '--debug', 'run', '--memory', 'lots', 'busybox'], {
      encoding: 'utf8',
      env: { ...process.env, VRUN_RUN: runDir },
    });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('ps with no containers prints only the header', () => {
    const r = vrun(['ps', '-a']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/)]);
  });
});
