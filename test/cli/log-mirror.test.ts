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
});
