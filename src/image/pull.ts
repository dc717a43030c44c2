import fs from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { digestHex, newHasher, sha256 } from './digest.js';
import type { ImageStore } from './image-store.js';
import type { ImageRecord } from './image-records.js';
import { withLock } from './lock.js';
import { hasBlob, putBlobBytes } from './blob-store.js';
import { Limits, documentKind, parseIndex, parseJsonDocument, parseManifest, selectPlatform, type Descriptor } from './oci-types.js';
import { formatReference, parseReference, repositoryName } from './reference.js';
import { RegistryClient, readLimited, type RegistryOptions } from './registry-client.js';
import { blobPath, lockFile } from './store-layout.js';
import { syncDir } from './atomic-fs.js';

/**
 * `vrun pull`: fetches an image over the distribution API into the store. Every document and blob is hashed
 * and compared with the digest it was asked for before it is stored; layers download in parallel into
 * partial/<digest>, so a killed pull resumes with a range request, and a per-blob lock makes two concurrent
 * pulls of one image share each download instead of racing. Layers are not unpacked here: the first
 * `prepareRootfs` of the image unpacks them (and checks their diff ids), as `ctr content fetch` or `skopeo copy`
 * leave an image as verified blobs.
 */
export interface PullOptions extends RegistryOptions {
  progress?: Progress;
  /** Parallel layer downloads (default 3). */
  parallel?: number;
}

export async function pullImage(store: ImageStore, input: string, opts: PullOptions = {}): Promise<ImageRecord> {
  const ref = parseReference(input);
  const client = new RegistryClient(ref.domain, opts);
  const repo = ref.path;
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const name = formatReference(ref);

  const top = await client.getManifest(repo, reference);
  const topDigest = sha256(top.bytes);
  if (ref.digest && topDigest !== ref.digest) throw new VrunError(`${name}: the registry returned a manifest with digest ${topDigest} (refused: the reference asks for ${ref.digest})`);
  if (top.digestHeader && top.digestHeader.startsWith('sha256:') && top.digestHeader !== topDigest) {
    throw new VrunError(`${name}: the registry says the manifest is ${top.digestHeader} but its content has digest ${topDigest} (refused)`);
  }
  let manifestBytes = top.bytes;
  const doc = parseJsonDocument(top.bytes, `${name} manifest`, Limits.manifestBytes);
  if (documentKind(doc, top.contentType, `${name} manifest`) === 'index') {
    const pick = selectPlatform(parseIndex(doc, `${name} index`), name);
    const m = await client.getManifest(repo, pick.digest);
    const d = sha256(m.bytes);
    if (d !== pick.digest) throw new VrunError(`${name}: platform manifest ${pick.digest} has content with digest ${d} (refused)`);
    manifestBytes = m.bytes;
  }
  const manifest = parseManifest(parseJsonDocument(manifestBytes, `${name} manifest`, Limits.manifestBytes), `${name} manifest`);

  return store.withWriteAccess(async () => {
    const l = store.layout;
    // The config comes alongside the layers: one round trip less before the first layer byte.
    const configStored = (async () => {
      if (hasBlob(l, manifest.config.digest)) return;
      const res = await client.openBlob(repo, manifest.config.digest);
      const bytes = await readLimited(res.body, Limits.configBytes, `${name} config`);
      putBlobBytes(l, bytes, manifest.config.digest, `${name} config`);
    })();
    const total = manifest.layers.reduce((a, x) => a + x.size, 0);
    const progress = opts.progress;
    let done = 0;
    progress?.step(`Pulling ${name} (${manifest.layers.length} layers)`, total);
    const tick = (n: number) => {
      done += n;
      progress?.update(done);
    };
    const queue = [...new Map(manifest.layers.map((x) => [x.digest, x])).values()];
    const workers = Array.from({ length: Math.max(1, Math.min(opts.parallel ?? 3, queue.length)) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        // One failure fails the pull: the other workers finish the blob in hand and take no more.
        await downloadBlob(store, client, repo, next, tick, name).catch((err: unknown) => {
          queue.length = 0;
          throw err;
        });
      }
    });
    // Every download settles before the pull ends: none may write into the store after the write lock is gone.
    const failure = (await Promise.allSettled([configStored, ...workers])).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    // Layers are unpacked, and their diff ids checked, on first use (prepareRootfs), as `ctr content fetch`
    // leaves them: a pull is the download and its verification.
    const rec = await store.commit(manifestBytes, {
      names: ref.tag !== undefined ? [name] : [],
      repoDigests: [`${repositoryName(ref)}@${topDigest}`],
      what: name,
      unpack: false,
    });
    progress?.done(`${digestHex(rec.config).slice(0, 12)}`);
    return rec;
  });
}

