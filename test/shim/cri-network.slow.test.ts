/**
 * Pod networking through CRI (containerd 1.6, a bridge CNI config, the runtime handler `vrun`): containerd's
 * CNI gives each pod a veth in its network namespace, the shim joins it to the VM with a tap and tc
 * redirects, and the guest gets the veth's MAC and address. Two pods reach each other; the pod IP the CRI
 * reports is the guest's; CRI PortForward reaches busybox httpd on the guest's loopback; and after the pods
 * are removed nothing the network made survives.
 *
 * Safety: containerd runs in the fixture's own network namespace (see cri-fixture.ts), so its bridge, the pod
 * veths' host ends and its streaming server never touch the host's; every packet stays between the pods.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../src/network/exec.js';
import type { PodNetworkRecord } from '../../src/shim/pod-network.js';
import { processesNaming } from '../sandbox/leftovers.js';
import { IMAGE } from './cri-fixture.js';
import { useCriTestRun } from './cri-test-run.js';
import { forwardOnce } from './port-forward-client.js';

interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

interface Pod {
  name: string;
  id: string;
  container: string;
  ip: string;
  network: PodNetworkRecord;
}

async function ok(cmd: string[], netns: string): Promise<string> {
  const r = await run(cmd, { netns });
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} in ${netns}: ${r.stderr}`);
  return r.stdout;
}

/** The host-side state a pod's network can leave: in the fixture's namespace and in the pod's own. */
async function fixtureState(netns: string, ipamDir: string): Promise<{ veths: string[]; rules: string; ipam: string[] }> {
  const links = JSON.parse(await ok(['ip', '-j', '-d', 'link', 'show'], netns)) as { ifname: string; linkinfo?: { info_kind?: string } }[];
  const rules = (await ok(['iptables-save'], netns)) + (await ok(['ip6tables-save'], netns));
  const ipam = fs.existsSync(ipamDir) ? fs.readdirSync(ipamDir).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')) : [];
  return { veths: links.filter((l) => l.linkinfo?.info_kind === 'veth').map((l) => l.ifname), rules: rules.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, ''), ipam };
}

