import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { openSync, readSync, writeSync, closeSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureGuestImage, loadGuestImage } from '../../src/guest-image/image.js';
import { agentBundlePath } from '../../src/guest-image/guest-payload.js';
import { guestImageCacheDir } from '../../src/common/paths.js';
import { sha256File } from '../../src/guest-image/hash.js';

const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/src/guest-image/cli.js');

function flipByte(file: string, offset: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = (b[0] as number) ^ 0xff;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

describe('guest image build', () => {
  it('reuses an unchanged build without running make again', async () => {
    const first = await ensureGuestImage();
    const before = statSync(first.kernel).mtimeMs;
    const second = await ensureGuestImage();
    expect(second.kernel).toBe(first.kernel);
    expect(second.initrd).toBe(first.initrd);
    expect(statSync(second.kernel).mtimeMs).toBe(before);
    console.log(`guest-image cached run: ${second.totalSeconds}s; kernel ${second.kernelRelease}, vmlinux ${second.sizes.vmlinux} B, initrd ${second.sizes.initrd} B`);
  });

  it('detects a corrupt cached initrd and rebuilds it instead of using it', async () => {
    const img = await ensureGuestImage();
    const good = await sha256File(img.initrd);
    flipByte(img.initrd, 1000);
    expect(await sha256File(img.initrd)).not.toBe(good);
    const lines: string[] = [];
    const progress = { step: (n: string) => lines.push(n), update: () => {}, done: () => {} };
    const again = await ensureGuestImage({ progress });
    expect(lines.join('\n')).toMatch(/cached initrd rejected \(initrd.cpio hash mismatch/);
    expect(await sha256File(again.initrd)).toBe(good);
  });

  it('detects a corrupt cached kernel and rebuilds it', async () => {
    const img = await ensureGuestImage();
    const good = await sha256File(img.kernel);
    flipByte(img.kernel, 4096);
    const lines: string[] = [];
    const progress = { step: (n: string) => lines.push(n), update: () => {}, done: () => {} };
    const again = await ensureGuestImage({ progress });
    expect(lines.join('\n')).toMatch(/cached kernel rejected \(vmlinux hash mismatch/);
    expect(await sha256File(again.kernel)).toBe(good);
  });

  it('an image whose initrd carries another agent build is rebuilt for this agent (root) or refused (not root)', async () => {
    await ensureGuestImage();
    const manifestFile = path.join(guestImageCacheDir(), 'guest-image.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { agentSha256?: string };
    const ours = await sha256File(agentBundlePath());
    expect(manifest.agentSha256).toBe(ours);
    writeFileSync(manifestFile, JSON.stringify({ ...manifest, agentSha256: '0'.repeat(64) }));

    const load = `import(${JSON.stringify(path.join(root, 'dist/src/guest-image/image.js'))}).then((m) => m.loadGuestImage()).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); })`;
    const nonRoot = spawnSync('unshare', ['--user', process.execPath, '-e', load], { encoding: 'utf8' });
    expect(nonRoot.status, nonRoot.stderr).toBe(3);
    expect(nonRoot.stderr).toMatch(/the guest image carries a different agent build than this vrun/);

    const healed = await loadGuestImage();
    expect(healed.agentSha256).toBe(ours);
    expect(statSync(healed.initrd).size).toBeGreaterThan(0);
    expect((JSON.parse(readFileSync(manifestFile, 'utf8')) as { agentSha256?: string }).agentSha256).toBe(ours);
  });

  it('names the Debian package when a build tool is missing', () => {
    const r = spawnSync(process.execPath, [cli, '--force'], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/make not found: install the Debian package "make"/);
  });

  it('refuses to build when not root, saying so', () => {
    // A fresh user namespace without a uid map makes the CLI a real non-root process (uid 65534, no
    // capabilities on the host) while its files keep their root owner, so the check works from a checkout
    // inside a 0700 directory, where a setuid to nobody could not even load the CLI.
    const r = spawnSync('unshare', ['--user', process.execPath, cli], { encoding: 'utf8', env: { ...process.env, VRUN_ROOT: '/tmp/vrun-nonroot' } });
    expect(r.error).toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/needs root/);
  });
});
