import { VrunError } from '../common/errors.js';
import { parseDigest, type Digest } from './digest.js';

/**
 * Image references, normalised the way Docker does: `busybox` is `docker.io/library/busybox:latest`,
 * `localhost:5000/x` keeps its registry, and `name@sha256:...` pins a digest. The grammar follows the
 * distribution reference spec, so names the registries would refuse are refused here with a clear error.
 */
export interface ImageReference {
  /** Registry host[:port], e.g. "docker.io", "localhost:5000". */
  domain: string;
  /** Repository path within the registry, e.g. "library/busybox". */
  path: string;
  tag: string | undefined;
  digest: Digest | undefined;
}

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DOMAIN = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';
const MAX_NAME_LENGTH = 255;

const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DOMAIN_RE = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$/;

export function parseReference(input: string): ImageReference {
  const raw = input.trim();
  if (raw === '') throw new VrunError('invalid image reference: empty');
  if (raw.length > 4096) throw new VrunError('invalid image reference: too long');

  let rest = raw;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = parseDigest(rest.slice(at + 1), `invalid image reference "${raw}"`);
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new VrunError(`invalid image reference "${raw}": invalid tag "${tag}" (letters, digits, _ . - and at most 128 characters)`);
  }
  if (rest === '') throw new VrunError(`invalid image reference "${raw}": no repository name`);

  let domain = DEFAULT_DOMAIN;
  let repo = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      repo = rest.slice(slash + 1);
      if (!DOMAIN_RE.test(domain)) throw new VrunError(`invalid image reference "${raw}": invalid registry "${domain}"`);
      const port = /:(\d+)$/.exec(domain)?.[1];
      if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
        throw new VrunError(`invalid image reference "${raw}": invalid port in registry "${domain}"`);
      }
    }
  }
  if (domain === LEGACY_DOMAIN) domain = DEFAULT_DOMAIN;
  if (repo !== repo.toLowerCase()) throw new VrunError(`invalid image reference "${raw}": repository name must be lowercase`);
  for (const component of repo.split('/')) {
    if (!COMPONENT_RE.test(component)) {
      throw new VrunError(`invalid image reference "${raw}": invalid repository name component "${component}" (lowercase letters, digits and separators . _ __ -)`);
    }
  }
  if (domain === DEFAULT_DOMAIN && !repo.includes('/')) repo = OFFICIAL_PREFIX + repo;
  const name = `${domain}/${repo}`;
  if (name.length > MAX_NAME_LENGTH) throw new VrunError(`invalid image reference "${raw}": repository name longer than ${MAX_NAME_LENGTH} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { domain, path: repo, tag, digest };
}

/** "docker.io/library/busybox" */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalised form: "docker.io/library/busybox:latest", "r/x@sha256:..", "r/x:t@sha256:..". */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** How people write it: "busybox:latest", "localhost:5000/x:1". */
export function familiarName(ref: ImageReference): string {
  let repo = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) repo = ref.path.startsWith(OFFICIAL_PREFIX) ? ref.path.slice(OFFICIAL_PREFIX.length) : ref.path;
  return repo;
}

/** True for input that cannot be a reference but looks like an image id or a digest prefix ("3f2a1b", "sha256:3f2a"). */
export function looksLikeImageId(input: string): boolean {
  return /^(sha256:)?[a-f0-9]{4,64}$/.test(input);
}