/** Every process whose network namespace is `ino`. */
function processesInNetns(ino: number): number[] {
  const out: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/net`) === `net:[${ino}]`) out.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('pod networking through CRI with the vrun runtime handler', () => {
  const cri = useCriTestRun('vrun-crinet-');
  const pods: Pod[] = [];
  const config = (name: string) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    hostname: name,
    logDirectory: cri.env.logDir,
    linux: {},
  });
  const exec = (container: string, script: string) => cri.env.call<ExecResult>('ExecSync', { containerId: container, cmd: ['sh', '-c', script], timeout: 300 });
  const shimLogs = () =>
    fs
      .readdirSync(path.join(cri.runDir, 'shim'))
      .map((d) => path.join(cri.runDir, 'shim', d, 'shim.log'))
      .filter((f) => fs.existsSync(f))
      .map((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => /"level":(40|50|60)/.test(l)).join('\n'))
      .join('\n')
      .slice(-3000);

  async function startPod(name: string): Promise<Pod> {
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config: config(name), runtimeHandler: 'vrun' }).catch((err: Error) => {
      throw new Error(`${err.message}\n${cri.env.log().slice(-2000)}\n${shimLogs()}`);
    });
    const pod: Pod = { name, id: sandbox.podSandboxId, container: '', ip: '', network: { netns: '', nics: [] } };
    pods.push(pod);
    const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: pod.id,
      config: {
        metadata: { name: 'web' },
        image: { image: IMAGE },
        command: ['sh', '-c', `mkdir -p /www && echo hello-from-${name} > /www/index.html && exec busybox httpd -f -p 80 -h /www`],
        logPath: `${name}-web.log`,
      },
      sandboxConfig: config(name),
    });
    pod.container = created.containerId;
    await cri.env.call('StartContainer', { containerId: pod.container });
    const status = await cri.env.call<{ status: { network: { ip: string } | null } }>('PodSandboxStatus', { podSandboxId: pod.id });
    pod.ip = status.status.network?.ip ?? '';
    // What the shim made in the pod's namespace, as it recorded it for a cleanup after a crash.
    const records = fs
      .readdirSync(path.join(cri.runDir, 'shim'))
      .map((d) => path.join(cri.runDir, 'shim', d, 'network.json'))
      .filter((f) => fs.existsSync(f))
      .map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as PodNetworkRecord);
    const known = new Set(pods.map((p) => p.network.netns));
    pod.network = records.find((r) => !known.has(r.netns)) ?? pod.network;
    return pod;
  }

  afterAll(async () => {
    for (const p of pods) {
      await cri.env.call('StopPodSandbox', { podSandboxId: p.id }, 120_000).catch(() => undefined);
      await cri.env.call('RemovePodSandbox', { podSandboxId: p.id }, 120_000).catch(() => undefined);
    }
  });

  it('two pods reach each other at the IPs the CRI reports, which are the guests\' own; port-forward reaches httpd; removal leaves nothing', async () => {
    const ipamDir = path.join(cri.env.dir, 'ipam', 'vrun-test');
    const before = await fixtureState(cri.env.netns, ipamDir);
    const a = await startPod('net-a');
    const b = await startPod('net-b');
    expect(fs.readdirSync(path.join(cri.runDir, 'shim'))).toHaveLength(2);

    // The CRI's pod IPs: from the fixture's subnet, one per pod, each held by host-local.
    const subnetPrefix = /^10\.\d+\./;
    for (const p of [a, b]) {
      expect(p.ip, p.name).toMatch(subnetPrefix);
      expect(fs.existsSync(path.join(ipamDir, p.ip)), `${p.ip} allocated`).toBe(true);
    }
    expect(a.ip).not.toBe(b.ip);

    // Each guest has its pod's IP on the NIC with the veth's MAC.
    for (const p of [a, b]) {
      const r = await exec(p.container, 'busybox ip -o addr show; busybox ip -o link show');
      expect(r.exitCode, r.stderr.toString()).toBe(0);
      const out = r.stdout.toString();
      const guestIps = [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/\d+/g)].map((m) => m[1]).filter((ip) => ip !== '127.0.0.1');
      expect(guestIps, out).toEqual([p.ip]);
      const vethMac = (JSON.parse(await ok(['ip', '-j', 'link', 'show', 'dev', p.network.nics[0]?.veth ?? 'eth0'], p.network.netns)) as { address: string }[])[0]?.address;
      expect(out).toContain(`link/ether ${vethMac}`);
    }

    // The shim's side in each pod namespace: a tap next to the CNI veth, tc redirects both ways, the port-forward rule.
    for (const p of [a, b]) {
      expect(p.network.netns, `no network record for ${p.name}`).toMatch(/^\//);
      expect(p.network.nics).toHaveLength(1);
      const nic = p.network.nics[0] ?? { veth: '', tap: '' };
      expect(await ok(['ip', '-o', 'link', 'show', 'dev', nic.tap], p.network.netns)).toContain(nic.tap);
      for (const dev of [nic.veth, nic.tap]) expect(await ok(['tc', 'filter', 'show', 'dev', dev, 'parent', 'ffff:'], p.network.netns)).toContain('mirred');
      expect(await ok(['iptables-save', '-t', 'nat'], p.network.netns)).toContain(`--comment vrun-port-forward -j REDIRECT --to-ports ${p.network.forwardPort}`);
    }

    // Pod to pod, both ways, through both bridges' veths and both VMs' NICs. httpd may still be starting: a few
    // tries. (Debian's static busybox wget crashes with its own -T, hence timeout(1).)
    const fetch = (from: Pod, to: Pod) => exec(from.container, `for i in 1 2 3 4 5; do busybox timeout 60 busybox wget -q -O - http://${to.ip}/index.html && exit 0; sleep 2; done; exit 1`);
    const ab = await fetch(a, b);
    expect(ab.exitCode, `${ab.stderr}\n${shimLogs()}`).toBe(0);
    expect(ab.stdout.toString()).toBe('hello-from-net-b\n');
    const ba = await fetch(b, a);
    expect(ba.exitCode, ba.stderr.toString()).toBe(0);
    expect(ba.stdout.toString()).toBe('hello-from-net-a\n');
    const ping = await exec(a.container, `busybox ping -c 2 -W 30 ${b.ip}`);
    expect(ping.exitCode, ping.stdout.toString() + ping.stderr.toString()).toBe(0);

    // CRI PortForward to port 80 of pod B: containerd dials 127.0.0.1:80 in the pod's namespace.
    const { url } = await cri.env.call<{ url: string }>('PortForward', { podSandboxId: b.id, port: [80] });
    const fwd = await forwardOnce(url, Buffer.from('GET /index.html HTTP/1.0\r\n\r\n'), cri.env.connect);
    const answer = fwd.data.toString();
    expect(fwd.ports).toEqual([80, 80]);
    expect(answer, `${fwd.error}\n${shimLogs()}`).toMatch(/^HTTP\/1\.[01] 200 OK\r\n/);
    expect(answer.endsWith('\r\n\r\nhello-from-net-b\n')).toBe(true);
    expect(fwd.error).toBe('');
    // A second one works as well (the listener and rule serve every connection of the pod).
    const again = await forwardOnce((await cri.env.call<{ url: string }>('PortForward', { podSandboxId: a.id, port: [80] })).url, Buffer.from('GET /index.html HTTP/1.0\r\n\r\n'), cri.env.connect);
    expect(again.data.toString()).toContain('hello-from-net-a');

    const inodes = [a, b].map((p) => fs.statSync(p.network.netns).ino);
    for (const p of [a, b]) {
      await cri.env.call('StopPodSandbox', { podSandboxId: p.id });
      await cri.env.call('RemovePodSandbox', { podSandboxId: p.id });
    }
    pods.length = 0;
    const deadline = Date.now() + 60_000;
    while (processesNaming(path.join(cri.runDir, 'shim')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(processesNaming(path.join(cri.runDir, 'shim'))).toEqual([]);

    // Nothing of the pods' networks survives: their namespaces (file and kernel object: no process is in them,
    // and the shim that held a socket there exited), the veths' host ends, rules, IP allocations.
    for (const [i, p] of [a, b].entries()) {
      expect(fs.existsSync(p.network.netns), p.network.netns).toBe(false);
      expect(processesInNetns(inodes[i] ?? 0)).toEqual([]);
    }
    const after = await fixtureState(cri.env.netns, ipamDir);
    expect(after.veths).toEqual(before.veths);
    expect(after.ipam).toEqual(before.ipam);
    expect(after.rules).toBe(before.rules);
    for (const p of [a, b]) expect(after.rules).not.toContain(p.ip);
  });
});
