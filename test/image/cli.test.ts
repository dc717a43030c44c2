import dns from 'node:dns/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/image/image-store.js';
import { cleanup, tempDir } from './helpers.js';
import { buildFixtureLayout, makeTlsCerts, skopeoCopy, startProxy, startRegistry, type Proxy, type Registry } from './fixtures.js';

const VRUN = path.resolve(import.meta.dirname, '../../bin/vrun.js');
/** The command as installed (package.json's bin): a shell entry in front of bin/vrun.js. */
const VRUN_COMMAND = path.resolve(import.meta.dirname, '../../bin/vrun');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(root: string, args: string[], opts: { command?: boolean; env?: NodeJS.ProcessEnv } = {}): { proc: ChildProcess; done: Promise<Ran> } {
  // Its own run dir: no container of another test can answer to an image's name in `vrun inspect`.
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), VRUN_ROOT: root, VRUN_RUN: path.join(root, 'run') };
  delete env.VRUN_IMAGE_ROOT;
  const [file, argv] = opts.command ? [VRUN_COMMAND, args] : [process.execPath, [VRUN, ...args]];
  const proc = spawn(file, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Ran>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return { proc, done };
}

async function vrun(root: string, ...args: string[]): Promise<Ran> {
  return start(root, args).done;
}

/** What `vrun run` does with an image before it boots the VM: a rootfs for one container, in a process of its own. */
async function firstUse(root: string, image: string, id: string, target: string): Promise<Ran> {
  const storeModule = pathToFileURL(path.resolve(import.meta.dirname, '../../dist/src/image/image-store.js')).href;
  const script = [
    `import fs from 'node:fs';`,
    `import { openImageStore } from ${JSON.stringify(storeModule)};`,
    `const store = openImageStore();`,
    `const r = await store.prepareRootfs(${JSON.stringify(id)}, ${JSON.stringify(image)}, ${JSON.stringify(target)});`,
    `process.stdout.write(fs.statSync(r.path + '/data/big.bin').size + '\\n');`,
    `await store.releaseRootfs(${JSON.stringify(id)});`,
  ].join('\n');
  const env: NodeJS.ProcessEnv = { ...process.env, VRUN_ROOT: root, VRUN_RUN: path.join(root, 'run') };
  delete env.VRUN_IMAGE_ROOT;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<Ran>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('vrun image commands (the real CLI)', () => {
  let dir: string;
  let registry: Registry;
  let proxy: Proxy;
  const BIG = 24 << 20;
  beforeAll(async () => {
    dir = tempDir('cli');
    const layout = buildFixtureLayout(dir, { bigFileBytes: BIG });
    registry = await startRegistry(dir);
    skopeoCopy(`oci:${layout}:v1`, `docker://${registry.host}/big:v1`);
    proxy = await startProxy(registry.host);
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    cleanup(dir);
  });

  it('resumes a pull killed in the middle of a layer, and verifies it', async () => {
    const root = path.join(dir, 'root-kill');
    const store = new ImageStore(path.join(root, 'images'));
    proxy.opts.throttleBytesPerSec = 4 << 20;
    const first = start(root, ['pull', `${proxy.host}/big:v1`]);
    let partialSize = 0;
    for (let i = 0; i < 400 && partialSize < 2 << 20; i++) {
      await sleep(25);
      const files = fs.existsSync(store.layout.partial) ? fs.readdirSync(store.layout.partial) : [];
      partialSize = Math.max(0, ...files.map((f) => fs.statSync(path.join(store.layout.partial, f)).size));
    }
    first.proc.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.code).toBeNull();
    expect(partialSize).toBeGreaterThan(1 << 20);
    expect(partialSize).toBeLessThan(BIG);
    expect(store.list()).toEqual([]);
    proxy.opts.throttleBytesPerSec = undefined;
    const before = proxy.requests.length;
    const second = await vrun(root, 'pull', `${proxy.host}/big:v1`);
    expect(second.stderr).not.toMatch(/vrun:/);
    expect(second.code).toBe(0);
    const ranged = proxy.requests.slice(before).filter((r) => r.range !== undefined);
    expect(ranged).toHaveLength(1);
    expect(Number(/bytes=(\d+)-/.exec(ranged[0]?.range ?? '')?.[1])).toBeGreaterThanOrEqual(partialSize);
    expect(fs.readdirSync(store.layout.partial)).toEqual([]);
    // The resumed blob was verified as a whole: its first use unpacks it and checks the diff id too.
    const img = store.resolve(`${proxy.host}/big:v1`);
    await store.withWriteAccess(() => store.unpackLayers(img));
    expect(fs.statSync(path.join(img.layerDirs[0] as string, 'data/big.bin')).size).toBe(BIG);
  });

  it('runs two pulls of one image at once: both succeed, one download, one copy', async () => {
    const root = path.join(dir, 'root-twice');
    const store = new ImageStore(path.join(root, 'images'));
    proxy.opts.throttleBytesPerSec = 16 << 20;
    const before = proxy.requests.length;
    const [a, b] = await Promise.all([vrun(root, 'pull', `${proxy.host}/big:v1`), vrun(root, 'pull', '-q', `${proxy.host}/big:v1`)]);
    proxy.opts.throttleBytesPerSec = undefined;
    expect([a.code, b.code, a.stderr.includes('vrun:'), b.stderr.includes('vrun:')]).toEqual([0, 0, false, false]);
    expect(store.list()).toHaveLength(1);
    const img = store.resolve(`${proxy.host}/big:v1`);
    const layerBlob = img.manifest.layers[0]?.digest as string;
    expect(proxy.requests.slice(before).filter((r) => r.url.endsWith(`/blobs/${layerBlob}`))).toHaveLength(1);
    expect(fs.readdirSync(store.layout.blobs).sort()).toEqual([img.manifestDigest, img.id, ...img.manifest.layers.map((x) => x.digest)].map((d) => d.slice(7)).sort());
    // Blobs only so far; two first uses at once (two processes, as two `vrun run`s) both get the rootfs, and the
    // layer is unpacked once.
    expect(fs.existsSync(store.layout.layers) ? fs.readdirSync(store.layout.layers) : []).toEqual([]);
    const uses = await Promise.all(['use-a', 'use-b'].map((id) => firstUse(root, `${proxy.host}/big:v1`, id, path.join(dir, id))));
    for (const u of uses) expect([u.code, u.stderr, u.stdout]).toEqual([0, '', `${BIG}\n`]);
    expect(fs.readdirSync(store.layout.layers)).toHaveLength(1);
    expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
  });

  it('ensure-builtin, images, inspect, rmi, prune and import work end to end', async () => {
    const root = path.join(dir, 'root-cmds');
    expect((await vrun(root, 'image', 'ensure-builtin')).stdout).toMatch(/^busybox:latest [a-f0-9]{12} created\n$/);
    expect((await vrun(root, 'image', 'ensure-builtin')).stdout).toMatch(/up to date/);
    const images = await vrun(root, 'images');
    expect(images.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\nbusybox\s+latest\s+[a-f0-9]{12}\s/);
    const inspect = JSON.parse((await vrun(root, 'image', 'inspect', 'busybox')).stdout) as { RepoTags: string[]; Config: { Cmd: string[] }; RootFS: { Layers: string[] } }[];
    expect(inspect[0]?.RepoTags).toEqual(['busybox:latest']);
    expect(inspect[0]?.RootFS.Layers).toHaveLength(2);
    // No container has that name, so `vrun inspect` falls back to the image, as Docker does.
    const plain = await vrun(root, 'inspect', 'busybox');
    expect(plain.code).toBe(0);
    expect(JSON.parse(plain.stdout)).toEqual(inspect);
    const neither = await vrun(root, 'inspect', 'no-such-thing-vrun-test');
    expect([neither.code, neither.stderr]).toEqual([125, 'vrun: no such container or image: no-such-thing-vrun-test\n']);
    const archive = path.join(dir, 'big.tar');
    skopeoCopy(`docker://${registry.host}/big:v1`, `docker-archive:${archive}:imported/big:v1`);
    const imp = await vrun(root, 'import', archive);
    expect(imp.code).toBe(0);
    expect(imp.stdout).toBe('Loaded image: imported/big:v1\n');
    const rmi = await vrun(root, 'rmi', 'busybox');
    expect(rmi.stdout).toMatch(/^Untagged: busybox:latest\nDeleted: sha256:[a-f0-9]{64}\n$/);
    const missing = await vrun(root, 'rmi', 'busybox');
    expect([missing.code, missing.stderr]).toEqual([125, 'vrun: image "busybox" not found in the local store\n']);
    expect((await vrun(root, 'images', '-q')).stdout.trim().split('\n')).toHaveLength(1);
    const prune = await vrun(root, 'image', 'prune', '-a');
    expect(prune.stdout).toMatch(/^Deleted: sha256:[a-f0-9]{64}\nRemoved \d+ blobs and 1 unpacked layer;/);
    expect((await vrun(root, 'images', '-q')).stdout).toBe('');
    const store = new ImageStore(path.join(root, 'images'));
    expect(fs.readdirSync(store.layout.blobs)).toEqual([]);
    expect(fs.readdirSync(store.layout.layers)).toEqual([]);
    const bad = await vrun(root, 'pull', 'Not/A:Valid:Ref');
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^vrun: invalid image reference/);
  });
});

