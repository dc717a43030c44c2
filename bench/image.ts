import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { unpackLayer } from '../src/image/unpack.js';
import { sha256 } from '../src/image/digest.js';
import { MediaType } from '../src/image/oci-types.js';
import { ImageStore } from '../src/image/image-store.js';

/**
 * Image benchmarks, each against a peer measured in the same run:
 *  - layer unpack throughput: vrun's unpacker vs GNU tar and vs `umoci unpack`, same layer (uncompressed and gzip).
 *    vrun unpacks a layer as the store does (the blob's digest was checked when it was stored; a gzip layer's
 *    diff id is still hashed); the same unpack re-hashing the blob, as for a file of unknown content, is shown too;
 *  - pull: `vrun pull` (download and verify, like skopeo) vs `skopeo copy` to an OCI layout, same image, same
 *    local docker-registry; and pull plus the first use's unpack vs `skopeo copy` followed by `umoci unpack`,
 *    which ends in the same state: verified blobs plus an unpacked rootfs.
 * The layer is a tar of a real directory tree (Python's standard library: thousands of small files).
 */
const SOURCE_TREE = process.env.VRUN_BENCH_TREE ?? '/usr/lib/python3.11';
const RUNS = Number(process.env.VRUN_BENCH_RUNS ?? 5);
const ROOT = path.resolve(import.meta.dirname, '../..');

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function timeIt(runs: number, setup: () => void, fn: () => Promise<void> | void): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    setup();
    execFileSync('sync');
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

function fresh(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
}

