import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger } from '../common/log.js';
import type { Digest } from './digest.js';
import { MediaType } from './oci-types.js';
import { DEFAULT_DOMAIN } from './reference.js';
import { findCredentials, parseChallenge, type Credentials } from './registry-auth.js';

/**
 * A client for the OCI distribution API (the `/v2/` HTTP API every registry speaks): manifests and blobs,
 * with bearer-token and basic auth. TLS always, except for loopback registries and the ones the user marks
 * insecure (--insecure or VRUN_INSECURE_REGISTRIES=host[:port],...).
 */
export interface RegistryOptions {
  insecure?: boolean;
  credentials?: Credentials;
}

const MANIFEST_ACCEPT = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList].join(', ');

export function isInsecureRegistry(domain: string, explicit = false): boolean {
  if (explicit) return true;
  const host = domain.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)) return true;
  const list = (process.env.VRUN_INSECURE_REGISTRIES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return list.includes(domain) || list.includes(host);
}

export class RegistryClient {
  readonly base: string;
  private readonly creds: Credentials | undefined;
  private readonly tokens = new Map<string, string>();
  private basic = false;

  constructor(
    readonly domain: string,
    opts: RegistryOptions = {},
  ) {
    const host = domain === DEFAULT_DOMAIN ? 'registry-1.docker.io' : domain;
    this.base = `${isInsecureRegistry(domain, opts.insecure) ? 'http' : 'https'}://${host}`;
    this.creds = opts.credentials ?? findCredentials(domain);
  }

