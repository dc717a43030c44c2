import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/image/image-store.js';
import { pullImage } from '../../src/image/pull.js';
import { cleanup, describeTree, tempDir } from './helpers.js';
import { addMultiPlatformIndex, buildFixtureLayout, manifestDigestOf, skopeoCopy, startProxy, startRegistry, umociRootfs, writeLayout, type Registry } from './fixtures.js';
import { buildImage, buildLayer } from '../../src/image/oci-build.js';
import { sha256 } from '../../src/image/digest.js';

describe('pull from a real docker-registry', () => {
  let dir: string;
  let layout: string;
  let registry: Registry;
  let reference: ReturnType<typeof describeTree>;
  beforeAll(async () => {
    dir = tempDir('pull');
    layout = buildFixtureLayout(dir);
    registry = await startRegistry(dir);
    skopeoCopy(`oci:${layout}:v2`, `docker://${registry.host}/fixture:v2`);
    reference = describeTree(umociRootfs(layout, 'v2', path.join(dir, 'umoci')));
  });
  afterAll(async () => {
    await registry?.stop();
    cleanup(dir);
  });

  for (const mode of ['overlay', 'copy'] as const) {
    it(`pulls an OCI image whose ${mode} rootfs matches umoci unpack file for file`, async () => {
      const store = new ImageStore(path.join(dir, `store-${mode}`));
      const rec = await pullImage(store, `${registry.host}/fixture:v2`);
      expect(rec.diffIds).toHaveLength(2);
      const img = store.resolve(`${registry.host}/fixture:v2`);
      expect(img.runtime).toMatchObject({ Cmd: ['sh'], WorkingDir: '/data' });
      expect(img.runtime.Env).toContain('FOO=bar');
      const target = path.join(dir, `rootfs-${mode}`);
      await store.prepareRootfs(`pull-${mode}`, `${registry.host}/fixture:v2`, target, { mode });
      const ours = describeTree(target);
      expect(ours).toEqual(reference);
      // sanity: the comparison covers the interesting cases
      expect(ours['etc/remove-me']).toBeUndefined();
      expect(ours['var/cache/old']).toBeUndefined();
      expect(ours['etc/becomes-dir/inside']?.type).toBe('file');
      expect(ours['bin/hard-b']?.group).toBe('bin/hard-a');
      expect(ours['bin/tool']?.mode).toBe(0o4755);
      expect(ours['data/owned']).toMatchObject({ uid: 1000, gid: 1001 });
      expect(ours['data/xattr']?.xattrs).toBeDefined();
      await store.releaseRootfs(`pull-${mode}`);
    });
  }
});

