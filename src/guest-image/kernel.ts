import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { KERNEL_BUILD_TOOLS, kernelSourceTool, requireTools } from './host-tools.js';
import { sha256Text } from './hash.js';
import { capture, runLogged } from './run-logged.js';
import { type ArtifactFile, readVerifiedManifest, recordFiles, writeManifest } from './manifest.js';

/** Bumped when the way we build changes, so caches keyed by inputs are invalidated. */
const KERNEL_RECIPE = 'kernel-v1';

export interface KernelArtifact {
  dir: string;
  vmlinux: string;
  bzImage: string;
  config: string;
  release: string;
  configHash: string;
  buildSeconds: number;
  cached: boolean;
}

interface KernelPatch {
  file: string;
  text: string;
}

interface KernelManifest {
  kind: 'kernel';
  key: string;
  release: string;
  configHash: string;
  sourcePackage: string;
  sourcePackageVersion: string;
  fragments: string[];
  patches: string[];
  buildSeconds: number;
  builtAt: string;
  files: Record<string, ArtifactFile>;
}

/** Parses a fragment into (symbol -> wanted value), where 'n' means "is not set". */
export function parseFragment(text: string, origin: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(CONFIG_[A-Z0-9_]+)=(y|n|m|"[^"]*"|-?\d+|0x[0-9a-fA-F]+)$/.exec(line);
    if (!m) throw new VrunError(`${origin}:${i + 1}: not a kernel config line: "${line}"`);
    if (m[2] === 'm') throw new VrunError(`${origin}:${i + 1}: ${m[1]}=m: the guest kernel has no modules, use =y`);
    out.set(m[1] as string, m[2] as string);
  });
  return out;
}

function toConfigLines(wanted: Map<string, string>): string {
  return [...wanted].map(([k, v]) => (v === 'n' ? `# ${k} is not set` : `${k}=${v}`)).join('\n') + '\n';
}

/** Options that olddefconfig dropped or changed: their dependencies are not met. */
export function checkConfig(config: string, wanted: Map<string, string>): string[] {
  const have = new Map<string, string>();
  for (const line of config.split('\n')) {
    const set = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (set) have.set(set[1] as string, set[2] as string);
  }
  const bad: string[] = [];
  for (const [k, v] of wanted) {
    const got = have.get(k);
    if (v === 'n' ? got !== undefined && got !== 'n' : got !== v) bad.push(`${k}=${v} (got ${got ?? 'not set'})`);
  }
  return bad;
}

async function sourcePackageVersion(source: string): Promise<string> {
  try {
    return (await capture('dpkg-query', ['-W', '-f=${Version}', source])).trim();
  } catch {
    throw new VrunError(`${source} is not installed: apt-get install ${source}`);
  }
}

/**
 * Unpacks Debian's kernel tarball (/usr/src/SOURCE.tar.xz, whose top directory is SOURCE) once per package,
 * version and set of patches (into a temp dir, patched there, then renamed).
 */
