import { createHash, type Hash } from 'node:crypto';
import { VrunError } from '../common/errors.js';

/** A content digest, always `sha256:<64 lowercase hex>`: the only algorithm the store accepts. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Validates a digest from untrusted input (a manifest, an archive, the command line). */
export function parseDigest(value: unknown, what: string): Digest {
  if (typeof value !== 'string') throw new VrunError(`${what}: digest missing or not a string`);
  if (DIGEST_RE.test(value)) return value as Digest;
  const algo = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):/.exec(value)?.[1];
  if (algo && algo !== 'sha256') throw new VrunError(`${what}: unsupported digest algorithm "${algo}" (only sha256 is supported)`);
  throw new VrunError(`${what}: invalid digest "${value.slice(0, 100)}" (expected sha256:<64 hex digits>)`);
}

export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function newHasher(): Hash {
  return createHash('sha256');
}

export function hasherDigest(h: Hash): Digest {
  return `sha256:${h.digest('hex')}`;
}

export function shortId(d: Digest): string {
  return digestHex(d).slice(0, 12);
}
