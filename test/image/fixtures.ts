import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fsOps } from '../../src/image/fs-ops.js';

/**
 * Real-component fixtures for image tests: OCI layouts built with umoci (an independent OCI implementation),
 * a real docker-registry (Debian's distribution server) on 127.0.0.1, filled with skopeo.
 */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd, maxBuffer: 64 << 20 });
}

/**
 * An OCI layout with tag "v1" (one layer: modes, owners, setuid, sticky, symlinks, hardlinks, a fifo, xattrs)
 * and tag "v2" (a second layer that deletes a file and a directory, replaces a file by a directory, adds files
 * and sets Cmd/Env/WorkingDir). umoci writes the whiteouts.
 */
export function buildFixtureLayout(dir: string, opts: { bigFileBytes?: number } = {}): string {
  const layout = path.join(dir, 'layout');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);
  const b1 = path.join(dir, 'bundle1');
  run('umoci', ['unpack', '--image', `${layout}:base`, b1]);
  const r = path.join(b1, 'rootfs');
  const w = (p: string, data: string | Buffer, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(r, p)), { recursive: true });
    fs.writeFileSync(path.join(r, p), data);
    fs.chmodSync(path.join(r, p), mode);
  };
  for (const d of ['bin', 'etc', 'usr/lib', 'var/cache/old', 'data', 'tmp']) fs.mkdirSync(path.join(r, d), { recursive: true });
  fs.chmodSync(path.join(r, 'tmp'), 0o1777);
  w('bin/tool', '#!/bin/sh\necho tool\n', 0o4755);
  w('etc/config', 'a=1\n', 0o640);
  fs.chownSync(path.join(r, 'etc/config'), 0, 50);
  w('data/owned', 'mine\n', 0o600);
  fs.chownSync(path.join(r, 'data/owned'), 1000, 1001);
  fs.chownSync(path.join(r, 'data'), 1000, 1001);
  w('usr/lib/libx.so.1', Buffer.alloc(70_000, 7));
  w('usr/lib/random.bin', randomBytes(48_000));
  fs.symlinkSync('libx.so.1', path.join(r, 'usr/lib/libx.so'));
  fs.symlinkSync('/usr/lib/libx.so.1', path.join(r, 'bin/abs-link'));
  fs.symlinkSync('../../nonexistent/../..', path.join(r, 'bin/dangling-up'));
  w('bin/hard-a', 'same inode\n', 0o755);
  fs.linkSync(path.join(r, 'bin/hard-a'), path.join(r, 'bin/hard-b'));
  fs.linkSync(path.join(r, 'bin/hard-a'), path.join(r, 'usr/hard-c'));
  fsOps().fsMknod(path.join(r, 'var/fifo'), fs.constants.S_IFIFO | 0o644, 0, 0);
  w('var/cache/old/a', 'old\n');
  w('var/cache/old/b', 'old\n');
  w('etc/remove-me', 'bye\n');
  w('etc/becomes-dir', 'file first\n');
  w('data/xattr', 'x\n');
  fsOps().fsLsetxattr(path.join(r, 'data/xattr'), 'user.vrun.test', Buffer.from('hello'));
  if (opts.bigFileBytes) {
    const fd = fs.openSync(path.join(r, 'data/big.bin'), 'w');
    for (let i = 0; i < opts.bigFileBytes / (1 << 20); i++) fs.writeSync(fd, randomBytes(1 << 20));
    fs.closeSync(fd);
  }
  const past = new Date('2020-02-02T02:02:02Z');
  fs.utimesSync(path.join(r, 'etc/config'), past, past);
  run('umoci', ['repack', '--image', `${layout}:v1`, b1]);

  const b2 = path.join(dir, 'bundle2');
  run('umoci', ['unpack', '--image', `${layout}:v1`, b2]);
  const r2 = path.join(b2, 'rootfs');
  fs.rmSync(path.join(r2, 'etc/remove-me'));
  fs.rmSync(path.join(r2, 'var/cache/old'), { recursive: true });
  fs.rmSync(path.join(r2, 'etc/becomes-dir'));
  fs.mkdirSync(path.join(r2, 'etc/becomes-dir'));
  fs.writeFileSync(path.join(r2, 'etc/becomes-dir/inside'), 'now a dir\n');
  fs.writeFileSync(path.join(r2, 'etc/config'), 'a=2\n');
  fs.writeFileSync(path.join(r2, 'etc/added'), 'new in v2\n');
  run('umoci', ['repack', '--image', `${layout}:v2`, b2]);
  run('umoci', ['config', '--image', `${layout}:v2`, '--config.cmd', 'sh', '--config.env', 'FOO=bar', '--config.workingdir', '/data']);
  fs.rmSync(b1, { recursive: true, force: true });
  fs.rmSync(b2, { recursive: true, force: true });
  return layout;
}

