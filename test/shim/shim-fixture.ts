/**
 * What the shim's end-to-end tests share: a real containerd (test/ttrpc/containerd-fixture.ts) that finds
 * containerd-shim-vrun-v2 on its PATH, a busybox image the test builds from Debian's busybox-static and
 * imports with `ctr images import` (no registry), and a `ctr` runner that reports exit codes.
 */
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/common/paths.js';
import { startContainerd, type Containerd } from '../ttrpc/containerd-fixture.js';

export const IMAGE = 'docker.io/library/vrun-shim-busybox:latest';
export const RUNTIME = 'io.containerd.vrun.v2';
export const NAMESPACE = 'vrunshim';
const SHIM_BIN = path.join(projectRoot(), 'bin', 'containerd-shim-vrun-v2.js');

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** A one-layer OCI archive: busybox-static at /bin/busybox with the applets the tests call (and `extraBins` in /bin). */
export function buildBusyboxArchive(dir: string, image = IMAGE, entrypoint?: string[], extraBins: Record<string, string> = {}): string {
  const rootfs = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  for (const [name, from] of Object.entries(extraBins)) {
    fs.copyFileSync(from, path.join(rootfs, 'bin', name));
    fs.chmodSync(path.join(rootfs, 'bin', name), 0o755);
  }
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'echo', 'cat', 'sleep', 'uname', 'true', 'false', 'ls', 'ps', 'hostname']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  const layer = execFileSync('tar', ['-C', rootfs, '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: { ...(entrypoint ? { Entrypoint: entrypoint } : { Cmd: ['/bin/sh'] }), Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layer)}`] } }),
  );
  return writeImageArchive(dir, layer, config, image);
}

/** Packs one layer and its image config as an OCI image-layout tar that `ctr images import` accepts. */
export function writeImageArchive(dir: string, layer: Buffer, config: Buffer, image: string): string {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${sha(layer)}`, size: layer.length }],
    }),
  );
  const layout = path.join(dir, 'layout');
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  for (const b of [layer, config, manifest]) fs.writeFileSync(path.join(layout, 'blobs', 'sha256', sha(b)), b);
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length, annotations: { 'io.containerd.image.name': image, 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  const archive = path.join(dir, 'image.tar');
  execFileSync('tar', ['-C', layout, '-cf', archive, '.']);
  return archive;
}

export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ShimEnv {
  dir: string;
  ctd: Containerd;
  /** Runs ctr against the test's containerd; never throws on a non-zero exit. */
  ctr(args: string[], opts?: { timeoutMs?: number; input?: string }): Promise<CtrResult>;
  stop(): Promise<void>;
}

export async function startShimEnv(): Promise<ShimEnv> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shim-'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(SHIM_BIN, path.join(bin, 'containerd-shim-vrun-v2'));
  const ctd = await startContainerd({ extraPath: bin });
  const ctr = (args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<CtrResult> =>
    new Promise((resolve) => {
      const child = execFile('ctr', ['--address', ctd.address, '--namespace', NAMESPACE, ...args], { timeout: opts.timeoutMs ?? 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
        resolve({ code, stdout, stderr });
      });
      child.stdin?.end(opts.input ?? '');
    });
  const imported = await ctr(['images', 'import', '--snapshotter', 'native', buildBusyboxArchive(dir)]);
  if (imported.code !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
  return {
    dir,
    ctd,
    ctr,
    async stop() {
      await ctd.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
