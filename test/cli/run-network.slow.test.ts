/**
 * `vrun run` on a network, end to end: the real CLI and sandbox, the standard CNI plugins (bridge, host-local,
 * portmap, firewall), tap + tc redirect, a jailed QEMU (TCG) with virtio-net, and the guest agent configuring
 * the guest.
 *
 * Safety: vrun itself runs inside a network namespace this file makes (`nsenter --net`, which keeps the mount
 * namespace, so /run/netns and the sandbox's mounts are the host's), so the vrun0 bridge, its iptables rules,
 * ip_forward and every pod namespace's veth peer land there, never in the host's. Every client runs in that
 * namespace too and only talks to addresses inside it. afterAll removes the containers and the namespace.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuestImage } from '../../src/guest-image/image.js';
import { defaultCniEnv, type CniEnv } from '../../src/network/cni.js';
import { defaultNetworkConfList, type NetworkConfigList } from '../../src/network/cni-config.js';
import { run } from '../../src/network/exec.js';
import { describeLeftovers, findLeftovers, isClean, type NetworkLeftovers } from '../../src/network/leftovers.js';
import { createNetns, deleteNetns, listVrunNetns } from '../../src/network/netns.js';
import { isAlive } from '../../src/sandbox/cleanup.js';
import { tcpServer } from '../network/ns-tools.js';
import { removeRunDir } from './fake-sandbox.js';

const root = path.resolve(import.meta.dirname, '../..');
const runDir = mkdtempSync('/run/vrun-test-');
const work = mkdtempSync(path.join(os.tmpdir(), 'vrun-clinet-'));
const confDir = path.join(work, 'net.d');
const hostId = `test-clinet-${process.pid}`;
const HOST_PORT = 18080;
const PAGE = 'hello from a vrun pod\n';

let hostNs = '';
let list: NetworkConfigList;
let env: CniEnv;

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI, run inside the test's namespace. */
function vrun(args: string[], extraEnv: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '', VRUN_CNI_CONF_DIR: confDir, ...extraEnv };
    delete childEnv.VRUN_NETWORK;
    const child = spawn('nsenter', [`--net=${hostNs}`, '--', process.execPath, path.join(root, 'bin/vrun.js'), ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

async function vrunOk(args: string[]): Promise<string> {
  const r = await vrun(args);
  if (r.status !== 0) throw new Error(`vrun ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

interface Inspected {
  Id: string;
  NetworkSettings: { IPAddress: string; Ports: Record<string, { HostIp: string; HostPort: string }[]> };
  Sandbox: { Pids: { sandbox?: number; vmm?: number } };
}

async function inspect(id: string): Promise<Inspected> {
  const [s] = JSON.parse(await vrunOk(['inspect', id])) as Inspected[];
  if (!s) throw new Error(`no inspect output for ${id}`);
  return s;
}

const HTTP_GET = `
const http = require('node:http');
const [url] = process.argv.slice(1);
http.get(url, { timeout: 10000 }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => { process.stdout.write(b); process.exit(res.statusCode === 200 ? 0 : 3); }); })
  .on('timeout', () => { console.error('timeout'); process.exit(2); })
  .on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
`;

/** An HTTP GET from inside the test's namespace. */
async function httpGet(url: string): Promise<string> {
  const r = await run([process.execPath, '-e', HTTP_GET, url], { netns: hostNs, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`GET ${url}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

function leftovers(id: string, ips: string[]): Promise<NetworkLeftovers> {
  return findLeftovers({ sandboxId: id, containerId: id, networks: [list], env, ips });
}

/** Every vrun namespace and tap in the test's namespace, for the before/after lists. */
async function inventory(): Promise<string> {
  const links = await run(['ip', '-o', 'link', 'show'], { netns: hostNs });
  const rules = await run(['iptables-save'], { netns: hostNs });
  return [`netns: ${listVrunNetns().filter((n) => n.length === 32).join(' ')}`, links.stdout.replace(/^\d+: /gm, '').split('\n').map((l) => l.split(':')[0]).join(' '), `rules: ${rules.stdout.split('\n').filter((l) => l.startsWith('-A')).length}`].join('\n');
}

beforeAll(async () => {
  await ensureGuestImage();
  hostNs = await createNetns(hostId);
  mkdirSync(confDir, { recursive: true });
  // The default network as vrun writes it, with host-local's files in the test's directory.
  list = defaultNetworkConfList({ dataDir: path.join(work, 'ipam') });
  writeFileSync(path.join(confDir, '10-vrun.conflist'), JSON.stringify(list));
  // A network whose bridge plugin fails on ADD: its IPAM subnet is not a subnet.
  const broken = { ...list, name: 'broken', plugins: [{ type: 'bridge', bridge: 'vrunbad0', ipam: { type: 'host-local', dataDir: path.join(work, 'ipam'), ranges: [[{ subnet: '10.91.0.0/33' }]] } }] };
  writeFileSync(path.join(confDir, '20-broken.conflist'), JSON.stringify(broken));
  env = { ...defaultCniEnv(), confDir, runIn: hostNs };
}, 900_000);

afterAll(async () => {
  const ps = await vrun(['ps', '-aq']);
  for (const id of ps.stdout.split('\n').filter(Boolean)) await vrun(['rm', '-f', id]);
  if (hostNs) await deleteNetns(hostId).catch(() => undefined);
  removeRunDir(runDir);
  rmSync(work, { recursive: true, force: true });
});

describe('vrun run with a network (QEMU TCG)', () => {
  let server = '';
  let client = '';
  let serverIp = '';
  let clientIp = '';

  it('starts two containers on the default bridge, with -p, --dns, --add-host and --hostname', async () => {
    const before = await inventory();
    console.log(`before:\n${before}`);
    server = (
      await vrunOk(['run', '-d', '-p', `${HOST_PORT}:80`, 'busybox', 'sh', '-c', `mkdir -p /srv && printf '${PAGE.replace('\n', '\\n')}' > /srv/index.html && exec httpd -f -p 80 -h /srv`])
    ).trim();
    client = (await vrunOk(['run', '-d', '--dns', '10.90.77.1', '--dns-search', 'pods.test', '--add-host', 'db.test:10.90.77.2', '--hostname', 'web-1', 'busybox', 'sleep', '600'])).trim();
    const [s, c] = [await inspect(server), await inspect(client)];
    serverIp = s.NetworkSettings.IPAddress;
    clientIp = c.NetworkSettings.IPAddress;
    expect(serverIp).toMatch(/^10\.90\.\d+\.\d+$/);
    expect(clientIp).toMatch(/^10\.90\.\d+\.\d+$/);
    expect(serverIp).not.toBe(clientIp);
    expect(s.NetworkSettings.Ports['80/tcp']).toEqual([{ HostIp: '0.0.0.0', HostPort: String(HOST_PORT) }]);
    const ps = await vrunOk(['ps']);
    expect(ps).toContain(`0.0.0.0:${HOST_PORT}->80/tcp`);
  });

  it('the guest has the address CNI gave, and the containers reach each other by IP', async () => {
    const addr = await vrunOk(['exec', client, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
    expect(addr).toContain(`inet ${clientIp}/16`);
    // busybox nc, not wget: Debian 12's static busybox wget segfaults (exit 139) on the host too.
    const got = await vrunOk(['exec', client, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 20 ${serverIp} 80`]);
    expect(got).toMatch(/^HTTP\/1\.[01] 200 OK/);
    expect(got.endsWith(`\r\n\r\n${PAGE}`)).toBe(true);
  });

  it('-p serves the container\'s port on 127.0.0.1 and the container IP serves it too, from the host side', async () => {
    expect(await httpGet(`http://127.0.0.1:${HOST_PORT}/`)).toBe(PAGE);
    expect(await httpGet(`http://${serverIp}/`)).toBe(PAGE);
  });

  it('--dns, --dns-search, --add-host and --hostname are what the container sees', async () => {
    const resolv = await vrunOk(['exec', client, 'cat', '/etc/resolv.conf']);
    expect(resolv).toContain('nameserver 10.90.77.1');
    expect(resolv).toContain('search pods.test');
    const hosts = await vrunOk(['exec', client, 'cat', '/etc/hosts']);
    expect(hosts).toMatch(/^10\.90\.77\.2\s+db\.test$/m);
    expect(hosts).toMatch(new RegExp(`^${clientIp.replace(/\./g, '\\.')}\\s+web-1$`, 'm'));
    expect((await vrunOk(['exec', client, 'hostname'])).trim()).toBe('web-1');
    expect((await vrunOk(['exec', client, 'cat', '/etc/hostname'])).trim()).toBe('web-1');
  });

  it('vrun rm -f leaves no tap, veth, namespace, rule, tc filter or IP allocation behind', async () => {
    const during = await leftovers(server, [serverIp]);
    console.log(`server while running: ${describeLeftovers(during)}`);
    expect(during.netns.length).toBe(1);
    expect(during.taps.length).toBe(1);
    expect(during.ipAllocations.length).toBe(1);
    expect(during.rules.length).toBeGreaterThan(0);
    await vrunOk(['rm', '-f', server]);
    const after = await leftovers(server, [serverIp]);
    expect(isClean(after), describeLeftovers(after)).toBe(true);
    await expect(httpGet(`http://127.0.0.1:${HOST_PORT}/`)).rejects.toThrow(/ECONNREFUSED|timeout/);
  });

  it('after kill -9 of the sandbox process, vrun rm still releases everything', async () => {
    const pid = (await inspect(client)).Sandbox.Pids.sandbox;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid as number, 'SIGKILL');
    for (let i = 0; i < 100 && isAlive(pid as number); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await leftovers(client, [clientIp])).ipAllocations.length).toBe(1);
    await vrunOk(['rm', '-f', client]);
    const after = await leftovers(client, [clientIp]);
    expect(isClean(after), describeLeftovers(after)).toBe(true);
    console.log(`after:\n${await inventory()}`);
  });

  it('--network none has only loopback', async () => {
    const r = await vrun(['run', '--rm', '--network', 'none', 'busybox', 'ip', '-o', 'link', 'show']);
    expect(r.status, r.stderr).toBe(0);
    const links = r.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1]?.trim());
    expect(links).toEqual(['lo']);
  });

  it('vrun network ls lists what --network accepts', async () => {
    const out = await vrunOk(['network', 'ls']);
    expect(out).toMatch(/^vrun \(bridge\)\s+bridge\s+10\.90\.0\.0\/16/m);
    expect(out).toMatch(/^broken\s+bridge/m);
    expect(out).toMatch(/^none\s+null/m);
  });
});

describe('bad network input: exit 125, one line, nothing left behind', () => {
  async function refused(args: string[], message: RegExp): Promise<void> {
    const before = { ps: await vrunOk(['ps', '-aq']), netns: listVrunNetns().sort() };
    const r = await vrun(['run', '-d', ...args, 'busybox', 'true']);
    expect(r.status, r.stderr).toBe(125);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(await vrunOk(['ps', '-aq'])).toBe(before.ps);
    expect(listVrunNetns().sort()).toEqual(before.netns);
  }

  it('-p 99999:80', () => refused(['-p', '99999:80'], /-p 99999:80: host port 99999 is out of range/));
  it('-p abc', () => refused(['-p', 'abc'], /-p abc: container port "abc" is not a number/));
  it('--network nosuch', () => refused(['--network', 'nosuch'], /network "nosuch" not found/));
  it('a host port already taken', async () => {
    const holder = await tcpServer(hostNs, HOST_PORT + 1, 'taken');
    try {
      await refused(['-p', `${HOST_PORT + 1}:80`], new RegExp(`host port ${HOST_PORT + 1}/tcp is already in use`));
    } finally {
      holder.stop();
    }
  });
  it('a CNI plugin that fails', async () => {
    await refused(['--network', 'broken'], /CNI plugin "bridge" ADD failed/);
    // No veth is left in the test's namespace (bridges stay, as CNI bridges do: the network's, not the pod's).
    expect((await run(['ip', '-o', 'link', 'show', 'type', 'veth'], { netns: hostNs })).stdout.trim()).toBe('');
  });
});
