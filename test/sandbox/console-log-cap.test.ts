import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConsoleLog } from '../../src/vmm/console-log.js';

/**
 * The guest's console goes to a file on the host: the guest chooses every byte and how many, so the file is
 * capped and rotated, private, and a disk that refuses the bytes must not take the sandbox process down.
 */
const tick = () => new Promise((r) => setImmediate(r));
/** Waits until the log has written what it was given (so this test measures the cap, not the disk's speed). */
async function drained(log: ConsoleLog): Promise<void> {
  while (log.logPendingBytes > 0) await new Promise((r) => setTimeout(r, 1));
}

describe('guest console log', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-console-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps at most two capped files (the newest output), 0600, lines still matched', async () => {
    const file = path.join(dir, 'console.log');
    writeFileSync(file, 'left over from before\n', { mode: 0o644 });
    chmodSync(file, 0o644);
    const cap = 64 * 1024;
    const log = new ConsoleLog(file, { maxBytes: cap });
    const seen: string[] = [];
    log.onLine((l) => seen.push(l));
    let all = 'left over from before\n';
    // 1 MiB of console, in 8 KiB pieces, letting the disk keep up between them.
    for (let i = 0; i < 128; i++) {
      let chunk = '';
      for (let j = 0; j < 128; j++) chunk += `line ${String(i * 128 + j).padStart(6, '0')} ${'x'.repeat(50)}\n`;
      log.write(Buffer.from(chunk));
      all += chunk;
      await drained(log);
    }
    log.write('VRUN-EXIT status=3\n');
    all += 'VRUN-EXIT status=3\n';
    log.close('test done');
    await log.whenLogClosed();

    const cur = statSync(file);
    const old = statSync(`${file}.1`);
    expect(cur.size).toBeLessThanOrEqual(cap);
    expect(old.size).toBeLessThanOrEqual(cap);
    expect(cur.size + old.size).toBeGreaterThan(cap); // a rotation kept a whole file's worth
    expect(cur.mode & 0o777).toBe(0o600);
    expect(old.mode & 0o777).toBe(0o600);
    // What is kept is the end of what the guest printed, in order, nothing lost in between.
    const kept = readFileSync(`${file}.1`, 'utf8') + readFileSync(file, 'utf8');
    expect(kept).not.toMatch(/dropped/);
    expect(all.endsWith(kept)).toBe(true);
    expect(kept.endsWith('VRUN-EXIT status=3\n')).toBe(true);
    expect(seen).toHaveLength(128 * 128 + 1);
    expect(log.logFailed).toBeUndefined();
  });

  it('drops (and says so) what the disk cannot take in time, rather than buffering it', async () => {
    const file = path.join(dir, 'flood.log');
    const log = new ConsoleLog(file, { maxBytes: 256 * 1024 });
    // 16 MiB in one go, with no chance for the disk to take any of it meanwhile.
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let maxPending = 0;
    for (let i = 0; i < 256; i++) {
      log.write(chunk);
      maxPending = Math.max(maxPending, log.logPendingBytes);
    }
    expect(maxPending).toBeLessThanOrEqual(256 * 1024);
    await drained(log);
    log.write('after the flood\n');
    log.close('done');
    await log.whenLogClosed();
    const kept = readFileSync(file, 'utf8');
    expect(kept).toMatch(/\[vrun: \d+ bytes of guest console output dropped: the log file could not keep up\]\nafter the flood\n$/);
    expect(statSync(file).size).toBeLessThanOrEqual(256 * 1024);
  });

  it('creates a new log 0600', async () => {
    const file = path.join(dir, 'fresh.log');
    const log = new ConsoleLog(file);
    log.write('hello\n');
    log.close('done');
    await log.whenLogClosed();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe('hello\n');
  });

  it('quotes console lines in errors with their control characters made visible', async () => {
    const log = new ConsoleLog();
    log.write('boot \u001b]52;c;ZXZpbA==\u0007 \u001b[2J\u009b31m\n');
    const err = await log.waitFor(/never/, 10).catch((e: Error) => e);
    expect((err as Error).message).toContain('boot \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J\\x9b31m');
    expect((err as Error).message).not.toMatch(/[\u001b\u0007\u009b]/); // eslint-disable-line no-control-regex
  });

  describe('on a full disk', () => {
    let holder: ChildProcess | undefined;
    const mnt = mkdtempSync(path.join(os.tmpdir(), 'vrun-full-'));
    afterAll(() => {
      if (holder?.pid) process.kill(holder.pid, 'SIGKILL');
      rmSync(mnt, { recursive: true, force: true });
    });

    it('logs the write error once, stops writing, and never throws', async () => {
      // A 64 KiB tmpfs, mounted in a mount namespace of its own (nothing on the host sees it), reached
      // through the holder process's root.
      holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=64k,mode=0700 vrun-test-full '${mnt}' && echo ready && exec sleep 600`], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        holder?.stdout?.once('data', () => resolve());
        holder?.once('exit', (code) => reject(new Error(`tmpfs holder exited with ${code}`)));
      });
      const file = `/proc/${holder.pid}/root${mnt}/console.log`;
      const errors: Error[] = [];
      const log = new ConsoleLog(file, { maxBytes: 1 << 20, onError: (e) => errors.push(e) });
      const line = `${'y'.repeat(1023)}\n`;
      for (let i = 0; i < 512 && errors.length === 0; i++) {
        expect(() => log.write(line)).not.toThrow();
        await tick();
      }
      // The guest keeps printing after the error: nothing is written, nothing is reported again, lines still parse.
      const after: string[] = [];
      log.onLine((l) => after.push(l));
      for (let i = 0; i < 64; i++) log.write('still here\n');
      await new Promise((r) => setTimeout(r, 50));
      log.close('done');
      await log.whenLogClosed();
      expect(errors).toHaveLength(1);
      expect((errors[0] as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(log.logFailed).toBe(errors[0]);
      expect(after).toHaveLength(64);
      expect(statSync(file).size).toBeLessThanOrEqual(64 * 1024);
    });
  });
});