/** A one-layer OCI layout holding `blob`, for umoci and skopeo. */
function writeLayout(dir: string, blob: Buffer, tar: Buffer, mediaType: string): void {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer) => {
    const d = sha256(b);
    fs.writeFileSync(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }));
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, ...put(config) }, layers: [{ mediaType, ...put(blob) }] }),
  );
  const m = put(manifest);
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, ...m, annotations: { 'org.opencontainers.image.ref.name': 'bench' } }] }));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function run(): Promise<void> {
  if (!fs.existsSync(SOURCE_TREE)) {
    process.stdout.write(`image: skipped, ${SOURCE_TREE} is missing (set VRUN_BENCH_TREE)\n`);
    return;
  }
  const work = fs.mkdtempSync('/var/tmp/vrun-bench-image-');
  try {
    const layerTar = path.join(work, 'layer.tar');
    execFileSync('tar', ['-C', path.dirname(SOURCE_TREE), '-cf', layerTar, path.basename(SOURCE_TREE)]);
    const layerGz = path.join(work, 'layer.tar.gz');
    execFileSync('sh', ['-c', `gzip -6 -c ${layerTar} > ${layerGz}`]);
    const tarBytes = fs.statSync(layerTar).size;
    const entries = execFileSync('tar', ['-tf', layerTar], { maxBuffer: 256 << 20 }).toString().split('\n').length - 1;
    process.stdout.write(`layer: ${SOURCE_TREE}, ${(tarBytes / 1e6).toFixed(1)} MB uncompressed, ${entries} entries, ${(fs.statSync(layerGz).size / 1e6).toFixed(1)} MB gzip; median of ${RUNS} runs\n`);
    const target = path.join(work, 'out');

    for (const [label, file] of [
      ['uncompressed', layerTar],
      ['gzip', layerGz],
    ] as const) {
      const mbps = (ms: number) => `${(tarBytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
      const layout = path.join(work, `layout-${label}`);
      writeLayout(layout, fs.readFileSync(file), fs.readFileSync(layerTar), label === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayer);
      const bundle = path.join(work, 'bundle');
      const withUmoci = have('umoci');
      // Interleaved runs: this host is shared, so each peer sees the same background load.
      const t = { ours: [] as number[], rehash: [] as number[], gnu: [] as number[], umoci: [] as number[] };
      const storedAs = sha256(fs.readFileSync(file));
      for (let i = 0; i < RUNS; i++) {
        t.ours.push(await timeIt(1, () => fresh(target), async () => {
          await unpackLayer(file, target, { what: 'bench layer', storedAs });
        }));
        t.rehash.push(await timeIt(1, () => fresh(target), async () => {
          await unpackLayer(file, target, { what: 'bench layer' });
        }));
        t.gnu.push(await timeIt(1, () => fresh(target), () => {
          execFileSync('tar', ['-xf', file, '-C', target, '--same-owner', '-p']);
        }));
        if (withUmoci) {
          t.umoci.push(await timeIt(1, () => fs.rmSync(bundle, { recursive: true, force: true }), () => {
            execFileSync('umoci', ['unpack', '--image', `${layout}:bench`, bundle], { stdio: 'ignore' });
          }));
        }
      }
      const ours = median(t.ours);
      const gnu = median(t.gnu);
      const rehash = median(t.rehash);
      let line = `unpack ${label}: vrun ${ours.toFixed(0)} ms (${mbps(ours)}), GNU tar ${gnu.toFixed(0)} ms (${mbps(gnu)}) -> vrun/GNU tar throughput ratio ${(gnu / ours).toFixed(2)}x (goal >= 0.8x)`;
      line += `; re-hashing the blob too ${rehash.toFixed(0)} ms -> ${(gnu / rehash).toFixed(2)}x GNU tar`;
      if (withUmoci) {
        const umoci = median(t.umoci);
        line += `; umoci unpack ${umoci.toFixed(0)} ms (${mbps(umoci)}) -> vrun/umoci ratio ${(umoci / ours).toFixed(2)}x`;
      } else {
        line += '; umoci not installed';
      }
      process.stdout.write(`${line}\n`);
    }

    if (!have('docker-registry') || !have('skopeo')) {
      process.stdout.write('pull: skipped (needs docker-registry and skopeo: apt-get install docker-registry skopeo)\n');
      return;
    }
    const port = await freePort();
    const cfg = path.join(work, 'registry.yml');
    fs.writeFileSync(cfg, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(work, 'registry')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
    const reg = spawn('docker-registry', ['serve', cfg], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 200; i++) {
        try {
          if ((await fetch(`http://127.0.0.1:${port}/v2/`)).ok) break;
        } catch {
          await sleep(50);
        }
      }
      const image = `127.0.0.1:${port}/bench:1`;
      execFileSync('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${path.join(work, 'layout-gzip')}:bench`, `docker://${image}`]);
      const vrunRoot = path.join(work, 'vrun-root');
      const dest = path.join(work, 'skopeo-dest');
      const pulls: number[] = [];
      const pullUnpacks: number[] = [];
      const copies: number[] = [];
      const copyUnpacks: number[] = [];
      const withUmoci = have('umoci');
      const bundle = path.join(work, 'pull-bundle');
      const rootfs = path.join(work, 'pull-rootfs');
      // The command as installed (bin/vrun, package.json's bin), in this host's environment as it is.
      const vrunCommand = path.join(ROOT, 'bin', 'vrun');
      const vrunPullOnce = () => {
        const res = spawnSync(vrunCommand, ['pull', '-q', image], { env: { ...process.env, VRUN_ROOT: vrunRoot }, encoding: 'utf8' });
        if (res.status !== 0) throw new Error(`vrun pull failed: ${res.stderr}`);
      };
      const skopeoCopy = () => {
        execFileSync('skopeo', ['copy', '--quiet', '--insecure-policy', '--src-tls-verify=false', `docker://${image}`, `oci:${dest}:bench`]);
      };
      for (let i = 0; i < RUNS; i++) {
        pulls.push(await timeIt(1, () => fresh(vrunRoot), () => vrunPullOnce()));
        copies.push(await timeIt(1, () => fs.rmSync(dest, { recursive: true, force: true }), skopeoCopy));
        if (withUmoci) {
          // Same end state on both sides: verified blobs plus an unpacked rootfs. vrun unpacks on first use, inside
          // the `vrun run` (or shim) process: prepareRootfs, timed here in this process, like umoci's own process.
          const store = new ImageStore(path.join(vrunRoot, 'images'));
          pullUnpacks.push(await timeIt(1, () => fresh(vrunRoot), async () => {
            vrunPullOnce();
            await store.prepareRootfs('bench', image, rootfs, { mode: 'overlay' });
          }));
          await store.releaseRootfs('bench');
          copyUnpacks.push(await timeIt(1, () => {
            fs.rmSync(dest, { recursive: true, force: true });
            fs.rmSync(bundle, { recursive: true, force: true });
          }, () => {
            skopeoCopy();
            execFileSync('umoci', ['unpack', '--image', `${dest}:bench`, bundle], { stdio: 'ignore' });
          }));
        }
      }
      const vrunPull = median(pulls);
      const skopeo = median(copies);
      // Context for the ratio: what a bare `vrun` invocation costs on this host (node start + module loading).
      const startup = median(
        Array.from({ length: RUNS }, () => {
          const t0 = process.hrtime.bigint();
          execFileSync(vrunCommand, ['version'], { stdio: 'ignore' });
          return Number(process.hrtime.bigint() - t0) / 1e6;
        }),
      );
      process.stdout.write(
        `pull (${(fs.statSync(layerGz).size / 1e6).toFixed(1)} MB gzip layer, local docker-registry): vrun pull ${vrunPull.toFixed(0)} ms ` +
          `(download and verify; a bare "vrun version" costs ${startup.toFixed(0)} ms here), ` +
          `skopeo copy to an OCI layout ${skopeo.toFixed(0)} ms -> vrun/skopeo time ratio ${(vrunPull / skopeo).toFixed(2)}x (goal <= 1.2x)\n`,
      );
      if (withUmoci) {
        const ours = median(pullUnpacks);
        const both = median(copyUnpacks);
        process.stdout.write(
          `pull + unpack, same end state: vrun pull + first-use unpack (prepareRootfs) ${ours.toFixed(0)} ms, skopeo copy + umoci unpack ${both.toFixed(0)} ms ` +
            `-> vrun/(skopeo+umoci) time ratio ${(ours / both).toFixed(2)}x\n`,
        );
      }
    } finally {
      reg.kill('SIGTERM');
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
