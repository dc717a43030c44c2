import http, { type IncomingMessage } from 'node:http';
import type { Agent } from 'node:https';
import { VrunError } from '../common/errors.js';
import type { Digest } from './digest.js';
import { MediaType } from './oci-types.js';
import { DEFAULT_DOMAIN } from './reference.js';
import { findCredentials, parseChallenge, type Credentials } from './registry-auth.js';
import { rawGet, type RawResponse } from './raw-http-get.js';

/**
 * A client for the OCI distribution API (the `/v2/` HTTP API every registry speaks): manifests and blobs,
 * with bearer-token and basic auth. TLS always, except for loopback registries and the ones the user marks
 * insecure (--insecure or VRUN_INSECURE_REGISTRIES=host[:port],...). Everything goes over node:http(s): fetch
 * would load undici, which costs a `vrun pull` more start-up time than the manifest requests take.
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

  /**
   * GET `/v2/<repo>/<pathPart>`: answers an auth challenge once (token or basic) and follows redirects (to blob
   * storage) without forwarding credentials to another origin. Returns the final response, whatever its status
   * but 401/403.
   */
  async get(repo: string, pathPart: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
    return (await this.request(repo, pathPart, headers, async (url, h) => nodeReply(await this.send(url, h)))).res;
  }

  /**
   * The request loop of get(), over any transport: `send` performs one GET and wraps its answer.
   */
  private async request<R extends Reply>(repo: string, pathPart: string, headers: Record<string, string>, send: (url: URL, headers: Record<string, string>) => Promise<R>): Promise<R> {
    const scope = `repository:${repo}:pull`;
    let url = new URL(`${this.base}/v2/${repo}/${pathPart}`);
    const origin = url.origin;
    let answered = false;
    for (let hop = 0; hop < 6; hop++) {
      const res = await send(url, { ...headers, ...(url.origin === origin ? this.authHeader(scope) : {}) });
      const status = res.status;
      if (status === 401 && !answered && url.origin === origin) {
        answered = true;
        const challenge = res.header('www-authenticate') ?? '';
        res.discard();
        await this.answer(challenge, scope, url.toString());
        continue;
      }
      const location = res.header('location');
      if (REDIRECTS.includes(status) && location) {
        res.discard();
        url = this.redirect(url, location);
        continue;
      }
      if (status === 401 || status === 403) {
        res.discard();
        throw new VrunError(`${this.domain}/${repo}: access denied (HTTP ${status})`, {
          hint: this.creds ? 'check the credentials in your docker config.json' : 'log in: add credentials to ~/.docker/config.json',
        });
      }
      return res;
    }
    throw new VrunError(`${this.domain}/${repo}: too many redirects fetching ${pathPart}`);
  }

  async getManifest(repo: string, reference: string): Promise<{ bytes: Buffer; contentType: string; digestHeader: string | undefined }> {
    const res = await this.get(repo, `manifests/${reference}`, { accept: MANIFEST_ACCEPT });
    const status = res.statusCode ?? 0;
    if (status === 404) {
      discard(res);
      throw new VrunError(`${this.domain}/${repo}:${reference}: manifest unknown (not found in the registry)`);
    }
    if (status < 200 || status > 299) {
      discard(res);
      throw new VrunError(`${this.domain}/${repo}: fetching manifest ${reference} failed with HTTP ${status}`);
    }
    const bytes = await readLimited(res, 4 << 20, `manifest ${reference}`);
    return { bytes, contentType: headerValue(res, 'content-type') ?? '', digestHeader: headerValue(res, 'docker-content-digest') };
  }

  /**
   * A blob as a stream, from byte `offset` on when the server honours the range (status 206), else whole (200).
   */
  async openBlob(repo: string, digest: Digest, offset = 0): Promise<{ status: number; body: IncomingMessage }> {
    const res = await this.get(repo, `blobs/${digest}`, offset > 0 ? { range: `bytes=${offset}-` } : {});
    const status = res.statusCode ?? 0;
    if (status === 416 && offset > 0) {
      discard(res);
      return this.openBlob(repo, digest, 0);
    }
    if (status === 200 || status === 206) return { status, body: res };
    discard(res);
    throw new VrunError(`${this.domain}/${repo}: fetching blob ${digest} failed with HTTP ${status}`);
  }

  /**
   * A blob body into `sink` (synchronous: each chunk is gone when it returns), from byte `offset` on when the
   * server honours the range (206), else whole (200): `onStatus` says which before the first byte. Each hop
   * picks its transport: plain HTTP through rawGet (one reused read buffer), TLS through node:https.
   */
  async readBlob(repo: string, digest: Digest, offset: number, sink: (chunk: Buffer) => void, onStatus: (status: 200 | 206) => void): Promise<void> {
    const headers: Record<string, string> = { 'user-agent': 'vrun', ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) };
    const res = await this.request(repo, `blobs/${digest}`, headers, async (url, h) => {
      if (url.protocol !== 'http:') return streamReply(nodeReply(await this.send(url, h)));
      try {
        return rawReply(await rawGet(url, h, IDLE_TIMEOUT_MS));
      } catch (err) {
        if (err instanceof VrunError) throw err;
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new VrunError(`cannot reach registry ${this.domain} (${url.origin}): ${code}`);
      }
    });
    if (res.status === 416 && offset > 0) {
      res.discard();
      return this.readBlob(repo, digest, 0, sink, onStatus);
    }
    if (res.status !== 200 && res.status !== 206) {
      res.discard();
      throw new VrunError(`${this.domain}/${repo}: fetching blob ${digest} failed with HTTP ${res.status}`);
    }
    try {
      onStatus(res.status);
    } catch (err) {
      res.discard();
      throw err;
    }
    await res.body(sink);
  }

  private redirect(from: URL, location: string): URL {
    const url = new URL(location, from);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.base.startsWith('http:'))) {
      throw new VrunError(`${this.domain}: redirect to plain HTTP (${url.origin}) refused`);
    }
    return url;
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
    let res = await this.send(realm, headers);
    for (let hop = 0; hop < 6 && REDIRECTS.includes(res.statusCode ?? 0) && res.headers.location; hop++) {
      discard(res);
      const next = this.redirect(realm, res.headers.location);
      res = await this.send(next, next.origin === realm.origin ? headers : {});
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      discard(res);
      throw new VrunError(`${this.domain}: the token service refused access (HTTP ${status})`);
    }
    const doc = JSON.parse((await readLimited(res, 1 << 20, 'token response')).toString('utf8')) as { token?: unknown; access_token?: unknown };
    const token = typeof doc.token === 'string' ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : undefined;
    if (!token) throw new VrunError(`${this.domain}: the token service returned no token`);
    this.tokens.set(scope, token);
  }

  private async send(url: URL, headers: Record<string, string>): Promise<IncomingMessage> {
    try {
      return await httpGet(url, { 'user-agent': 'vrun', ...headers });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      (await import('../common/log.js')).rootLogger().debug({ url: url.toString(), code }, 'registry request failed');
      if (url.protocol === 'https:' && UNTRUSTED_CERT.test(code)) {
        throw new VrunError(`${this.domain}: its TLS certificate is not trusted (${url.origin}): ${(err as Error).message} (${code})`, {
          hint: `if ${this.domain} has a certificate from a private CA, name the CA's PEM file in NODE_EXTRA_CA_CERTS`,
        });
      }
      throw new VrunError(`cannot reach registry ${this.domain} (${url.origin}): ${code}`, {
        hint: url.protocol === 'https:' ? `if ${this.domain} serves plain HTTP, mark it insecure: vrun pull --insecure, or VRUN_INSECURE_REGISTRIES=${this.domain}` : undefined,
      });
    }
  }
}

