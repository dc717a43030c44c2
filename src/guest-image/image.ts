import { constants, existsSync } from 'node:fs';
import { access, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { guestImageCacheDir, projectRoot } from '../common/paths.js';
import { createProgress, type Progress } from '../common/progress.js';
import { buildKernel } from './kernel.js';
import { buildInitrd } from './initrd.js';
import { agentBundlePath, guestPayload, labPayload } from './guest-payload.js';
import { sha256File } from './hash.js';
import { makeBootable, readVerifiedManifest, type ArtifactFile } from './manifest.js';
import { requireRoot } from './host-tools.js';
import { withLock } from '../image/lock.js';

/** The guest image a VM boots: our kernel and initrd, as recorded in the image manifest. */
export interface GuestImage {
  kernel: string;
  bzImage: string;
  initrd: string;
  kernelRelease: string;
  configHash: string;
  /**
   * The split form of the initrd (guest image only): a small boot initrd and the read-only userland disk image
   * the guest init mounts (issue 19). Absent in images built before it.
   */
  userland?: { initrd: string; image: string };
}

export interface ImageManifest extends GuestImage {
  kind: 'guest-image' | 'lab-image';
  kernelBuildSeconds: number;
  sizes: { vmlinux: number; bzImage: number; initrd: number; bootInitrd?: number; userlandImage?: number };
  builtAt: string;
  totalSeconds: number;
  /** sha256 of the agent bundle inside the initrd (guest image only): the host's client must speak its API. */
  agentSha256?: string;
}

function manifestPath(kind: 'guest-image' | 'lab-image'): string {
  return path.join(guestImageCacheDir(), `${kind}.json`);
}

async function writeImageManifest(m: ImageManifest): Promise<void> {
  const p = manifestPath(m.kind);
  await writeFile(`${p}.${process.pid}`, JSON.stringify(m, null, 2) + '\n');
  await rename(`${p}.${process.pid}`, p);
}

async function ensure(kind: 'guest-image' | 'lab-image', opts: { force?: boolean; progress?: Progress }): Promise<ImageManifest> {
  requireRoot('building the guest image');
  const progress = opts.progress ?? createProgress({ bytes: false });
  const cacheDir = guestImageCacheDir();
  await mkdir(cacheDir, { recursive: true });
  // Two builds of one kernel in the same build tree corrupt each other's objects (seen: a test and the setup
  // racing), so builders of one kind take turns; the second then finds the first one's cached result.
  return withLock(path.join(cacheDir, `${kind}.lock`), () => withBuildUmask(() => build(kind, cacheDir, progress, opts.force)), {
    onWait: () => progress.step(`guest-image: another build of the ${kind} is running; waiting for it`),
  });
}

/**
 * The image's files get the modes a build at umask 022 gives them, whoever builds it: a sandbox or shim (umask
 * 077) that rebuilds the initrd on use would otherwise ship a guest whose /etc/passwd and directories are
 * root's alone (and boot files the jailed VMM cannot read).
 */
async function withBuildUmask<T>(fn: () => Promise<T>): Promise<T> {
  const before = process.umask(0o022);
  try {
    return await fn();
  } finally {
    process.umask(before);
  }
}

/**
 * Which kernel each image boots: Debian's source package and the fragments (under guest-image/, later ones win)
 * merged onto its tinyconfig. The guest kernel stays on Debian 12's own 6.1. The KVM lab's L1 takes 6.12 (from
 * bookworm-security): from 6.3 on tmpfs can be id-mapped, so virtiofsd beside the native VMM in the lab runs
 * in its user namespace as on a current host, not as root (src/vmm/vhost-user/virtiofsd.ts). Patches (under
 * guest-image/patches/) are applied to the unpacked source: the guest's one lets a kernel without PCI find the
 * legacy pmem range that maps the shared userland (src/vmm/qemu/userland-pmem.ts).
 */
const KERNELS: Record<'guest-image' | 'lab-image', { name: string; source: string; fragments: string[]; patches: string[] }> = {
  'guest-image': { name: 'kernel', source: 'linux-source-6.1', fragments: ['kernel.fragment'], patches: ['0001-x86-pmem-legacy-without-pci.patch'] },
  'lab-image': { name: 'lab-kernel', source: 'linux-source-6.12', fragments: ['kernel.fragment', 'kernel-lab.fragment'], patches: [] },
};

async function build(kind: 'guest-image' | 'lab-image', cacheDir: string, progress: Progress, force: boolean | undefined): Promise<ImageManifest> {
  const started = Date.now();
  const { name, source, fragments, patches } = KERNELS[kind];
  const frags = fragments.map((f) => path.join(projectRoot(), 'guest-image', f));
  const patchFiles = patches.map((f) => path.join(projectRoot(), 'guest-image', 'patches', f));
  const kernel = await buildKernel({ cacheDir, name, source, fragments: frags, patches: patchFiles, progress, force });
  const initrd = await buildInitrd({
    name: kind === 'lab-image' ? 'lab-initrd' : 'initrd',
    payload: kind === 'lab-image' ? await labPayload() : await guestPayload(),
    cacheDir,
    progress,
    force,
  });
  const kernelFiles = (await readVerifiedManifest<{ files: Record<string, ArtifactFile> }>(kernel.dir, 'stat'));
  const sizeOf = (name: string) => (kernelFiles.ok ? (kernelFiles.manifest.files[name]?.size ?? 0) : 0);
  const manifest: ImageManifest = {
    kind,
    kernel: kernel.vmlinux,
    bzImage: kernel.bzImage,
    initrd: initrd.initrd,
    kernelRelease: kernel.release,
    configHash: kernel.configHash,
    kernelBuildSeconds: kernel.buildSeconds,
    sizes: {
      vmlinux: sizeOf('vmlinux'),
      bzImage: sizeOf('bzImage'),
      initrd: initrd.sizeBytes,
      ...(initrd.split ? { bootInitrd: initrd.split.bootInitrdBytes, userlandImage: initrd.split.imageBytes } : {}),
    },
    ...(initrd.split ? { userland: { initrd: initrd.split.bootInitrd, image: initrd.split.image } } : {}),
    builtAt: new Date().toISOString(),
    totalSeconds: Math.round((Date.now() - started) / 100) / 10,
    ...(kind === 'guest-image' ? { agentSha256: await sha256File(agentBundlePath()) } : {}),
  };
  await writeImageManifest(manifest);
  return manifest;
}

/** Builds whatever is missing or stale (kernel, initrd) and returns the image; seconds when cached. */
export function ensureGuestImage(opts: { force?: boolean; progress?: Progress } = {}): Promise<ImageManifest> {
  return ensure('guest-image', opts);
}

/** The KVM lab's L1 image: a 6.12 kernel with the guest's options plus KVM_AMD and 9p, and a tiny initrd that chroots into the host. */
export function ensureLabImage(opts: { force?: boolean; progress?: Progress } = {}): Promise<ImageManifest> {
  return ensure('lab-image', opts);
}

/**
 * The last built image, checked cheaply (sizes and mtimes) so starting a VM does not re-hash 150 MB.
 * Throws a clear error when nothing was built yet.
 */
export async function loadGuestImage(kind: 'guest-image' | 'lab-image' = 'guest-image'): Promise<ImageManifest> {
  const p = manifestPath(kind);
  if (!existsSync(p)) {
    throw new VrunError(`the ${kind} is not built yet (${p} missing)`, { hint: 'run "npm run guest-image" (or the README setup command)' });
  }
  const m = JSON.parse(await readFile(p, 'utf8')) as ImageManifest;
  for (const f of [m.kernel, m.initrd]) {
    const dir = path.dirname(f);
    const check = await readVerifiedManifest<{ files: Record<string, ArtifactFile> }>(dir, 'stat');
    if (!check.ok) throw new VrunError(`the ${kind} artifact ${f} is not usable (${check.reason})`, { hint: 'run "npm run guest-image" to rebuild it' });
    // A cache built before the VMM was jailed may be private to root; a chmod keeps size and mtime.
    if (((await stat(f)).mode & 0o004) === 0 && process.getuid?.() === 0) await makeBootable(dir, Object.keys(check.manifest.files));
  }
  if (kind === 'guest-image' && existsSync(agentBundlePath()) && m.agentSha256 !== (await sha256File(agentBundlePath()))) {
    // The initrd carries another build of the agent (vrun was upgraded, or another checkout built the image
    // last), and the agent refuses requests it does not know. Only the initrd depends on the agent, and
    // it is rebuilt in seconds; the kernel stays cached.
    if (process.getuid?.() !== 0) {
      throw new VrunError(`the guest image carries a different agent build than this vrun (${agentBundlePath()})`, {
        hint: 'run "npm run guest-image" as root to rebuild it',
      });
    }
    const cacheDir = path.dirname(p);
    if (!(await access(cacheDir, constants.W_OK).then(() => true, () => false))) {
      throw new VrunError(`the guest image carries a different agent build than this vrun (${agentBundlePath()}), and its cache ${cacheDir} is not writable here`, {
        hint: 'rebuild it where the cache is writable ("npm run guest-image")',
      });
    }
    return ensure(kind, { progress: createProgress({ bytes: false }) });
  }
  return m;
}