  /** GET with auth: on a 401 it answers the challenge once (token or basic) and retries. */
  async get(repo: string, pathPart: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    const url = `${this.base}/v2/${repo}/${pathPart}`;
    const scope = `repository:${repo}:pull`;
    let res = await this.fetch(url, { ...headers, ...this.authHeader(scope) }, signal);
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      await res.body?.cancel();
      await this.answer(challenge, scope, url);
      res = await this.fetch(url, { ...headers, ...this.authHeader(scope) }, signal);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw new VrunError(`${this.domain}/${repo}: access denied (HTTP ${res.status})`, {
        hint: this.creds ? 'check the credentials in your docker config.json' : 'log in: add credentials to ~/.docker/config.json',
      });
    }
    return res;
  }

  async getManifest(repo: string, reference: string): Promise<{ bytes: Buffer; contentType: string; digestHeader: string | undefined }> {
    const res = await this.get(repo, `manifests/${reference}`, { accept: MANIFEST_ACCEPT });
    if (res.status === 404) {
      await res.body?.cancel();
      throw new VrunError(`${this.domain}/${repo}:${reference}: manifest unknown (not found in the registry)`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new VrunError(`${this.domain}/${repo}: fetching manifest ${reference} failed with HTTP ${res.status}`);
    }
    const bytes = await readLimited(res, 4 << 20, `manifest ${reference}`);
    return { bytes, contentType: res.headers.get('content-type') ?? '', digestHeader: res.headers.get('docker-content-digest') ?? undefined };
  }

  /** A blob, from byte `offset` on when the registry honours ranges (status 206), else whole (200). */
  async getBlob(repo: string, digest: Digest, offset = 0, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await this.get(repo, `blobs/${digest}`, headers, signal);
    if (res.status === 416 && offset > 0) {
      await res.body?.cancel();
      return this.getBlob(repo, digest, 0, signal);
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw new VrunError(`${this.domain}/${repo}: fetching blob ${digest} failed with HTTP ${res.status}`);
    }
    return res;
  }

  /**
   * A blob as a Node stream over node:http(s): several times faster than fetch's web streams for large layers.
   * Answers an auth challenge once, follows redirects (to blob storage) without forwarding credentials to
   * another origin, and resumes from `offset` when the server honours the range (status 206).
   */
  async openBlob(repo: string, digest: Digest, offset = 0): Promise<{ status: number; body: IncomingMessage }> {
    const scope = `repository:${repo}:pull`;
    let url = new URL(`${this.base}/v2/${repo}/blobs/${digest}`);
    const origin = url.origin;
    let answered = false;
    for (let hop = 0; hop < 6; hop++) {
      const headers: Record<string, string> = { ...(url.origin === origin ? this.authHeader(scope) : {}), 'user-agent': 'vrun' };
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await httpGet(url, headers, this.domain);
      const status = res.statusCode ?? 0;
      if (status === 401 && !answered && url.origin === origin) {
        answered = true;
        const challenge = String(res.headers['www-authenticate'] ?? '');
        res.resume();
        await this.answer(challenge, scope, url.toString());
        continue;
      }
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        url = new URL(res.headers.location, url);
        if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.base.startsWith('http:'))) {
          throw new VrunError(`${this.domain}: blob ${digest} redirects to plain HTTP (${url.origin}): refused`);
        }
        continue;
      }
      if (status === 416 && offset > 0) {
        res.resume();
        offset = 0;
        continue;
      }
      if (status === 200 || status === 206) return { status, body: res };
      res.resume();
      if (status === 401 || status === 403) throw new VrunError(`${this.domain}/${repo}: access denied to blob ${digest} (HTTP ${status})`);
      throw new VrunError(`${this.domain}/${repo}: fetching blob ${digest} failed with HTTP ${status}`);
    }
    throw new VrunError(`${this.domain}/${repo}: too many redirects fetching blob ${digest}`);
  }

  private authHeader(scope: string): Record<string, string> {
    const token = this.tokens.get(scope);
    if (token) return { authorization: `Bearer ${token}` };
    if (this.basic && this.creds) return { authorization: `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`).toString('base64')}` };
    return {};
  }

  private async answer(header: string, scope: string, url: string): Promise<void> {
    const { scheme, params } = parseChallenge(header);
    if (scheme === 'basic') {
      if (!this.creds) throw new VrunError(`${this.domain} requires a login`, { hint: 'add credentials for it to ~/.docker/config.json' });
      this.basic = true;
      return;
    }
    if (scheme !== 'bearer' || !params.realm) throw new VrunError(`${this.domain}: unsupported authentication challenge "${header.slice(0, 100)}" for ${url}`);
    let realm: URL;
    try {
      realm = new URL(params.realm);
    } catch {
      throw new VrunError(`${this.domain}: invalid token realm "${params.realm.slice(0, 100)}"`);
    }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && this.base.startsWith('http:'))) {
      throw new VrunError(`${this.domain}: refusing to send credentials to a token service over plain HTTP (${realm.origin})`);
    }
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', params.scope ?? scope);
    const headers: Record<string, string> = {};
    if (this.creds) headers.authorization = `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`).toString('base64')}`;
    const res = await this.fetch(realm.toString(), headers);
    if (!res.ok) {
      await res.body?.cancel();
      throw new VrunError(`${this.domain}: the token service refused access (HTTP ${res.status})`);
    }
    const doc = JSON.parse((await readLimited(res, 1 << 20, 'token response')).toString('utf8')) as { token?: unknown; access_token?: unknown };
    const token = typeof doc.token === 'string' ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : undefined;
    if (!token) throw new VrunError(`${this.domain}: the token service returned no token`);
    this.tokens.set(scope, token);
  }

  private async fetch(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    try {
      const init: RequestInit = { headers, redirect: 'follow' };
      if (signal) init.signal = signal;
      return await fetch(url, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      rootLogger().debug({ url, err: errorMessage(err), cause: cause?.message }, 'registry request failed');
      throw new VrunError(`cannot reach registry ${this.domain} (${url}): ${cause?.code ?? cause?.message ?? errorMessage(err)}`, {
        hint: url.startsWith('https:') ? `if ${this.domain} serves plain HTTP, mark it insecure: vrun pull --insecure, or VRUN_INSECURE_REGISTRIES=${this.domain}` : undefined,
      });
    }
  }
}

export async function readLimited(res: Response, max: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > max) {
    await res.body?.cancel();
    throw new VrunError(`${what} is ${declared} bytes, more than the limit of ${max}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += c.length;
    if (total > max) throw new VrunError(`${what} is larger than the limit of ${max} bytes`);
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks);
}

function httpGet(url: URL, headers: Record<string, string>, domain: string): Promise<IncomingMessage> {
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.get(url, { headers }, resolve);
    req.on('error', (err: NodeJS.ErrnoException) => reject(new VrunError(`cannot reach registry ${domain} (${url.origin}): ${err.code ?? err.message}`)));
  });
}
