import { removeRunDir, vrun as vrunIn } from './fake-sandbox.js';
import { mkdtempSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { stopReplyDeadlineMs } from '../../src/sandbox/control-protocol.js';

/**
 * `vrun stop` on a real VM whose container ignores SIGTERM: SIGKILL after -t seconds, and the command returns
 * within -t + a fixed bound. Also: what the guest writes into files on the host (console and container logs)
 * is private to root.
 */
const runDir = mkdtempSync('/run/vrun-test-stop-');

const vrun = (args: string[]) => vrunIn(runDir, args);

describe('vrun stop against a container that traps SIGTERM (QEMU)', () => {
  beforeAll(async () => {
    await ensureGuestImage();
  });
  afterAll(() => removeRunDir(runDir));

  it('kills it after -t 2 and returns within 2 s + the bound; its logs are 0600', async () => {
    const d = await vrun(['run', '-d', 'busybox', 'sh', '-c', "trap '' TERM; echo up; sleep 1000"]);
    expect(d.status, d.stderr).toBe(0);
    const id = d.stdout.trim();
    // The container is up once its first line is in the log.
    const deadline = Date.now() + 120_000;
    while (!(await vrun(['logs', id])).stdout.includes('up')) {
      if (Date.now() > deadline) throw new Error('the container never said "up"');
      await new Promise((r) => setTimeout(r, 250));
    }
    for (const f of ['console.log', 'container.log']) expect(statSync(path.join(runDir, id, f)).mode & 0o777, f).toBe(0o600);

    const r = await vrun(['stop', '-t', '2', id]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${id}\n`);
    expect(r.ms).toBeGreaterThanOrEqual(2000);
    expect(r.ms).toBeLessThan(stopReplyDeadlineMs(2));
    const info = JSON.parse((await vrun(['inspect', id])).stdout) as { State: { Status: string; ExitCode: number } }[];
    expect(info[0]?.State).toMatchObject({ Status: 'exited', ExitCode: 137 });
  });
});