const REDIRECTS = [301, 302, 303, 307, 308];

/** The error codes of a TLS peer Node could connect to but not verify (OpenSSL's X509_V_ERR_* names, and Node's). */
const UNTRUSTED_CERT = /^(?:UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME_INVALID$)/;

/** One answer to a GET, whatever carried it: what the request loop needs to follow auth and redirects. */
interface Reply {
  status: number;
  header(name: string): string | undefined;
  discard(): void;
}

function nodeReply(res: IncomingMessage): Reply & { res: IncomingMessage } {
  return { res, status: res.statusCode ?? 0, header: (name) => headerValue(res, name), discard: () => discard(res) };
}

type BodyReply = Reply & { body(sink: (chunk: Buffer) => void): Promise<void> };

function streamReply(r: Reply & { res: IncomingMessage }): BodyReply {
  return {
    ...r,
    body: async (sink) => {
      for await (const c of r.res as AsyncIterable<Buffer>) sink(c);
    },
  };
}

function rawReply(res: RawResponse): BodyReply {
  return { status: res.status, header: (name) => res.header(name), discard: () => res.discard(), body: (sink) => res.body(sink) };
}
/** A registry that stops sending for this long is given up on (the pull can be run again and resumes). */
const IDLE_TIMEOUT_MS = 120_000;

