import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openProcessLog } from '../../src/common/process-log.js';

describe('a process log (sandbox.log, shim.log)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('stays under its cap per file, rotates once, and keeps whole JSON lines with the newest kept', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-plog-'));
    dirs.push(dir);
    const file = path.join(dir, 'sandbox.log');
    const cap = 256 << 10;
    const log = openProcessLog(file, 'info', cap);
    // A guest that makes the process warn without end: 40 times the cap, written as fast as the logger takes it.
    const lines = Math.floor((40 * cap) / 200);
    for (let i = 0; i < lines; i++) {
      log.logger.warn({ seq: i, guest: 'x'.repeat(120) }, 'guest sent something odd');
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await log.close();
    const sizes = [file, `${file}.1`].map((f) => fs.statSync(f).size);
    expect(sizes[0]).toBeLessThanOrEqual(cap);
    expect(sizes[1]).toBeLessThanOrEqual(cap);
    expect(sizes[1]).toBeGreaterThan(cap / 2);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600');
    const records = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { seq?: number; msg: string });
    expect(records.at(-1)?.seq).toBe(lines - 1);
  });
});
