/** The shim's pure parts: containerd's flags, runtime options, and the bundle spec the guest gets. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseShimFlags } from '../../src/shim/flags.js';
import { guestSpecFromBundle, parseExecProcess } from '../../src/shim/guest-spec.js';
import { groupIdOf, podDirFor } from '../../src/shim/pod-paths.js';
import { RuntimeOptions, parseShimConfig, podVmConfigFrom } from '../../src/shim/runtime-options.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';

const baseSpec = {
  ociVersion: '1.0.2',
  process: { args: ['sh'], cwd: '/', env: ['PATH=/bin'], apparmorProfile: 'cri-containerd.apparmor.d' },
  root: { path: 'rootfs' },
  hooks: { prestart: [{ path: '/usr/bin/host-hook' }] },
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
    { destination: '/data', source: '/srv/data', options: ['bind'] },
  ],
  linux: {
    cgroupsPath: '/k8s/pod1/c1',
    mountLabel: 'x',
    namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }, { type: 'mount' }],
  },
};

describe('containerd shim flags', () => {
  it('reads Go-style flags and the action', () => {
    const f = parseShimFlags(['-namespace', 'k8s.io', '-address=/run/c.sock', '--publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start']);
    expect(f).toMatchObject({ namespace: 'k8s.io', address: '/run/c.sock', publishBinary: '/usr/bin/containerd', id: 'abc', debug: true, action: 'start' });
    expect(parseShimFlags(['-id', 'x', '-bundle', '/b', 'delete'])).toMatchObject({ bundle: '/b', action: 'delete' });
  });

  it('names an unknown flag and a missing value', () => {
    expect(() => parseShimFlags(['-bogus', 'start'])).toThrow(/unknown flag -bogus/);
    expect(() => parseShimFlags(['-id'])).toThrow(/-id needs a value/);
  });
});

describe('pod grouping', () => {
  it('puts a CRI container in its sandbox\'s pod, and anything else in its own', () => {
    expect(groupIdOf('c1', { 'io.kubernetes.cri.sandbox-id': 'pod1' })).toBe('pod1');
    expect(groupIdOf('c1', {})).toBe('c1');
    expect(podDirFor('k8s.io', 'pod1')).toBe(podDirFor('k8s.io', 'pod1'));
    expect(podDirFor('k8s.io', 'pod1')).not.toBe(podDirFor('other', 'pod1'));
  });
});

describe('guest spec from a bundle config.json', () => {
  it('drops what names the host and lists the host bind mounts', () => {
    const g = guestSpecFromBundle(JSON.stringify(baseSpec));
    expect(g.spec.hooks).toBeUndefined();
    expect(g.spec.process.apparmorProfile).toBeUndefined();
    const linux = g.spec.linux as { namespaces: { type: string }[]; cgroupsPath?: string; mountLabel?: string };
    expect(linux.namespaces.map((n) => n.type)).toEqual(['pid', 'mount']);
    expect(linux.cgroupsPath).toBeUndefined();
    expect(linux.mountLabel).toBeUndefined();
    expect(g.binds).toEqual([
      { index: 1, source: '/etc/hosts', readonly: true },
      { index: 2, source: '/srv/data', readonly: false },
    ]);
  });

  it('hands a CRI sandbox\'s hostname and sysctls to the pod (the guest), and refuses what a VM cannot honour', () => {
    const sandbox = (linux: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ ...baseSpec, hostname: 'web-0', annotations: { 'io.kubernetes.cri.container-type': 'sandbox' }, linux: { ...baseSpec.linux, ...linux }, ...extra });
    const withIpc = { namespaces: [...baseSpec.linux.namespaces, { type: 'ipc' }], sysctl: { 'kernel.shm_rmid_forced': '1', 'kernel.msgmax': '65536' } };
    const g = guestSpecFromBundle(sandbox(withIpc));
    // The network namespace CRI's CNI made goes to the pod too: the shim joins its interfaces to the VM.
    expect(g.pod).toEqual({ hostname: 'web-0', sysctls: { 'kernel.shm_rmid_forced': '1', 'kernel.msgmax': '65536' }, netns: '/var/run/netns/cni-1' });
    expect((g.spec.linux as { sysctl?: unknown }).sysctl).toBeUndefined();
    // An app container of the pod: nothing pod-level, nothing refused for lacking namespaces.
    expect(guestSpecFromBundle(JSON.stringify(baseSpec)).pod).toBeUndefined();
    const nsWithout = (type: string) => withIpc.namespaces.filter((n) => n.type !== type);
    expect(() => guestSpecFromBundle(sandbox({ namespaces: nsWithout('network') }))).toThrow(/pod with hostNetwork: true/);
    expect(() => guestSpecFromBundle(sandbox({ namespaces: nsWithout('pid') }))).toThrow(/pod with hostPID: true/);
    expect(() => guestSpecFromBundle(sandbox({ namespaces: nsWithout('ipc') }))).toThrow(/pod with hostIPC: true/);
    const relativeNetns = withIpc.namespaces.map((n) => (n.type === 'network' ? { type: 'network', path: 'netns/cni-1' } : n));
    expect(() => guestSpecFromBundle(sandbox({ namespaces: relativeNetns }))).toThrow(/network namespace path must be absolute/);
    const shared = { mounts: [{ destination: '/mnt/out', type: 'bind', source: '/srv/out', options: ['rbind', 'rshared'] }] };
    expect(() => guestSpecFromBundle(JSON.stringify({ ...baseSpec, ...shared }))).toThrow(/Bidirectional on \/mnt\/out/);
  });

  it('names what is malformed', () => {
    const bad = (patch: Record<string, unknown>) => () => guestSpecFromBundle(JSON.stringify({ ...baseSpec, ...patch }));
    expect(() => guestSpecFromBundle('{nope')).toThrow(/bundle config.json: not valid JSON/);
    expect(bad({ process: { args: [], cwd: '/' } })).toThrow(/process.args must be a non-empty array/);
    expect(bad({ process: { args: ['sh'], cwd: 'rel' } })).toThrow(/process.cwd must be an absolute path/);
    expect(bad({ mounts: [{ destination: '/x', type: 'bind', source: 'relative', options: ['rbind'] }] })).toThrow(/bind mount without an absolute source/);
    try {
      bad({ linux: 'x' })();
    } catch (err) {
      expect(err).toBeInstanceOf(TtrpcError);
      expect((err as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
    }
    expect(() => parseExecProcess(new TextEncoder().encode('{"args":"sh"}'))).toThrow(/exec process spec.args/);
  });
});

describe('runtime options', () => {
  it('defaults without options, reads a config file named by runtimeoptions.v1.Options', async () => {
    expect(await podVmConfigFrom(undefined)).toEqual({ vmm: 'auto', memoryMiB: 512, vcpus: 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimopts-'));
    const file = path.join(dir, 'shim.json');
    fs.writeFileSync(file, JSON.stringify({ vmm: 'qemu-tcg', memoryMiB: 768, vcpus: 2 }));
    const any = { typeUrl: RuntimeOptions.typeName, value: RuntimeOptions.encode({ configPath: file }) };
    expect(await podVmConfigFrom(any)).toEqual({ vmm: 'qemu-tcg', memoryMiB: 768, vcpus: 2 });
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses unknown keys, bad values and other runtimes\' options', async () => {
    expect(() => parseShimConfig('{"vmm":"qemu","turbo":1}', 'f.json')).toThrow(/unknown option\(s\) "turbo"/);
    expect(() => parseShimConfig('{"vmm":"bochs"}', 'f.json')).toThrow(/invalid "vmm" "bochs"/);
    expect(() => parseShimConfig('{"memoryMiB":1}', 'f.json')).toThrow(/"memoryMiB" must be an integer in 128..65536/);
    await expect(podVmConfigFrom({ typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array([0x0a, 0x01, 0x41]) })).rejects.toThrow(/unsupported options type "containerd.runc.v1.Options"/);
    const missing = { typeUrl: RuntimeOptions.typeName, value: RuntimeOptions.encode({ configPath: '/nonexistent/shim.json' }) };
    await expect(podVmConfigFrom(missing)).rejects.toThrow(/cannot read the config file \/nonexistent\/shim.json/);
  });
});