/** Downloads one blob to partial/<hex>, resuming what an earlier pull left, then verifies and stores it. */
async function downloadBlob(
  store: ImageStore,
  client: RegistryClient,
  repo: string,
  desc: Descriptor,
  tick: (n: number) => void,
  name: string,
): Promise<void> {
  const l = store.layout;
  if (hasBlob(l, desc.digest)) {
    tick(desc.size);
    return;
  }
  await withLock(lockFile(l, `blob-${digestHex(desc.digest).slice(0, 16)}`), async () => {
    if (hasBlob(l, desc.digest)) {
      tick(desc.size);
      return;
    }
    fs.mkdirSync(l.partial, { recursive: true });
    const partial = path.join(l.partial, digestHex(desc.digest));
    const hasher = newHasher();
    let have = 0;
    try {
      const st = fs.statSync(partial);
      if (st.size <= desc.size) {
        // Rehash what is already here: only the final digest check decides whether it was right.
        for await (const c of fs.createReadStream(partial, { highWaterMark: 1 << 20 })) hasher.update(c as Buffer);
        have = st.size;
      }
    } catch {
      // nothing to resume
    }
    if (have < desc.size) {
      let fd: number | undefined;
      let got = have;
      let h = hasher;
      try {
        // The sink runs synchronously on each chunk as it is read (the reader reuses its buffer).
        await client.readBlob(repo, desc.digest, have, (chunk) => {
          if (fd === undefined) throw new VrunError(`${name}: blob ${desc.digest}: data before the response was checked`);
          got += chunk.length;
          if (got > desc.size) throw new VrunError(`${name}: blob ${desc.digest} is larger than its declared ${desc.size} bytes (refused)`);
          h.update(chunk);
          let off = 0;
          while (off < chunk.length) off += fs.writeSync(fd, chunk, off);
          tick(chunk.length);
        }, (status) => {
          // A registry that ignores the range sends the whole blob: start over.
          const fresh = have === 0 || status === 200;
          if (fresh) {
            have = 0;
            got = 0;
            h = newHasher();
          }
          tick(have);
          fd = fs.openSync(partial, fresh ? 'w' : 'a', 0o600);
        });
        if (fd !== undefined) fs.fsyncSync(fd);
      } finally {
        if (fd !== undefined) fs.closeSync(fd);
      }
      verify(partial, `sha256:${h.digest('hex')}`, got);
    } else {
      tick(have);
      verify(partial, `sha256:${hasher.digest('hex')}`, have);
    }
    storeVerified(partial);
  });

  function verify(partial: string, actual: string, size: number): void {
    if (actual !== desc.digest || size !== desc.size) {
      fs.rmSync(partial, { force: true });
      throw new VrunError(`${name}: blob ${desc.digest} downloaded with digest ${actual} and ${size} bytes (expected ${desc.size}): refused, nothing stored`);
    }
  }

  function storeVerified(partial: string): void {
    fs.mkdirSync(l.blobs, { recursive: true });
    fs.renameSync(partial, blobPath(l, desc.digest));
    syncDir(path.dirname(blobPath(l, desc.digest)));
  }
}