describe('pull: formats, platforms, digests, auth and lies', () => {
  let dir: string;
  let layout: string;
  let registry: Registry;
  let v2Manifest: string;
  beforeAll(async () => {
    dir = tempDir('pull2');
    layout = buildFixtureLayout(dir);
    addMultiPlatformIndex(layout, 'multi');
    v2Manifest = manifestDigestOf(layout, 'v2');
    registry = await startRegistry(dir);
    skopeoCopy(`oci:${layout}:v2`, `docker://${registry.host}/fixture:v2`);
    skopeoCopy(`oci:${layout}:v2`, `docker://${registry.host}/fixture:docker`, ['--format', 'v2s2']);
    // skopeo reuses blobs the registry already has, so recompress into a layout of its own first
    skopeoCopy(`oci:${layout}:v2`, `oci:${path.join(dir, 'zstd-layout')}:v2`, ['--dest-compress', '--dest-compress-format', 'zstd']);
    skopeoCopy(`oci:${path.join(dir, 'zstd-layout')}:v2`, `docker://${registry.host}/zstd:1`);
    skopeoCopy(`oci:${layout}:multi`, `docker://${registry.host}/fixture:multi`, ['--all']);
  });
  afterAll(async () => {
    await registry?.stop();
    cleanup(dir);
  });

  it('pulls Docker v2 schema 2, zstd layers and a multi-platform index (picking linux/amd64) into shared layers', async () => {
    const store = new ImageStore(path.join(dir, 'store-formats'));
    const oci = await pullImage(store, `${registry.host}/fixture:v2`);
    const docker = await pullImage(store, `${registry.host}/fixture:docker`);
    const zstd = await pullImage(store, `${registry.host}/zstd:1`);
    const multi = await pullImage(store, `${registry.host}/fixture:multi`);
    expect(store.resolve(`${registry.host}/fixture:docker`).manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(store.resolve(`${registry.host}/zstd:1`).manifest.layers.map((x) => x.mediaType)).toContain('application/vnd.oci.image.layer.v1.tar+zstd');
    for (const r of [docker, zstd, multi]) expect(r.diffIds).toEqual(oci.diffIds);
    expect(multi.manifest).toBe(v2Manifest);
    // A pull stores verified blobs; the first use of each image unpacks, one copy of each layer whatever the
    // compression.
    expect(fs.existsSync(store.layout.layers) ? fs.readdirSync(store.layout.layers) : []).toEqual([]);
    for (const [i, tag] of ['fixture:v2', 'fixture:docker', 'zstd:1', 'fixture:multi'].entries()) {
      const prepared = await store.prepareRootfs(`formats-${i}`, `${registry.host}/${tag}`, path.join(dir, `formats-${i}`));
      expect(fs.readFileSync(path.join(prepared.path, 'etc/becomes-dir/inside'), 'utf8')).toBe('now a dir\n');
      await store.releaseRootfs(`formats-${i}`);
    }
    expect(fs.readdirSync(store.layout.layers).sort()).toEqual(oci.diffIds.map((d) => d.slice(7)).sort());
  });

  it('pulls by digest and refuses a digest the registry does not have', async () => {
    const store = new ImageStore(path.join(dir, 'store-digest'));
    const rec = await pullImage(store, `${registry.host}/fixture@${v2Manifest}`);
    expect(rec.manifest).toBe(v2Manifest);
    expect(store.find(`${registry.host}/fixture@${v2Manifest}`)?.config).toBe(rec.config);
    await expect(pullImage(store, `${registry.host}/fixture@sha256:${'0'.repeat(64)}`)).rejects.toThrow(/manifest unknown/);
  });

  it('refuses manifests and blobs whose content does not match their digest, storing nothing', async () => {
    const store = new ImageStore(path.join(dir, 'store-lies'));
    const liar = await startProxy(registry.host, { lieAboutManifests: true });
    try {
      await expect(pullImage(store, `${liar.host}/fixture:v2`)).rejects.toThrow(/says the manifest is sha256:.* but its content has digest/);
      await expect(pullImage(store, `${liar.host}/fixture@${v2Manifest}`)).rejects.toThrow(/returned a manifest with digest .*refused/);
      liar.opts.lieAboutManifests = false;
      liar.opts.corruptBlobs = true;
      await expect(pullImage(store, `${liar.host}/fixture:v2`)).rejects.toThrow(/downloaded with digest .* refused, nothing stored/);
    } finally {
      await liar.stop();
    }
    expect(store.list()).toEqual([]);
    // Nothing unverified was kept: every stored blob hashes to its name (intact layers of the image may stay
    // cached, as in any pull), the corrupted layer is absent, and so is anything unpacked from it.
    const blobs = fs.existsSync(store.layout.blobs) ? fs.readdirSync(store.layout.blobs) : [];
    for (const b of blobs) expect(sha256(fs.readFileSync(path.join(store.layout.blobs, b))).slice(7)).toBe(b);
    const good = await pullImage(new ImageStore(path.join(dir, 'store-lies-ref')), `${registry.host}/fixture:v2`);
    const bigLayer = readManifestLayers(path.join(dir, 'store-lies-ref'), good.manifest)[0] as string;
    expect(blobs).not.toContain(bigLayer.slice(7));
    const layers = fs.existsSync(store.layout.layers) ? fs.readdirSync(store.layout.layers) : [];
    expect(layers).not.toContain((good.diffIds[0] as string).slice(7));
    expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
    expect(fs.readdirSync(store.layout.partial)).toEqual([]);
  });

  it('stores a hostile layer only as a verified blob, and refuses it on first use, leaving nothing behind', async () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    const evil = buildImage([await buildLayer([{ name: 'ok', type: 'file', data: Buffer.alloc(200_000, 1) }, { name: '../../../../../../../../../../..' + outside + '/pwned', type: 'file', data: Buffer.from('x') }])], {});
    skopeoCopy(`oci:${writeLayout(path.join(dir, 'evil-layout'), evil, 'x')}:x`, `docker://${registry.host}/evil:x`);
    const store = new ImageStore(path.join(dir, 'store-evil'));
    await pullImage(store, `${registry.host}/evil:x`);
    const target = path.join(dir, 'evil-rootfs');
    await expect(store.prepareRootfs('evil', `${registry.host}/evil:x`, target)).rejects.toThrow(/entry ".*pwned" contains "\.\."/);
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(store.rootfsOf('evil')).toBeUndefined();
    expect(fs.existsSync(target) ? fs.readdirSync(target) : []).toEqual([]);
    expect(fs.readdirSync(store.layout.layers)).toEqual([]);
    expect(fs.readdirSync(store.layout.tmp)).toEqual([]);
  });

  it('answers bearer-token and basic auth challenges with credentials from a docker config.json', async () => {
    const bearer = await startProxy(registry.host, { bearer: { username: 'alice', password: 's3cret' } });
    const basic = await startProxy(registry.host, { basic: { username: 'bob', password: 'pw:with:colons' } });
    const cfgDir = path.join(dir, 'docker-config');
    fs.mkdirSync(cfgDir, { recursive: true });
    const saved = process.env.DOCKER_CONFIG;
    try {
      process.env.DOCKER_CONFIG = cfgDir;
      fs.writeFileSync(path.join(cfgDir, 'config.json'), JSON.stringify({ auths: {} }));
      await expect(pullImage(new ImageStore(path.join(dir, 'store-noauth')), `${bearer.host}/fixture:v2`)).rejects.toThrow(/token service refused access \(HTTP 401\)/);
      await expect(pullImage(new ImageStore(path.join(dir, 'store-noauth')), `${basic.host}/fixture:v2`)).rejects.toThrow(/requires a login/);
      const auth = (u: string, p: string) => ({ auth: Buffer.from(`${u}:${p}`).toString('base64') });
      fs.writeFileSync(path.join(cfgDir, 'config.json'), JSON.stringify({ auths: { [bearer.host]: auth('alice', 's3cret'), [`http://${basic.host}`]: auth('bob', 'pw:with:colons') } }));
      const a = await pullImage(new ImageStore(path.join(dir, 'store-bearer')), `${bearer.host}/fixture:v2`);
      const b = await pullImage(new ImageStore(path.join(dir, 'store-basic')), `${basic.host}/fixture:v2`);
      expect(a.config).toBe(b.config);
      expect(bearer.requests.some((r) => r.url.startsWith('/token') && r.auth?.startsWith('Basic '))).toBe(true);
      expect(bearer.requests.filter((r) => r.url.includes('/blobs/')).every((r) => r.auth?.startsWith('Bearer '))).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
      await bearer.stop();
      await basic.stop();
    }
  });

  it('uses plain HTTP only for loopback and registries marked insecure', async () => {
    const { isInsecureRegistry } = await import('../../src/image/registry-client.js');
    expect(isInsecureRegistry(registry.host)).toBe(true);
    expect(isInsecureRegistry('registry.example.com')).toBe(false);
    expect(isInsecureRegistry('registry.example.com', true)).toBe(true);
    await expect(pullImage(new ImageStore(path.join(dir, 'store-tls')), `localhost.localdomain.invalid:5000/x:1`)).rejects.toThrow(/cannot reach registry .*https:\/\//);
  });
});

function readManifestLayers(root: string, manifest: string): string[] {
  const m = JSON.parse(fs.readFileSync(path.join(root, 'blobs', 'sha256', manifest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
  return m.layers.map((l) => l.digest);
}
