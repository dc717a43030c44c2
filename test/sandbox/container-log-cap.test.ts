import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTAINER_LOG_MAX_BYTES, ContainerLogWriter, replayContainerLog } from '../../src/sandbox/container-log.js';

/**
 * container.log (what `vrun logs` reads) is capped and rotated like Docker's json-file with max-size and
 * max-file=2: at most two files of the cap each, the newest output kept, both streams still apart, 0600.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Chunk i of a test stream: recognisable, so gaps and reordering show. */
function chunk(i: number): Buffer {
  return Buffer.from(`<${String(i).padStart(6, '0')}:${'z'.repeat(990)}>`);
}

async function replay(file: string, opts: Parameters<typeof replayContainerLog>[2] = {}): Promise<{ out: string; err: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  await replayContainerLog(file, { stdout: (b) => out.push(b), stderr: (b) => err.push(b) }, opts);
  return { out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString() };
}

describe('container log cap and rotation', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-clog-cap-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to 16 MiB per file', () => {
    expect(CONTAINER_LOG_MAX_BYTES).toBe(16 * 1024 * 1024);
  });

  it('keeps two files of at most the cap, 0600, and `logs` replays the newest output in order', async () => {
    const file = path.join(dir, 'container.log');
    const cap = 64 * 1024;
    // Rotation is under test here, not dropping: the pending bound holds all 1 MB written, so a loaded machine
    // (a slow disk) cannot turn this into the drop path (tested in console-log-cap.test.ts).
    const w = new ContainerLogWriter(file, cap, { maxPendingBytes: 2 << 20 });
    let all = '';
    for (let i = 0; i < 1000; i++) {
      w.write('stdout', chunk(i));
      all += chunk(i).toString();
      if (i % 8 === 0) await sleep(1);
    }
    w.write('stderr', Buffer.from('the last word'));
    await w.close();
    for (const f of [file, `${file}.1`]) {
      const st = statSync(f);
      expect(st.size).toBeLessThanOrEqual(cap);
      expect(st.mode & 0o777).toBe(0o600);
    }
    const { out, err } = await replay(file);
    expect(err).toBe('the last word');
    expect(out.length).toBeGreaterThan(cap / 2);
    expect(out.length).toBeLessThanOrEqual(2 * cap);
    expect(all.endsWith(out)).toBe(true); // the newest output, no gap, no reordering
    expect(out.endsWith(chunk(999).toString())).toBe(true);
  });

  it('splits a chunk larger than a frame may be instead of failing on it', async () => {
    const file = path.join(dir, 'big.log');
    const w = new ContainerLogWriter(file);
    const big = Buffer.alloc(3 << 20, 0x62); // 3 MiB: over MAX_FRAME (1 MiB)
    expect(() => w.write('stdout', big)).not.toThrow();
    await w.close();
    expect((await replay(file)).out.length).toBe(big.length);
  });

  it('`logs -f` follows the output across rotations without losing or repeating any', async () => {
    const file = path.join(dir, 'follow.log');
    const cap = 32 * 1024;
    const w = new ContainerLogWriter(file, cap);
    let running = true;
    let all = '';
    const following = replay(file, { follow: true, pollMs: 2, stillRunning: async () => running });
    for (let i = 0; i < 400; i++) {
      w.write(i % 3 === 0 ? 'stderr' : 'stdout', chunk(i));
      if (i % 3 !== 0) all += chunk(i).toString();
      await sleep(1);
    }
    await w.close();
    running = false;
    const { out, err } = await following;
    expect(out).toBe(all);
    expect(err.length).toBe(134 * chunk(0).length);
    expect(statSync(file).size).toBeLessThanOrEqual(cap);
  });

  it('stops writing after a write error without throwing', async () => {
    const errors: Error[] = [];
    // A directory that does not exist: the open fails; the container must carry on regardless.
    const w = new ContainerLogWriter(path.join(dir, 'missing', 'container.log'), 64 * 1024, { onError: (e) => errors.push(e) });
    expect(() => w.write('stdout', Buffer.from('x'))).not.toThrow();
    await w.close();
    expect(errors).toHaveLength(1);
    expect(w.failed).toBe(errors[0]);
  });
});