/** A hostile registry's error page can be endless: bodies we do not read are drained up to this, then cut off. */
const DISCARD_MAX = 64 << 10;

/**
 * Drops a response we do not read. A short body is drained so the connection can serve the next request;
 * a longer one destroys the response (and its socket) instead of downloading it.
 */
function discard(res: IncomingMessage): void {
  let seen = 0;
  res.on('error', () => undefined);
  res.on('data', (c: Buffer) => {
    seen += c.length;
    if (seen > DISCARD_MAX) res.destroy();
  });
  if (Number(headerValue(res, 'content-length') ?? '0') > DISCARD_MAX) res.destroy();
  else res.resume();
}

function headerValue(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A whole response body, refusing more than `max` bytes (declared or sent). */
export async function readLimited(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const declared = Number(headerValue(res, 'content-length') ?? '0');
  if (declared > max) {
    res.destroy();
    throw new VrunError(`${what} is ${declared} bytes, more than the limit of ${max}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    total += c.length;
    if (total > max) {
      res.destroy();
      throw new VrunError(`${what} is larger than the limit of ${max} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

async function httpGet(url: URL, headers: Record<string, string>): Promise<IncomingMessage> {
  // node:https (and TLS with it) loads only for registries that use it: ~35 ms of a local pull's start-up.
  const tls = url.protocol === 'https:';
  const get = tls ? (await import('node:https')).get : http.get;
  const agent = tls ? await tlsAgent() : undefined;
  return new Promise((resolve, reject) => {
    const req = get(url, { headers, timeout: IDLE_TIMEOUT_MS, ...(agent ? { agent } : {}) }, resolve);
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000}s`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

let agentOnce: Promise<Agent | undefined> | undefined;

/**
 * The HTTPS agent, with the extra CAs the user named in NODE_EXTRA_CA_CERTS. `bin/vrun` hands that variable over
 * as VRUN_EXTRA_CA_CERTS, because Node reads the file before any JavaScript runs (40-50 ms of every command with
 * Debian's bundle) and only a pull over TLS needs it. As Node does with the original variable, the extra CAs
 * join Node's own roots, and a file that cannot be read is a warning, not an error.
 */
function tlsAgent(): Promise<Agent | undefined> {
  agentOnce ??= (async () => {
    const file = process.env.VRUN_EXTRA_CA_CERTS;
    if (!file) return undefined;
    const [{ Agent }, tls, fs] = await Promise.all([import('node:https'), import('node:tls'), import('node:fs/promises')]);
    let extra: string;
    try {
      extra = await fs.readFile(file, 'utf8');
    } catch (e) {
      process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(e as Error).message}`);
      return undefined;
    }
    return new Agent({ keepAlive: true, ca: [...tls.rootCertificates, extra] });
  })();
  return agentOnce;
}
