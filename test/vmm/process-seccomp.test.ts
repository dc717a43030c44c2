import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/common/paths.js';

/**
 * The native VMM process's seccomp floor, applied to a real Node process (with its thread pool and V8's threads
 * already running) exactly as the VMM process applies it: afterwards the process still works as Node (files,
 * timers, worker threads, sockets) while what the filter refuses fails or ends the process.
 */
const seccompModule = path.join(projectRoot(), 'dist', 'src', 'vmm', 'kvm', 'process-seccomp.js');

function confined(body: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const script = `
    const { confineVmmProcess } = await import(${JSON.stringify(seccompModule)});
    const fs = await import('node:fs');
    confineVmmProcess();
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

describe('the native VMM process seccomp filter', () => {
  it('shows as mode 2 on every thread, and Node keeps working: files, timers, a worker thread', () => {
    const r = confined(`
      const { Worker } = await import('node:worker_threads');
      const tasks = fs.readdirSync('/proc/self/task');
      const modes = tasks.map((t) => /^Seccomp:\\s+(\\d)/m.exec(fs.readFileSync('/proc/self/task/' + t + '/status', 'utf8'))[1]);
      await new Promise((r) => setTimeout(r, 10));
      const w = new Worker('import("node:worker_threads").then((m) => m.parentPort.postMessage(6 * 7))', { eval: true });
      const answer = await new Promise((r) => w.once('message', r));
      await fs.promises.readFile('/proc/self/status', 'utf8');
      console.log(JSON.stringify({ threads: tasks.length, modes: [...new Set(modes)], answer }));
    `);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { threads: number; modes: string[]; answer: number };
    expect(out.threads).toBeGreaterThan(1);
    expect(out.modes).toEqual(['2']);
    expect(out.answer).toBe(42);
  });

  it('refuses to start a program: the new process is never made', () => {
    const marker = path.join(os.tmpdir(), `vrun-seccomp-marker-${process.pid}`);
    const r = confined(`
      const { spawnSync } = await import('node:child_process');
      const res = spawnSync('/bin/sh', ['-c', 'touch ${marker}']);
      console.log(JSON.stringify({ error: res.error?.code, status: res.status }));
    `);
    expect(r.status, r.stderr).toBe(0);
    // libuv starts children with clone(CLONE_VM | CLONE_VFORK), no CLONE_THREAD: refused before any execve.
    expect(JSON.parse(r.stdout)).toEqual({ error: 'EPERM', status: null });
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('refuses new processes, namespaces and mounts with EPERM, through the addon\'s own calls', () => {
    const r = confined(`
      const { loadNative } = await import(${JSON.stringify(path.join(projectRoot(), 'dist', 'src', 'common', 'native.js'))});
      const n = loadNative();
      const attempt = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code + ' ' + e.syscall; } };
      console.log(JSON.stringify({
        // clone(CLONE_NEWUSER | SIGCHLD): a new process, refused (a thread would be let through).
        userns: attempt(() => n.idmapUserns(0x7f000000, 65536)),
        // open_tree, the first step of any id-mapped mount.
        openTree: attempt(() => n.idmapCheck('/tmp', 0)),
      }));
    `);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ userns: 'EPERM clone(CLONE_NEWUSER)', openTree: 'EPERM open_tree' });
  });
});
