/**
 * Kubernetes' path: a CRI v1 client drives containerd 1.6 with the runtime handler `vrun`. The pod's
 * sandbox boots one VM; both containers of the pod join it through the same shim (same guest boot id,
 * not the host's); ExecSync, ContainerStats and the CRI log files work; stopping and removing the pod
 * leaves no VM, virtiofsd or mount behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { mountsUnder, processesNaming } from '../sandbox/leftovers.js';
import { IMAGE } from './cri-fixture.js';
import { useCriTestRun } from './cri-test-run.js';

interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

describe('a pod through CRI with the vrun runtime handler', () => {
  const cri = useCriTestRun('vrun-crirun-');
  const sandboxConfig = () => ({
    metadata: { name: 'vrun-pod', uid: 'uid-vrun-pod', namespace: 'default', attempt: 0 },
    hostname: 'vrun-pod',
    logDirectory: cri.env.logDir,
    linux: {},
  });

  it('runs two containers in one VM, execs into them, reports stats and logs, then cleans up', async () => {
    const diag = () => cri.env.log().slice(-3000);
    // Where an exec's odd exit code comes from: crun (its stderr), the agent (its warnings reach the pod's
    // console, e.g. an exit status it lost) or the shim (a Wait it gave up on, in shim.log).
    const guestDiag = (r: ExecResult) => {
      const shimDir = path.join(cri.runDir, 'shim');
      const pods = fs.existsSync(shimDir) ? fs.readdirSync(shimDir) : [];
      const tail = (name: string, keep: (line: string) => boolean) => {
        const file = pods.length === 1 ? path.join(shimDir, pods[0] ?? '', name) : '';
        if (!file || !fs.existsSync(file)) return `(no ${name})`;
        return fs.readFileSync(file, 'utf8').split('\n').filter(keep).join('\n').slice(-3000);
      };
      return `stderr: ${r.stderr.toString()}\nguest console:\n${tail('console.log', () => true)}\nshim warnings:\n${tail('shim.log', (l) => /"level":(40|50|60)/.test(l))}`;
    };
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config: sandboxConfig(), runtimeHandler: 'vrun' }).catch((err: Error) => {
      throw new Error(`${err.message}\n${diag()}`);
    });
    cri.podId = sandbox.podSandboxId;
    expect(cri.podId).toMatch(/^[0-9a-f]{64}$/);

    const ids: string[] = [];
    for (const name of ['c1', 'c2']) {
      const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
        podSandboxId: cri.podId,
        config: { metadata: { name }, image: { image: IMAGE }, command: ['sh', '-c', `echo hello-from-${name}; exec sleep 100000`], logPath: `${name}.log` },
        sandboxConfig: sandboxConfig(),
      });
      await cri.env.call('StartContainer', { containerId: created.containerId });
      ids.push(created.containerId);
    }
    // One shim, one VM for the whole pod.
    expect(fs.readdirSync(path.join(cri.runDir, 'shim'))).toHaveLength(1);

    const bootIds: string[] = [];
    for (const id of ids) {
      const r = await cri.env.call<ExecResult>('ExecSync', { containerId: id, cmd: ['cat', '/proc/sys/kernel/random/boot_id'], timeout: 120 });
      expect(r.exitCode, guestDiag(r)).toBe(0);
      bootIds.push(r.stdout.toString().trim());
    }
    expect(bootIds[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(bootIds[1]).toBe(bootIds[0]);
    expect(bootIds[0]).not.toBe(fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    const failing = await cri.env.call<ExecResult>('ExecSync', { containerId: ids[0], cmd: ['sh', '-c', 'echo oops >&2; exit 7'], timeout: 120 });
    expect(failing.exitCode, guestDiag(failing)).toBe(7);
    expect(failing.stderr.toString()).toContain('oops');

    const stats = await cri.env.call<{ stats: { memory: { workingSetBytes: { value: number } | null } | null; cpu: { usageCoreNanoSeconds: { value: number } | null } | null } }>('ContainerStats', { containerId: ids[0] });
    expect(stats.stats.memory?.workingSetBytes?.value ?? 0).toBeGreaterThan(0);
    expect(stats.stats.cpu?.usageCoreNanoSeconds?.value ?? 0).toBeGreaterThan(0);

    // CRI log format: "<RFC3339Nano time> stdout F <line>"
    const log = fs.readFileSync(path.join(cri.env.logDir, 'c1.log'), 'utf8');
    expect(log).toMatch(/^\S+ stdout F hello-from-c1$/m);

    await cri.env.call('StopPodSandbox', { podSandboxId: cri.podId });
    await cri.env.call('RemovePodSandbox', { podSandboxId: cri.podId });
    const deadline = Date.now() + 60_000;
    while ((processesNaming(path.join(cri.runDir, 'shim')).length > 0 || fs.readdirSync(path.join(cri.runDir, 'shim')).length > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(processesNaming(path.join(cri.runDir, 'shim'))).toEqual([]);
    expect(mountsUnder(cri.runDir)).toEqual([]);
    expect(fs.readdirSync(path.join(cri.runDir, 'shim'))).toEqual([]);
  });

  const endPod = () => cri.endPod();
  afterEach(() => endPod().catch(() => undefined));

  it('kubectl exec -it: CRI Exec with a terminal and stdin, over the streaming server, into a container with a CRI id', async () => {
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config: sandboxConfig(), runtimeHandler: 'vrun' });
    cri.podId = sandbox.podSandboxId;
    const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: cri.podId,
      config: { metadata: { name: 'exec-it' }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: 'exec-it.log' },
      sandboxConfig: sandboxConfig(),
    });
    expect(created.containerId).toMatch(/^[0-9a-f]{64}$/);
    await cri.env.call('StartContainer', { containerId: created.containerId });
    const { url } = await cri.env.call<{ url: string }>('Exec', { containerId: created.containerId, cmd: ['sh', '-c', 'tty; read line; echo got:$line'], tty: true, stdin: true, stdout: true, stderr: false });
    // kubectl's websocket flavour of the streaming protocol: one channel byte (0 stdin, 1 stdout, 3 status)
    // before each message. The streaming server listens on loopback in containerd's network namespace.
    const target = new URL(url);
    const seen = await new Promise<{ stdout: string; status: string }>((resolve, reject) => {
      const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v4.channel.k8s.io'], { createConnection: () => cri.env.connect(target.hostname, Number(target.port)) });
      let stdout = '';
      let status = '';
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`exec -it did not end; stdout so far: ${JSON.stringify(stdout)}`));
      }, 120_000);
      ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello\n')])));
      ws.on('message', (data: Buffer) => {
        if (data[0] === 1) stdout += data.subarray(1).toString();
        if (data[0] === 3) status += data.subarray(1).toString();
      });
      ws.on('close', () => {
        clearTimeout(timer);
        resolve({ stdout, status });
      });
      ws.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    expect(seen.stdout, JSON.stringify(seen)).toMatch(/\/dev\/pts\/\d+/);
    expect(seen.stdout).toContain('got:hello');
    expect(seen.status).toContain('Success');
    await endPod();
  });

  it('gives every container the pod\'s hostname and sysctls, "unsafe" ones too: the pod has its own kernel', async () => {
    const config = {
      ...sandboxConfig(),
      metadata: { name: 'vrun-settings', uid: 'uid-vrun-settings', namespace: 'default', attempt: 0 },
      hostname: 'settings-host',
      linux: { sysctls: { 'kernel.shm_rmid_forced': '1', 'kernel.msgmax': '12345' } },
    };
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler: 'vrun' });
    cri.podId = sandbox.podSandboxId;
    const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: cri.podId,
      config: { metadata: { name: 'app' }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: 'settings-app.log' },
      sandboxConfig: config,
    });
    await cri.env.call('StartContainer', { containerId: created.containerId });
    const r = await cri.env.call<ExecResult>('ExecSync', {
      containerId: created.containerId,
      cmd: ['sh', '-c', 'hostname; cat /etc/hostname /proc/sys/kernel/shm_rmid_forced /proc/sys/kernel/msgmax'],
      timeout: 120,
    });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString().split('\n')).toEqual(['settings-host', 'settings-host', '1', '12345', '']);
    await endPod();
  });

  it('gives a privileged container, and one with NET_ADMIN added, the guest kernel\'s bridges and tun; without NET_ADMIN the kernel says no', async () => {
    const config = {
      ...sandboxConfig(),
      metadata: { name: 'vrun-privileged', uid: 'uid-vrun-privileged', namespace: 'default', attempt: 0 },
      linux: { securityContext: { privileged: true } },
    };
    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler: 'vrun' });
    cri.podId = sandbox.podSandboxId;
    const container = async (name: string, securityContext: Record<string, unknown>) => {
      const created = await cri.env.call<{ containerId: string }>('CreateContainer', {
        podSandboxId: cri.podId,
        config: { metadata: { name }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: `${name}.log`, linux: { securityContext } },
        sandboxConfig: config,
      });
      await cri.env.call('StartContainer', { containerId: created.containerId });
      return created.containerId;
    };
    const sh = (id: string, script: string) => cri.env.call<ExecResult>('ExecSync', { containerId: id, cmd: ['sh', '-c', script], timeout: 120 });
    const capEff = async (id: string) => BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec((await sh(id, 'cat /proc/self/status')).stdout.toString())?.[1] ?? '0'}`);

    const bit = (...caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);
    const privileged = await container('privileged', { privileged: true });
    const p = await sh(privileged, 'busybox brctl addbr br-x && busybox ip link set br-x up && busybox tunctl -t tap-x && busybox ip link show tap-x && echo privileged-ok');
    expect(p.exitCode, `${p.stdout}${p.stderr}`).toBe(0);
    expect(p.stdout.toString()).toContain('privileged-ok');
    // Every capability containerd grants a privileged container: those of its own process (all of them on an
    // ordinary host; this one withholds CAP_SYS_RESOURCE from everything), within the guest kernel's 0..40.
    const hostCaps = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`);
    expect(await capEff(privileged)).toBe(hostCaps & ((1n << 41n) - 1n));
    expect(await capEff(privileged)).toBeGreaterThan(bit(0, 1, 3, 4, 5, 6, 7, 8, 10, 12, 13, 18, 21, 27, 29, 31));

    const netAdmin = await container('net-admin', { capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['CHOWN'] } });
    const n = await sh(netAdmin, 'busybox brctl addbr br-y && busybox ip link set br-y up && echo net-admin-ok');
    expect(n.exitCode, `${n.stdout}${n.stderr}`).toBe(0);
    // containerd's default set, less CHOWN, plus NET_ADMIN: exactly.
    const defaults = bit(0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31);
    expect(await capEff(netAdmin)).toBe((defaults & ~bit(0)) | bit(12));

    const plain = await container('plain', {});
    const r = await sh(plain, 'busybox brctl addbr br-z');
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout.toString() + r.stderr.toString()).toMatch(/Operation not permitted/);

    await endPod();
  });

  it('refuses hostNetwork, hostPID and hostIPC by name instead of running the pod with another meaning', async () => {
    for (const [field, option] of [['hostNetwork', 'network'], ['hostPID', 'pid'], ['hostIPC', 'ipc']] as const) {
      const config = {
        ...sandboxConfig(),
        metadata: { name: `vrun-${option}`, uid: `uid-vrun-${option}`, namespace: 'default', attempt: 0 },
        linux: { securityContext: { namespaceOptions: { [option]: 'NODE' } } },
      };
      const err = await cri.env.call('RunPodSandbox', { config, runtimeHandler: 'vrun' }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message, `${field} was not refused`).toContain(`pod with ${field}: true`);
    }
    expect(processesNaming(path.join(cri.runDir, 'shim'))).toEqual([]);
  });
});
