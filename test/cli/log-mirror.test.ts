import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { mirrorLog } from '../../src/cli/log-mirror.js';

describe('--debug log mirror', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-mirror-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('passes on every line, including those written after a --rm sandbox removed its directory', async () => {
    const log = path.join(dir, 'sandbox.log');
    // The sandbox process's side: one fd for the log's whole life, as pino keeps it.
    const fd = fs.openSync(log, 'a');
    const out = new PassThrough();
    let seen = '';
    out.on('data', (b: Buffer) => (seen += b.toString()));
    const stop = mirrorLog(log, out);
    fs.writeSync(fd, '{"msg":"sandbox process starting"}\n');
    await new Promise((r) => setTimeout(r, 250));
    expect(seen).toBe('{"msg":"sandbox process starting"}\n');
    fs.writeSync(fd, '{"msg":"container exited"}\n');
    fs.unlinkSync(log);
    fs.writeSync(fd, '{"msg":"sandbox process done"}\n');
    fs.closeSync(fd);
    await stop();
    expect(seen.split('\n')).toEqual(['{"msg":"sandbox process starting"}', '{"msg":"container exited"}', '{"msg":"sandbox process done"}', '']);
  });

  it('a log it cannot read, or an output that breaks, ends the mirroring without failing the command', async () => {
    // A directory opens but cannot be read (EISDIR): the read fails on every tick.
    const notAFile = fs.mkdtempSync(path.join(dir, 'not-a-file-'));
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const stop = mirrorLog(notAFile, new PassThrough());
      await new Promise((r) => setTimeout(r, 350));
      await expect(stop()).resolves.toBeUndefined();

      // stderr gone (EPIPE): the error is the mirror's end, not an unhandled 'error' event.
      const log = path.join(dir, 'epipe.log');
      fs.writeFileSync(log, 'line\n');
      const out = new PassThrough();
      const stop2 = mirrorLog(log, out);
      out.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      fs.appendFileSync(log, 'more\n');
      await new Promise((r) => setTimeout(r, 250));
      await expect(stop2()).resolves.toBeUndefined();
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
