import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VhostUserFrontend } from '../../src/vmm/vhost-user/frontend.js';

/** The vhost-user frontend against a real virtiofsd: negotiation and the memory table with fd passing. */
describe('vhost-user frontend with virtiofsd', () => {
  let dir: string;
  let socket: string;
  let virtiofsd: ChildProcess;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-vhost-'));
    socket = path.join(dir, 'vfs.sock');
    writeFileSync(path.join(dir, 'ram'), Buffer.alloc(1 << 20));
    virtiofsd = spawn('/usr/lib/qemu/virtiofsd', [`--socket-path=${socket}`, '-o', `source=${dir}`, '-o', 'sandbox=chroot'], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
  });

  afterAll(() => {
    virtiofsd.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates features and hands over guest memory as an fd', () => {
    const f = VhostUserFrontend.connect(socket);
    try {
      f.handshake();
      expect(f.backendFeatures & (1n << 32n)).toBe(1n << 32n); // VIRTIO_F_VERSION_1
      expect(f.replyAck).toBe(true);
      const fd = openSync(path.join(dir, 'ram'), 'r+');
      try {
        // Acknowledged by the backend (REPLY_ACK), so a refusal would throw here.
        f.setMemTable([{ guestAddr: 0, size: 1 << 20, userAddr: 0x1000_0000_0000, mmapOffset: 0 }], fd);
      } finally {
        closeSync(fd);
      }
    } finally {
      f.close();
    }
  });

  it('names the socket when no backend listens there', () => {
    expect(() => VhostUserFrontend.connect(path.join(dir, 'absent.sock'))).toThrow(/cannot connect to vhost-user socket .*absent\.sock/);
  });
});
