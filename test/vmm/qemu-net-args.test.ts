import { afterEach, describe, expect, it } from 'vitest';
import { checkVmNets, type VmLaunch, type VmNet } from '../../src/vmm/backend.js';
import { jailerArgs } from '../../src/vmm/jail/argv.js';
import { launchQemu } from '../../src/vmm/qemu/backend.js';
import { qemuArgs, type QemuSpec } from '../../src/vmm/qemu/command.js';

/**
 * The pod network's part of the QEMU launch, without starting anything: what `nets` may hold, and what QEMU and
 * the jailer are told. test/vmm/qemu-net.slow.test.ts boots a guest on it.
 */

const NS = '/run/netns/vrun-pod1';
const nic = (over: Partial<VmNet> = {}): VmNet => ({ netns: NS, tap: 'tap_eth0', mac: '0a:58:0a:f4:00:05', mtu: 1450, ...over });

const base: QemuSpec = { kernel: '/k', cmdline: 'console=ttyS0', vcpus: 1, memoryMiB: 128, accel: 'tcg' };

function pairs(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
}

describe('checkVmNets', () => {
  it('accepts NICs in one namespace and returns it; none is no namespace', () => {
    expect(checkVmNets(undefined)).toBeUndefined();
    expect(checkVmNets([])).toBeUndefined();
    expect(checkVmNets([nic(), nic({ tap: 'tap_net1', mac: '0A:58:0A:F4:01:05', mtu: 9000 })])).toBe(NS);
  });

  it.each([
    ['NICs in two namespaces', [nic(), nic({ netns: '/run/netns/other', tap: 't2', mac: '02:00:00:00:00:02' })], /two network namespaces/],
    ['a relative namespace', [nic({ netns: 'run/netns/x' })], /not a plain absolute path/],
    ['a namespace with dot components', [nic({ netns: '/run/netns/../x' })], /not a plain absolute path/],
    ['a namespace with a comma', [nic({ netns: '/run/netns/a,b' })], /not a plain absolute path/],
    ['a tap name with a comma (QEMU option injection)', [nic({ tap: 'tap0,script=/x' })], /not a valid interface name/],
    ['a tap name longer than 15 characters', [nic({ tap: 'a'.repeat(16) })], /not a valid interface name/],
    ['a tap name with a slash', [nic({ tap: 'a/b' })], /not a valid interface name/],
    ['one tap twice', [nic(), nic({ mac: '02:00:00:00:00:02' })], /given twice/],
    ['a MAC with a comma', [nic({ mac: '0a:58:0a:f4:00:05,x=1' })], /not six colon-separated hex bytes/],
    ['a short MAC', [nic({ mac: '0a:58:0a:f4:00' })], /not six colon-separated hex bytes/],
    ['a multicast MAC', [nic({ mac: '01:00:5e:00:00:01' })], /multicast/],
    ['the zero MAC', [nic({ mac: '00:00:00:00:00:00' })], /not an address/],
    ['one MAC twice', [nic(), nic({ tap: 't2', mac: '0A:58:0A:F4:00:05' })], /given twice/],
    ['an MTU below 68', [nic({ mtu: 67 })], /MTU 67 .*outside 68-65535/],
    ['an MTU above 65535', [nic({ mtu: 65536 })], /outside 68-65535/],
    ['a fractional MTU', [nic({ mtu: 1500.5 })], /outside/],
    ['more NICs than microvm takes', Array.from({ length: 9 }, (_, i) => nic({ tap: `t${i}`, mac: `02:00:00:00:00:1${i}` })), /at most 8/],
  ])('refuses %s', (_what, nets, message) => {
    expect(() => checkVmNets(nets)).toThrow(message);
    try {
      checkVmNets(nets);
    } catch (err) {
      expect(err).toMatchObject({ kind: 'invalid' });
    }
  });
});

describe('qemuArgs with NICs', () => {
  it('gives each NIC a tap netdev without vhost and a virtio-mmio NIC with its MAC and MTU', () => {
    const args = qemuArgs({ ...base, nets: [{ fd: 3, mac: '0a:58:0a:f4:00:05', mtu: 1450 }, { ifname: 'tap1', mac: '02:00:00:00:00:02', mtu: 1500 }] });
    expect(pairs(args, '-netdev')).toEqual(['tap,id=net0,fd=3,vhost=off', 'tap,id=net1,ifname=tap1,script=no,downscript=no,vhost=off']);
    expect(pairs(args, '-device')).toEqual(
      expect.arrayContaining(['virtio-net-device,netdev=net0,mac=0a:58:0a:f4:00:05,host_mtu=1450', 'virtio-net-device,netdev=net1,mac=02:00:00:00:00:02,host_mtu=1500']),
    );
  });

  it('has no network device without NICs (QEMU adds none itself: -nodefaults)', () => {
    const args = qemuArgs(base);
    expect(args).toContain('-nodefaults');
    expect(args).not.toContain('-netdev');
    expect(pairs(args, '-device').filter((d) => d.startsWith('virtio-net'))).toEqual([]);
  });
});

describe('jailer arguments with a pod network', () => {
  it('joins the namespace and passes each tap as a --tap FD:NAME', () => {
    const args = jailerArgs({ uid: 7, gid: 7, root: '/r', netns: NS, taps: [{ fd: 3, name: 'tap_eth0' }, { fd: 4, name: 'tap_net1' }] }, '/usr/bin/qemu');
    expect(pairs(args, '--netns')).toEqual([NS]);
    expect(pairs(args, '--tap')).toEqual(['3:tap_eth0', '4:tap_net1']);
    expect(args.slice(args.indexOf('--'))).toEqual(['--', '/usr/bin/qemu']);
  });

  it('keeps a fresh empty namespace by default', () => {
    const args = jailerArgs({ uid: 7, gid: 7, root: '/r' }, '/usr/bin/qemu');
    expect(pairs(args, '--netns')).toEqual(['new']);
    expect(args).not.toContain('--tap');
  });
});

describe('launchQemu with a pod network', () => {
  const envWas = process.env.VRUN_JAIL;
  afterEach(() => {
    if (envWas === undefined) delete process.env.VRUN_JAIL;
    else process.env.VRUN_JAIL = envWas;
  });
  const launch = (nets: VmNet[]): VmLaunch => ({
    kernel: '/nonexistent/kernel',
    initrd: '/nonexistent/initrd',
    cmdline: '',
    vcpus: 1,
    memoryMiB: 128,
    runDir: '/nonexistent/run',
    agentSocket: '/nonexistent/run/agent.sock',
    shares: [],
    consoleLog: '/nonexistent/console.log',
    nets,
  });

  it('refuses invalid NICs before it touches anything', () => {
    expect(() => launchQemu({ backend: 'qemu', accel: 'tcg' }, launch([nic(), nic({ netns: '/run/netns/b', tap: 't2', mac: '02:00:00:00:00:02' })]))).toThrow(/two network namespaces/);
  });

  it('refuses a pod network for an unjailed QEMU, which would run outside the pod namespace', () => {
    process.env.VRUN_JAIL = '0';
    expect(() => launchQemu({ backend: 'qemu', accel: 'tcg' }, launch([nic()]))).toThrow(/VRUN_JAIL=0 cannot run a VM with a pod network/);
  });
});
