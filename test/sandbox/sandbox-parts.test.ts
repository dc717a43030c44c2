import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeChildEnv } from '../../src/common/node-child-env.js';
import { parseControlRequest } from '../../src/sandbox/control-protocol.js';
import { ContainerLogWriter, replayContainerLog } from '../../src/sandbox/container-log.js';
import { FrameDecoder, FrameType, encodeFrame } from '../../src/sandbox/frames.js';
import { reserveName, releaseName, nameOwner } from '../../src/sandbox/names.js';
import { ensureRunDir, hostBootId, newSandboxId, readState, writeState, type SandboxState } from '../../src/sandbox/state.js';
import { resolveUser } from '../../src/common/user-db.js';

describe('frames', () => {
  it('round-trips frames split at every byte boundary', () => {
    const data = Buffer.concat([encodeFrame(FrameType.stdout, 'hello'), encodeFrame(FrameType.stderr, Buffer.alloc(70_000, 7)), encodeFrame(FrameType.stdinEof, '')]);
    for (const cut of [1, 3, 5, 6, 1000, data.length - 1]) {
      const dec = new FrameDecoder();
      const frames = [...dec.push(data.subarray(0, cut)), ...dec.push(data.subarray(cut))];
      expect(frames.map((f) => [f.type, f.payload.length])).toEqual([
        [FrameType.stdout, 5],
        [FrameType.stderr, 70_000],
        [FrameType.stdinEof, 0],
      ]);
    }
  });

  it('refuses unknown frame types and oversized lengths instead of buffering them', () => {
    expect(() => new FrameDecoder().push(Buffer.from([42, 0, 0, 0, 1, 0]))).toThrow(/bad frame type 42/);
    expect(() => new FrameDecoder().push(Buffer.from([2, 0xff, 0xff, 0xff, 0xff]))).toThrow(/exceeds/);
  });
});

describe('control requests', () => {
  it('validates ops and fields', () => {
    expect(parseControlRequest('{"op":"stop","timeoutS":99999}')).toEqual({ op: 'stop', timeoutS: 3600 });
    expect(() => parseControlRequest('{"op":"format-disk"}')).toThrow(/unknown control request/);
    expect(() => parseControlRequest('{"op":"exec","args":"sh"}')).toThrow(/list of strings/);
    expect(() => parseControlRequest('{"op":"kill","signal":"$(reboot)"}')).toThrow(/invalid signal/);
    expect(() => parseControlRequest('nope')).toThrow(/not JSON/);
    // A terminal size rides along with attach only when both sides are whole numbers in 1..9999.
    expect(parseControlRequest('{"op":"attach","start":true,"stdin":false,"size":{"rows":20,"cols":70}}')).toEqual({ op: 'attach', start: true, stdin: false, size: { rows: 20, cols: 70 } });
    for (const size of ['{"rows":0,"cols":70}', '{"rows":20.5,"cols":70}', '{"rows":20,"cols":10000}', '{"rows":"20","cols":70}', '"20x70"']) {
      expect(parseControlRequest(`{"op":"attach","start":true,"stdin":false,"size":${size}}`)).toEqual({ op: 'attach', start: true, stdin: false });
    }
  });
});

describe('state and names', () => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'vrun-state-'));

  it('writes state atomically and reads it back; rejects a corrupt file', async () => {
    await ensureRunDir(runDir);
    const id = newSandboxId();
    mkdirSync(path.join(runDir, id));
    const s: SandboxState = {
      version: 1, id, name: 'x', image: 'busybox', createdAt: new Date().toISOString(), hostBootId: hostBootId(), status: 'creating',
      config: { image: 'busybox', args: [], env: [], tty: false, interactive: false, detach: false, autoRemove: false, readOnly: false, volumes: [], vmm: 'auto', debug: false },
      pids: {},
    };
    await writeState(s, runDir);
    expect(await readState(id, runDir)).toEqual(s);
    writeFileSync(path.join(runDir, id, 'state.json'), '{"version":1,');
    await expect(readState(id, runDir)).rejects.toThrow(/corrupt/);
  });

  it('gives a name to one container only', async () => {
    await ensureRunDir(runDir);
    const a = newSandboxId();
    const b = newSandboxId();
    await reserveName('web', a, runDir);
    await expect(reserveName('web', b, runDir)).rejects.toThrow(/already in use by container/);
    await releaseName('web', b, runDir); // not the owner: no effect
    expect(await nameOwner('web', runDir)).toBe(a);
    await releaseName('web', a, runDir);
    await reserveName('web', b, runDir);
    expect(await nameOwner('web', runDir)).toBe(b);
  });
});

describe('container log', () => {
  it('replays stdout and stderr apart and byte-exact', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-clog-'));
    const file = path.join(dir, 'container.log');
    const w = new ContainerLogWriter(file);
    const bin = Buffer.from([0, 255, 10, 13, 128]);
    w.write('stdout', Buffer.from('out1\n'));
    w.write('stderr', bin);
    w.write('stdout', Buffer.from('out2'));
    await w.close();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    await replayContainerLog(file, { stdout: (b) => out.push(b), stderr: (b) => err.push(b) });
    expect(Buffer.concat(out).toString()).toBe('out1\nout2');
    expect(Buffer.concat(err)).toEqual(bin);
  });
});

describe('-u resolution against an untrusted rootfs', () => {
  const rootfs = mkdtempSync(path.join(os.tmpdir(), 'vrun-rootfs-'));
  mkdirSync(path.join(rootfs, 'etc'));
  writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\n');
  writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:1001:\nwheel:x:10:alice\n');

  it('maps names and numbers like Docker', async () => {
    expect(await resolveUser('alice', rootfs)).toEqual({ uid: 1000, gid: 1001, additionalGids: [10] });
    expect(await resolveUser('1000:10', rootfs)).toEqual({ uid: 1000, gid: 10 });
    expect(await resolveUser('4242', rootfs)).toEqual({ uid: 4242, gid: 0 });
    expect(await resolveUser('alice:staff', rootfs)).toMatchObject({ uid: 1000, gid: 1001 });
    await expect(resolveUser('bob', rootfs)).rejects.toThrow(/unable to find user bob/);
    await expect(resolveUser('alice:nogroup', rootfs)).rejects.toThrow(/unable to find group nogroup/);
  });

  it('does not follow an /etc/passwd symlink out of the rootfs', async () => {
    const evil = mkdtempSync(path.join(os.tmpdir(), 'vrun-rootfs-evil-'));
    mkdirSync(path.join(evil, 'etc'));
    symlinkSync('/etc/passwd', path.join(evil, 'etc/passwd'));
    // The host's /etc/passwd has root; through the symlink it would resolve. It must not be read.
    await expect(resolveUser('root', evil)).rejects.toThrow(/unable to find user root/);
  });
});

describe('environment of vrun’s own Node children', () => {
  it('drops NODE_EXTRA_CA_CERTS (read at every Node start) and keeps the rest, as the child sees it', () => {
    const env = nodeChildEnv({ ...process.env, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', VRUN_PROBE: 'kept' }, { UV_THREADPOOL_SIZE: '7' });
    const out = execFileSync(process.execPath, ['-p', 'JSON.stringify([process.env.NODE_EXTRA_CA_CERTS ?? null, process.env.VRUN_PROBE, process.env.UV_THREADPOOL_SIZE])'], { env, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual([null, 'kept', '7']);
  });
});
