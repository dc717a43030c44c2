import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitPayload } from '../../bench/vmm/exit-bench.js';

/**
 * The exit benchmark's payload is a hand-assembled multiboot image; QEMU (TCG here, so it runs on any
 * host) must load it, run the port-write loop and leave through isa-debug-exit, which QEMU reports as
 * exit status (0 << 1) | 1 = 1. A payload that faulted or looped would hang or reset instead.
 */
describe('exit benchmark payload', () => {
  it('runs to its exit port under QEMU for 0 and for many iterations', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-exit-payload-'));
    try {
      for (const n of [0, 5000]) {
        const file = path.join(dir, `p${n}.bin`);
        writeFileSync(file, exitPayload(n));
        const r = spawnSync(
          'qemu-system-x86_64',
          ['-accel', 'tcg', '-M', 'pc', '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'none', '-kernel', file, '-device', 'isa-debug-exit,iobase=0xf4,iosize=4'],
          { timeout: 50_000, encoding: 'utf8' },
        );
        expect(r.stderr).toBe('');
        expect(r.status).toBe(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
