import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VrunError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import { digestHex, newHasher, sha256, type Digest } from './digest.js';
import type { ImageStore } from './image-store.js';
import type { ImageRecord } from './image-records.js';
import { withLock } from './lock.js';
import { hasBlob, putBlobBytes, readBlob } from './blob-store.js';
import { hasLayer, installLayerFromStream } from './layer-cache.js';
import { Limits, documentKind, parseImageConfig, parseIndex, parseJsonDocument, parseManifest, selectPlatform, type Descriptor } from './oci-types.js';
import { formatReference, parseReference, repositoryName } from './reference.js';
import { RegistryClient, readLimited, type RegistryOptions } from './registry-client.js';
import { blobPath, lockFile } from './store-layout.js';
import { syncDir } from './atomic-fs.js';

/**
 * `vrun pull`: fetches an image over the distribution API into the store. Every document and blob is hashed
 * and compared with the digest it was asked for before it is stored; layers download in parallel into
 * partial/<digest>, so a killed pull resumes with a range request, and a per-blob lock makes two concurrent
 * pulls of one image share each download instead of racing.
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
    if (!hasBlob(l, manifest.config.digest)) {
      const res = await client.openBlob(repo, manifest.config.digest);
      const bytes = await readLimited(res.body, Limits.configBytes, `${name} config`);
      putBlobBytes(l, bytes, manifest.config.digest, `${name} config`);
    }
    const total = manifest.layers.reduce((a, x) => a + x.size, 0);
    const progress = opts.progress;
    let done = 0;
    progress?.step(`Pulling ${name} (${manifest.layers.length} layers)`, total);
    const tick = (n: number) => {
      done += n;
      progress?.update(done);
    };
    const config = parseImageConfig(parseJsonDocument(readBlob(l, manifest.config.digest, Limits.configBytes, `${name} config`), `${name} config`, Limits.configBytes), `${name} config`);
    const diffIds = new Map(manifest.layers.map((x, i) => [x.digest, config.rootfs.diff_ids[i]]));
    const queue = [...new Map(manifest.layers.map((x) => [x.digest, x])).values()];
    const workers = Array.from({ length: Math.max(1, Math.min(opts.parallel ?? 3, queue.length)) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await downloadBlob(store, client, repo, next, diffIds.get(next.digest), tick, name);
    });
    await Promise.all(workers);
    progress?.done('downloaded');
    progress?.step(`Unpacking ${name}`, total);
    let unpacked = 0;
    const rec = await store.commit(manifestBytes, {
      names: ref.tag !== undefined ? [name] : [],
      repoDigests: [`${repositoryName(ref)}@${topDigest}`],
      what: name,
      onLayerBytes: (n) => {
        unpacked += n;
        progress?.update(unpacked);
      },
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
  diffId: Digest | undefined,
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
    let fresh = have === 0;
    if (have < desc.size) {
      const res = await client.openBlob(repo, desc.digest, have);
      if (res.status === 200 && have > 0) {
        fresh = true; // the registry ignored the range: start over
      }
      if (fresh) have = 0;
      const h = fresh ? newHasher() : hasher;
      tick(have);
      const fd = fs.openSync(partial, fresh ? 'w' : 'a', 0o600);
      let got = have;
      // A fresh download is unpacked while it arrives (a resumed one is unpacked from the file afterwards).
      const along = fresh && diffId !== undefined && !hasLayer(l, diffId) ? new PassThrough({ highWaterMark: 1 << 20 }) : undefined;
      let unpackError: unknown;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const unpacked =
        along && diffId !== undefined
          ? installLayerFromStream(l, diffId, desc.digest, along, { what: `${name} layer ${desc.digest.slice(0, 19)}` }).then(
              () => undefined,
              (err: unknown) => {
                unpackError = err;
              },
            )
          : undefined;
      try {
        await pipeline(
          res.body,
          new Writable({
            write(chunk: Buffer, _enc, cb) {
              got += chunk.length;
              if (got > desc.size) {
                cb(new VrunError(`${name}: blob ${desc.digest} is larger than its declared ${desc.size} bytes (refused)`));
                return;
              }
              h.update(chunk);
              let off = 0;
              try {
                while (off < chunk.length) off += fs.writeSync(fd, chunk, off);
              } catch (err) {
                cb(err as Error);
                return;
              }
              tick(chunk.length);
              // Network chunks are small; hand the unpacker megabyte batches so gunzip (which works on the thread
              // pool) makes a few round trips instead of thousands.
              if (!along || along.destroyed) {
                cb();
                return;
              }
              batch.push(chunk);
              batchBytes += chunk.length;
              if (batchBytes < 1 << 20) {
                cb();
                return;
              }
              const out = Buffer.concat(batch, batchBytes);
              batch = [];
              batchBytes = 0;
              if (!along.write(out)) {
                const go = () => {
                  along.off('drain', go);
                  along.off('close', go);
                  cb();
                };
                along.on('drain', go);
                along.on('close', go);
                return;
              }
              cb();
            },
            final(cb) {
              if (along && !along.destroyed) along.end(batchBytes > 0 ? Buffer.concat(batch, batchBytes) : undefined);
              cb();
            },
          }),
        );
        fs.fsyncSync(fd);
      } catch (err) {
        along?.destroy(err instanceof Error ? err : new Error(String(err)));
        await unpacked;
        throw err;
      } finally {
        fs.closeSync(fd);
      }
      await unpacked;
      verify(partial, `sha256:${h.digest('hex')}`, got);
      if (unpackError !== undefined) throw unpackError;
      storeVerified(partial);
    } else {
      tick(have);
      verify(partial, `sha256:${hasher.digest('hex')}`, have);
      storeVerified(partial);
    }
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