/** umoci's own unpack of the same image: the reference our rootfs must match. */
export function umociRootfs(layout: string, tag: string, dest: string): string {
  run('umoci', ['unpack', '--image', `${layout}:${tag}`, dest]);
  return path.join(dest, 'rootfs');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, host, () => {
      sock.destroy();
      resolve(true);
    });
    sock.on('error', () => resolve(false));
  });
}

/**
 * A test CA and a server certificate it signed for `name` (a DNS name), made with openssl: the files a TLS
 * registry serves with, and the CA a client must be told about.
 */
export function makeTlsCerts(dir: string, name: string): { ca: string; cert: string; key: string } {
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args);
  ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=vrun test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ossl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f('server.key'), '-out', f('server.csr'));
  fs.writeFileSync(f('san.ext'), `subjectAltName=DNS:${name}\n`);
  ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f('server.pem'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

export interface Registry {
  host: string;
  stop(): Promise<void>;
}

/** A certificate and key (PEM files) for the registry to serve TLS with, on the given listen address. */
export interface RegistryTls {
  cert: string;
  key: string;
  listenHost: string;
}

export async function startRegistry(dir: string, tls?: RegistryTls): Promise<Registry> {
  const port = await freePort();
  const storage = path.join(dir, 'registry-data');
  fs.mkdirSync(storage, { recursive: true });
  const cfg = path.join(dir, 'registry.yml');
  const addr = `${tls?.listenHost ?? '127.0.0.1'}:${port}`;
  const tlsCfg = tls ? `  tls:\n    certificate: ${tls.cert}\n    key: ${tls.key}\n` : '';
  fs.writeFileSync(cfg, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: ${addr}\n${tlsCfg}`);
  const proc: ChildProcess = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const host = addr;
  for (let i = 0; ; i++) {
    if (await listening(tls?.listenHost ?? '127.0.0.1', port)) break;
    if (i > 200 || proc.exitCode !== null) throw new Error(`docker-registry did not start: ${stderr}`);
    await sleep(50);
  }
  return {
    host,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
    },
  };
}

export function skopeoCopy(src: string, dest: string, extra: string[] = []): void {
  run('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', '--src-tls-verify=false', ...extra, src, dest]);
}

export interface ProxyOptions {
  /** Blob bodies are sent at about this many bytes per second. */
  throttleBytesPerSec?: number;
  /** Flip one byte in the middle of every blob body. */
  corruptBlobs?: boolean;
  /** Serve manifests with an extra byte while keeping the registry's Docker-Content-Digest header. */
  lieAboutManifests?: boolean;
  /** Demand these basic credentials on every request. */
  basic?: { username: string; password: string };
  /** Demand a bearer token from the proxy's own token endpoint, which wants these basic credentials. */
  bearer?: { username: string; password: string };
}

export interface Proxy {
  host: string;
  opts: ProxyOptions;
  requests: { method: string; url: string; range: string | undefined; auth: string | undefined }[];
  stop(): Promise<void>;
}

/**
 * A real HTTP hop in front of the real registry, for what a registry will not do on its own: be slow (so a pull
 * can be killed mid-layer), lie about content, or demand token auth. It forwards every request unchanged.
 */
export async function startProxy(upstream: string, opts: ProxyOptions = {}): Promise<Proxy> {
  const http = await import('node:http');
  const requests: Proxy['requests'] = [];
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization });
    const host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    if (opts.bearer) {
      if (req.url?.startsWith('/token')) {
        const want = `Basic ${Buffer.from(`${opts.bearer.username}:${opts.bearer.password}`).toString('base64')}`;
        if (req.headers.authorization !== want) {
          res.writeHead(401).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token }));
        return;
      }
      if (req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="test-registry",scope="repository:x:pull"` }).end();
        return;
      }
    }
    if (opts.basic) {
      const want = `Basic ${Buffer.from(`${opts.basic.username}:${opts.basic.password}`).toString('base64')}`;
      if (req.headers.authorization !== want) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
        return;
      }
    }
    const up = http.request({ host: upstream.split(':')[0], port: Number(upstream.split(':')[1]), path: req.url, method: req.method, headers: { ...req.headers, host: upstream } }, (upRes) => {
      const isBlob = /\/blobs\/sha256:/.test(req.url ?? '') && req.method === 'GET';
      const isManifest = /\/manifests\//.test(req.url ?? '') && req.method === 'GET';
      const headers = { ...upRes.headers };
      if (isManifest && opts.lieAboutManifests && upRes.statusCode === 200) {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.concat([Buffer.concat(chunks), Buffer.from(' ')]);
          headers['content-length'] = String(body.length);
          res.writeHead(200, headers).end(body);
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, headers);
      if (!isBlob || (!opts.throttleBytesPerSec && !opts.corruptBlobs)) {
        upRes.pipe(res);
        return;
      }
      let sent = 0;
      const half = Number(headers['content-length'] ?? 0) / 2;
      const started = Date.now();
      upRes.on('data', (c: Buffer) => {
        if (opts.corruptBlobs && half > 2048 && sent <= half && sent + c.length > half) {
          c = Buffer.from(c);
          const i = Math.floor(half - sent);
          c[i] = (c[i] as number) ^ 0xff;
        }
        sent += c.length;
        res.write(c);
        if (opts.throttleBytesPerSec) {
          const due = started + (sent / opts.throttleBytesPerSec) * 1000;
          const wait = due - Date.now();
          if (wait > 0) {
            upRes.pause();
            setTimeout(() => upRes.resume(), wait);
          }
        }
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    opts,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Adds tag `tag` to the layout: an image index offering v1 as linux/arm64 and v2 as linux/amd64. */
export function addMultiPlatformIndex(layout: string, tag: string): string {
  const indexFile = path.join(layout, 'index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[] };
  const byTag = (t: string) => {
    const m = index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === t);
    if (!m) throw new Error(`no tag ${t}`);
    return { mediaType: m.mediaType, digest: m.digest, size: m.size };
  };
  const doc = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...byTag('v1'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { ...byTag('v2'), platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }),
  );
  const hex = createHash('sha256').update(doc).digest('hex');
  fs.writeFileSync(path.join(layout, 'blobs', 'sha256', hex), doc);
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: doc.length, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(index));
  return `sha256:${hex}`;
}

export function manifestDigestOf(layout: string, tag: string): string {
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const m = index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!m) throw new Error(`no tag ${tag}`);
  return m.digest;
}

/** Writes an image built in memory (src/image/oci-build.ts) as a one-tag OCI layout. */
export function writeLayout(dir: string, img: { config: Buffer; manifest: Buffer; manifestDigest: string; layers: { blob: Buffer }[] }, tag: string): string {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  for (const b of [img.config, img.manifest, ...img.layers.map((l) => l.blob)]) fs.writeFileSync(path.join(blobs, createHash('sha256').update(b).digest('hex')), b);
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: img.manifestDigest, size: img.manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return dir;
}