async function ensureSource(cacheDir: string, source: string, version: string, patches: KernelPatch[], progress: Progress, logFile: string): Promise<string> {
  const patched = patches.length > 0 ? `+p${sha256Text(...patches.map((p) => p.text)).slice(0, 12)}` : '';
  const dir = path.join(cacheDir, 'src', `${source}_${version}${patched}`);
  if (existsSync(path.join(dir, '.vrun-extracted'))) return dir;
  progress.step(`guest-image: unpacking ${source}${patches.length > 0 ? ` and applying ${patches.length} patch(es)` : ''}`);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await runLogged('tar', ['-xf', kernelSourceTool(source).path, '-C', tmp], { logFile });
  for (const p of patches) {
    try {
      await runLogged('patch', ['-p1', '--batch', '--forward', '-i', p.file], { cwd: path.join(tmp, source), logFile });
    } catch (err) {
      throw new VrunError(`kernel patch ${path.basename(p.file)} does not apply to ${source} ${version}: ${errorMessage(err)}`);
    }
  }
  await writeFile(path.join(tmp, source, '.vrun-extracted'), `${version}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(path.join(tmp, source), dir);
  await rm(tmp, { recursive: true, force: true });
  progress.done();
  return dir;
}

/**
 * Builds (or reuses) a kernel from tinyconfig of Debian's `source` package plus the given fragments. The cache
 * key covers the source package's version (which carries the upstream version: 6.1.x, 6.12.x), the fragments'
 * text and the recipe; a cached kernel is used only if every recorded file hash still matches.
 */
export async function buildKernel(opts: {
  cacheDir: string;
  name: string;
  /** Debian's kernel source package, e.g. linux-source-6.1. */
  source: string;
  fragments: string[];
  /** Patches (-p1) applied to the unpacked source, in this order. */
  patches?: string[];
  progress: Progress;
  force?: boolean;
}): Promise<KernelArtifact> {
  requireTools([kernelSourceTool(opts.source), ...KERNEL_BUILD_TOOLS, { what: 'dpkg-query', path: 'dpkg-query', debianPackage: 'dpkg' }]);
  const version = await sourcePackageVersion(opts.source);
  const fragTexts = await Promise.all(opts.fragments.map((f) => readFile(f, 'utf8')));
  const wanted = new Map<string, string>();
  fragTexts.forEach((t, i) => parseFragment(t, opts.fragments[i] as string).forEach((v, k) => wanted.set(k, v)));
  const patches = await Promise.all((opts.patches ?? []).map(async (file) => ({ file, text: await readFile(file, 'utf8') })));
  const configHash = sha256Text(...fragTexts).slice(0, 16);
  // Without patches the key is what it was before patches existed, so those cached kernels stay valid.
  const key = sha256Text(KERNEL_RECIPE, version, ...fragTexts, ...patches.map((p) => p.text)).slice(0, 16);
  const outDir = path.join(opts.cacheDir, `${opts.name}-${key}`);

  if (!opts.force) {
    const m = await readVerifiedManifest<KernelManifest>(outDir, 'full');
    if (m.ok) return artifact(outDir, m.manifest, true);
    if (m.reason !== 'missing') {
      opts.progress.step(`guest-image: cached ${opts.name} rejected (${m.reason}), rebuilding`);
      opts.progress.done('stale');
    }
  }

  await mkdir(opts.cacheDir, { recursive: true });
  const logFile = path.join(opts.cacheDir, `${opts.name}-${key}.build.log`);
  await writeFile(logFile, '');
  const src = await ensureSource(opts.cacheDir, opts.source, version, patches, opts.progress, logFile);
  // Per source tree too: a tree configured and built from another kernel version (or patch set) is of no use here.
  const build = path.join(opts.cacheDir, 'build', `${opts.name}-${path.basename(src)}-${configHash}`);
  await mkdir(build, { recursive: true });
  const started = Date.now();

  opts.progress.step(`guest-image: configuring ${opts.name} (${opts.source} tinyconfig + ${opts.fragments.map((f) => path.basename(f)).join(' + ')})`);
  await runLogged('make', [`O=${build}`, 'tinyconfig'], { cwd: src, logFile });
  const base = await readFile(path.join(build, '.config'), 'utf8');
  await writeFile(path.join(build, '.config'), base + toConfigLines(wanted));
  await runLogged('make', [`O=${build}`, 'olddefconfig'], { cwd: src, logFile });
  const config = await readFile(path.join(build, '.config'), 'utf8');
  const dropped = checkConfig(config, wanted);
  if (dropped.length > 0) {
    throw new VrunError(`kernel config for ${opts.name}: these options did not survive olddefconfig (unmet dependencies):\n  ${dropped.join('\n  ')}`);
  }
  opts.progress.done();

  // Rough line count of a full tinyconfig-based build, for a percentage that means something.
  opts.progress.step(`guest-image: compiling ${opts.name} (make -j${os.availableParallelism()})`, 1700);
  const compile = () =>
    runLogged('make', [`O=${build}`, `-j${os.availableParallelism()}`, 'vmlinux', 'bzImage'], {
      cwd: src,
      logFile,
      onLine: (n) => opts.progress.update(n),
    });
  try {
    await compile();
  } catch (err) {
    // A build tree left by a killed or overlapping build can hold half-written objects that make trusts
    // (seen: "multiple definition" at link time). One clean rebuild settles it; a second failure is real.
    opts.progress.step(`guest-image: ${opts.name} build failed in a reused tree (${errorMessage(err)}); cleaning it and building once more`, 1700);
    await runLogged('make', [`O=${build}`, 'clean'], { cwd: src, logFile });
    await compile();
  }
  opts.progress.done();
  const release = (await capture('make', ['-s', `O=${build}`, 'kernelrelease'], src)).trim();

  const tmpOut = `${outDir}.tmp-${process.pid}`;
  await rm(tmpOut, { recursive: true, force: true });
  await mkdir(tmpOut, { recursive: true });
  await copyFile(path.join(build, 'vmlinux'), path.join(tmpOut, 'vmlinux'));
  await copyFile(path.join(build, 'arch/x86/boot/bzImage'), path.join(tmpOut, 'bzImage'));
  await copyFile(path.join(build, '.config'), path.join(tmpOut, 'config'));
  const manifest: KernelManifest = {
    kind: 'kernel',
    key,
    release,
    configHash,
    sourcePackage: opts.source,
    sourcePackageVersion: version,
    fragments: opts.fragments.map((f) => path.basename(f)),
    patches: patches.map((p) => path.basename(p.file)),
    buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    builtAt: new Date().toISOString(),
    files: await recordFiles(tmpOut, ['vmlinux', 'bzImage', 'config']),
  };
  await writeManifest(tmpOut, manifest);
  await rm(outDir, { recursive: true, force: true });
  await rename(tmpOut, outDir);
  return artifact(outDir, manifest, false);
}

function artifact(dir: string, m: KernelManifest, cached: boolean): KernelArtifact {
  return {
    dir,
    vmlinux: path.join(dir, 'vmlinux'),
    bzImage: path.join(dir, 'bzImage'),
    config: path.join(dir, 'config'),
    release: m.release,
    configHash: m.configHash,
    buildSeconds: m.buildSeconds,
    cached,
  };
}
