import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { openSync, readSync, writeSync, closeSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureGuestImage, loadGuestImage } from '../../src/guest-image/image.js';
import { agentBundlePath } from '../../src/guest-image/guest-payload.js';
import { guestImageCacheDir } from '../../src/common/paths.js';
import { sha256File } from '../../src/guest-image/hash.js';
import { createHash } from 'node:crypto';

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

/**
 * An initrd (newc cpio) as entry name -> mode and sha256 of the data. The agent's V8 code cache is made anew
 * with each build and V8's caches are not byte-for-byte reproducible, so it is listed by its size class only.
 */
function initrdEntries(file: string): Record<string, string> {
  const buf = readFileSync(file);
  const out: Record<string, string> = {};
  const field = (at: number, i: number) => parseInt(buf.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16);
  const pad4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 110 <= buf.length; ) {
    if (buf.toString('latin1', at, at + 6) !== '070701') throw new Error(`${file}: no cpio header at ${at}`);
    const mode = field(at, 1);
    const size = field(at, 6);
    const nameSize = field(at, 11);
    const name = buf.toString('utf8', at + 110, at + 110 + nameSize - 1);
    const dataAt = pad4(at + 110 + nameSize);
    if (name === 'TRAILER!!!') break;
    const data = buf.subarray(dataAt, dataAt + size);
    out[name] = name.endsWith('.v8-cache') ? `${mode.toString(8)} ${size > 0 ? 'non-empty' : 'empty'}` : `${mode.toString(8)} ${createHash('sha256').update(data).digest('hex')}`;
    at = pad4(dataAt + size);
  }
  return out;
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
    const good = initrdEntries(img.initrd);
    expect(good['opt/vrun/agent.cjs.v8-cache']).toMatch(/ non-empty$/);
    const goodHash = await sha256File(img.initrd);
    flipByte(img.initrd, 1000);
    expect(await sha256File(img.initrd)).not.toBe(goodHash);
    const lines: string[] = [];
    const progress = { step: (n: string) => lines.push(n), update: () => {}, done: () => {} };
    // Rebuilt the way a sandbox or shim rebuilds it on use: under umask 077. The guest's files keep their modes.
    const umask = process.umask(0o077);
    let again;
    try {
      again = await ensureGuestImage({ progress });
    } finally {
      process.umask(umask);
    }
    expect(lines.join('\n')).toMatch(/cached initrd rejected \(initrd.cpio hash mismatch/);
    expect(initrdEntries(again.initrd)).toEqual(good);
    expect(good['etc/passwd']).toMatch(/^100644 /);
    expect(good.etc).toMatch(/^40755 /);
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
