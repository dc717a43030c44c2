import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { ensureRunDir, hostBootId, newSandboxId, readState, sandboxPaths, writeState, type SandboxState } from '../../src/sandbox/state.js';

/**
 * A sandbox on disk as the CLI finds it, without a VM: a state.json, and (for a "running" one) a stand-in
 * sandbox process serving ctl.sock the way a stuck or hostile one would. The stand-in carries the state dir on
 * its command line, as the real one does, so the CLI's cleanup recognises (and may kill) it.
 */
export const root = path.resolve(import.meta.dirname, '../..');

export function vrunSync(runDir: string, args: string[]) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [path.join(root, 'bin/vrun.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' },
    timeout: 90_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

export function vrun(runDir: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/vrun.js'), ...args], { env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr, ms: Date.now() - t0 }));
  });
}

export async function writeFakeState(runDir: string, patch: Partial<SandboxState> = {}): Promise<SandboxState> {
  await ensureRunDir(runDir);
  const id = newSandboxId();
  mkdirSync(path.join(runDir, id), { mode: 0o700 });
  const s: SandboxState = {
    version: 1,
    id,
    name: `fake-${id.slice(0, 6)}`,
    image: 'busybox',
    createdAt: new Date().toISOString(),
    hostBootId: hostBootId(),
    status: 'exited',
    config: { image: 'busybox', args: ['sh'], env: [], tty: false, interactive: false, detach: true, autoRemove: false, readOnly: false, volumes: [], vmm: 'auto', debug: false },
    pids: {},
    ...patch,
  };
  await writeState(s, runDir);
  return s;
}

const SERVER = `
const net = require('node:net');
const [dir, mode, reply] = process.argv.slice(1);
process.on('SIGTERM', () => undefined); // a stuck sandbox: only SIGKILL ends it
const server = net.createServer((sock) => {
  sock.on('error', () => undefined);
  if (mode === 'mute') return; // accepts, reads, never answers
  sock.once('data', () => sock.end(JSON.stringify({ ok: false, error: reply }) + '\\n'));
});
server.listen(require('node:path').join(dir, 'ctl.sock'), () => process.stdout.write('ready\\n'));
`;

/**
 * Starts the stand-in sandbox process for a "running" sandbox and records its pid: 'mute' never answers;
 * 'error' answers every request with `reply` as the error.
 */
export async function startFakeSandbox(runDir: string, id: string, mode: 'mute' | 'error', reply = ''): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', SERVER, sandboxPaths(id, runDir).dir, mode, reply], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`fake sandbox exited with ${code}`)));
  });
  const st = await readState(id, runDir);
  if (st) await writeState({ ...st, status: 'running', pids: { sandbox: child.pid } }, runDir);
  return child;
}

/**
 * After a test of real sandboxes: `rm -f` of every container, then the run directory, of which only the
 * bookkeeping may be left (names, jail ids, the emulation notice): a non-recursive rmdir refuses anything else.
 */
export async function removeRunDir(runDir: string): Promise<void> {
  const ps = await vrun(runDir, ['ps', '-aq']);
  for (const id of ps.stdout.split('\n').filter(Boolean)) await vrun(runDir, ['rm', '-f', id]);
  for (const bookkeeping of ['names', 'jail-ids', 'emulation-notice-shown']) rmSync(path.join(runDir, bookkeeping), { recursive: true, force: true });
  rmdirSync(runDir);
}
