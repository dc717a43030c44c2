import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostBootId, newSandboxId, type SandboxState } from '../../src/sandbox/state.js';

/**
 * State left behind by a host crash or a killed sandbox process is collected by whatever command runs
 * next: the real CLI against a run directory holding such leftovers.
 */
const root = path.resolve(import.meta.dirname, '../..');

function vrun(runDir: string, args: string[]) {
  return spawnSync(process.execPath, [path.join(root, 'bin/vrun.js'), ...args], { encoding: 'utf8', env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' } });
}

function plant(runDir: string, patch: Partial<SandboxState>): SandboxState {
  const id = newSandboxId();
  const s: SandboxState = {
    version: 1, id, name: `c-${id.slice(0, 6)}`, image: 'busybox', createdAt: new Date(Date.now() - 60_000).toISOString(), hostBootId: hostBootId(), status: 'running',
    config: { image: 'busybox', args: ['sleep', '100'], env: [], tty: false, interactive: false, detach: true, autoRemove: false, readOnly: false, volumes: [], vmm: 'auto', debug: false },
    pids: {},
    ...patch,
  };
  mkdirSync(path.join(runDir, id), { recursive: true });
  mkdirSync(path.join(runDir, 'names'), { recursive: true });
  symlinkSync(id, path.join(runDir, 'names', s.name));
  writeFileSync(path.join(runDir, id, 'state.json'), JSON.stringify(s));
  return s;
}

describe('stale sandbox state', () => {
  it('deletes state from before a host reboot (another boot id) on the next command', () => {
    const runDir = mkdtempSync('/tmp/vrun-stale-');
    const s = plant(runDir, { hostBootId: '00000000-0000-0000-0000-000000000000' });
    const r = vrun(runDir, ['ps', '-a']);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain(s.id.slice(0, 12));
    expect(existsSync(path.join(runDir, s.id))).toBe(false);
    expect(existsSync(path.join(runDir, 'names', s.name))).toBe(false);
  });

  it('marks a running sandbox whose process is gone as failed, with the reason; rm removes it', () => {
    const runDir = mkdtempSync('/tmp/vrun-stale-');
    // A pid that exists but is not this sandbox's process (ours): it must be neither trusted nor killed.
    const s = plant(runDir, { pids: { sandbox: process.pid } });
    const r = vrun(runDir, ['ps', '-a']);
    expect(r.stdout.split('\n').find((l) => l.startsWith(s.id.slice(0, 12)))).toMatch(/Failed: the sandbox process died/);
    expect((JSON.parse(readFileSync(path.join(runDir, s.id, 'state.json'), 'utf8')) as SandboxState).status).toBe('failed');
    expect(vrun(runDir, ['ps']).stdout).not.toContain(s.id.slice(0, 12));
    const rm = vrun(runDir, ['rm', s.name]);
    expect(rm.status, rm.stderr).toBe(0);
    expect(existsSync(path.join(runDir, s.id))).toBe(false);
  });

  it('refuses to rm a running container without -f', () => {
    const runDir = mkdtempSync('/tmp/vrun-stale-');
    // Young and without a sandbox pid yet: counts as still being created.
    const s = plant(runDir, { status: 'creating', createdAt: new Date().toISOString() });
    const r = vrun(runDir, ['rm', s.name]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot remove running container .* use rm -f/);
    expect(vrun(runDir, ['rm', '-f', s.name]).status).toBe(0);
    expect(existsSync(path.join(runDir, s.id))).toBe(false);
  });
});