describe('vrun pull over TLS (the installed command, NODE_EXTRA_CA_CERTS)', () => {
  let dir: string;
  let registry: Registry;
  let ca: string;
  let domain: string;
  const envWith = (extraCa: string | undefined): NodeJS.ProcessEnv => {
    const env = { ...process.env };
    if (extraCa === undefined) delete env.NODE_EXTRA_CA_CERTS;
    else env.NODE_EXTRA_CA_CERTS = extraCa;
    return env;
  };
  beforeAll(async () => {
    dir = tempDir('cli-tls');
    // Not a loopback name: vrun talks plain HTTP to those. The host's own name resolves to a local address.
    const name = os.hostname();
    const { address } = await dns.lookup(name, { family: 4 });
    const certs = makeTlsCerts(dir, name);
    ca = certs.ca;
    registry = await startRegistry(dir, { cert: certs.cert, key: certs.key, listenHost: address });
    domain = `${name}:${registry.host.split(':').pop()}`;
    skopeoCopy(`oci:${buildFixtureLayout(dir)}:v1`, `docker://${domain}/tls:v1`);
  });
  afterAll(async () => {
    await registry?.stop();
    cleanup(dir);
  });

  it('verifies the registry against a CA named in NODE_EXTRA_CA_CERTS, and refuses it without', async () => {
    const trusted = await start(path.join(dir, 'root-ca'), ['pull', '-q', `${domain}/tls:v1`], { command: true, env: envWith(ca) }).done;
    expect([trusted.code, trusted.stderr]).toEqual([0, '']);
    expect(new ImageStore(path.join(dir, 'root-ca', 'images')).list()).toHaveLength(1);
    const untrusted = await start(path.join(dir, 'root-no-ca'), ['pull', '-q', `${domain}/tls:v1`], { command: true, env: envWith(undefined) }).done;
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toBe(
      `vrun: ${domain}: its TLS certificate is not trusted (https://${domain}): unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)\n` +
        `hint: if ${domain} has a certificate from a private CA, name the CA's PEM file in NODE_EXTRA_CA_CERTS\n`,
    );
    expect(fs.existsSync(path.join(dir, 'root-no-ca', 'images')) ? new ImageStore(path.join(dir, 'root-no-ca', 'images')).list() : []).toEqual([]);
  });

  it('reads NODE_EXTRA_CA_CERTS only when a pull talks TLS, warning as Node does when the file is missing', async () => {
    const missing = path.join(dir, 'no-such-ca.pem');
    // Node itself would warn at start-up, before any command ran; the command hands the variable to the pull.
    const version = await start(path.join(dir, 'root-v'), ['version'], { command: true, env: envWith(missing) }).done;
    expect([version.code, version.stderr]).toEqual([0, '']);
    const direct = await start(path.join(dir, 'root-v'), ['version'], { env: envWith(missing) }).done;
    expect(direct.stderr).toMatch(/Ignoring extra certs from `.*no-such-ca\.pem`/);
    const pull = await start(path.join(dir, 'root-missing'), ['pull', '-q', `${domain}/tls:v1`], { command: true, env: envWith(missing) }).done;
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toMatch(/Warning: Ignoring extra certs from `.*no-such-ca\.pem`, load failed: ENOENT/);
    expect(pull.stderr).toMatch(/^vrun: .*: its TLS certificate is not trusted /m);
  });
});
