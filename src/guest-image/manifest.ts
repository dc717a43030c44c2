import { chmod, stat, readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from './hash.js';

/** What the manifest records about one output file, so a corrupt or swapped artifact is never used. */
export interface ArtifactFile {
  size: number;
  sha256: string;
  mtimeMs: number;
}

export async function recordFiles(dir: string, names: string[]): Promise<Record<string, ArtifactFile>> {
  const out: Record<string, ArtifactFile> = {};
  for (const n of names) {
    const p = path.join(dir, n);
    const st = await stat(p);
    out[n] = { size: st.size, sha256: await sha256File(p), mtimeMs: Math.trunc(st.mtimeMs) };
  }
  return out;
}

export async function writeManifest(dir: string, manifest: { files: Record<string, ArtifactFile> }): Promise<void> {
  const tmp = path.join(dir, `.manifest.json.${process.pid}`);
  await writeFile(tmp, JSON.stringify(manifest, null, 2) + '\n', { mode: 0o644 });
  await rename(tmp, path.join(dir, 'manifest.json'));
  await makeBootable(dir, Object.keys(manifest.files));
}

/**
 * The boot files are opened by the jailed VMM, under a uid of its own: readable by all, whatever umask the
 * builder ran with (a sandbox process that rebuilt the initrd on use runs with 077). They hold nothing secret.
 */
export async function makeBootable(dir: string, names: string[]): Promise<void> {
  await chmod(dir, 0o755);
  for (const n of names) await chmod(path.join(dir, n), 0o644);
}

export type ManifestCheck<T> = { ok: true; manifest: T } | { ok: false; reason: string };

/**
 * Reads dir/manifest.json and checks every recorded file. 'full' re-hashes the contents (used when
 * building, so corruption is caught); 'stat' compares size and mtime only (cheap enough for every VM start).
 */
export async function readVerifiedManifest<T extends { files: Record<string, ArtifactFile> }>(
  dir: string,
  mode: 'full' | 'stat',
): Promise<ManifestCheck<T>> {
  let manifest: T;
  try {
    manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'missing' : 'manifest unreadable' };
  }
  if (typeof manifest !== 'object' || manifest === null || typeof manifest.files !== 'object') {
    return { ok: false, reason: 'manifest malformed' };
  }
  for (const [name, want] of Object.entries(manifest.files)) {
    const p = path.join(dir, name);
    let st;
    try {
      st = await stat(p);
    } catch {
      return { ok: false, reason: `${name} missing` };
    }
    if (st.size !== want.size) return { ok: false, reason: `${name} size ${st.size} != ${want.size}` };
    if (mode === 'stat') {
      if (Math.trunc(st.mtimeMs) !== want.mtimeMs) return { ok: false, reason: `${name} modified since build` };
    } else if ((await sha256File(p)) !== want.sha256) {
      return { ok: false, reason: `${name} hash mismatch (corrupt)` };
    }
  }
  return { ok: true, manifest };
}
