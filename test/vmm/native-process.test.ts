import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorKind, errorMessage } from '../../src/common/errors.js';
import { nativeAddonPath } from '../../src/common/native.js';
import { prepareVmmJail } from '../../src/vmm/jail/vmm-jail.js';
import { vmmBundlePath } from '../../src/vmm/native-backend.js';
import { parseLaunchSpec, type VmmLaunchSpec } from '../../src/vmm/native-process/launch-spec.js';
import { EVENTS_FD, lineSplitter, parseEvent } from '../../src/vmm/native-process/messages.js';
import { VmmChild } from '../../src/vmm/native-process/vmm-child.js';

/**
 * The native VMM's process without a VM (no /dev/kvm needed): its launch spec's checks, and that the sandbox
 * hears every way the process can end (a refused spec, a machine that cannot be made, a kill) as the VM's end,
 * never a hang. The process is the real bundle (dist/vmm/vmm.cjs), run by node directly and through the jailer.
 * Booting it is test/cli/run-native.slow.test.ts's job (the KVM lab).
 */

let work: string;
const runDir = () => path.join(work, 'vm');

function goodSpec(): VmmLaunchSpec {
  return {
    kernel: '/boot/vmlinux',
    initrd: '/boot/initrd',
    cmdline: 'quiet',
    vcpus: 2,
    memoryMiB: 512,
    runDir: '/run/vrun/x/vm',
    agentSocket: '/run/vrun/x/vm/agent.sock',
    shares: [{ tag: 'vrun-root', socket: '/run/vrun/x/vm/fs0.sock' }],
    nets: [{ fd: 4, tap: 'tap0', mac: '02:00:00:00:00:01', mtu: 1500 }],
    userlandPmem: '/var/lib/vrun/guest-image/initrd-x/userland.ext4',
  };
}

function refusal(text: string): string {
  try {
    parseLaunchSpec(text);
  } catch (err) {
    expect(errorKind(err)).toBe('invalid');
    return errorMessage(err);
  }
  throw new Error(`accepted: ${text}`);
}

const withSpec = (change: (s: Record<string, unknown>) => void): string => {
  const s = goodSpec() as unknown as Record<string, unknown>;
  change(s);
  return JSON.stringify(s);
};

beforeAll(() => {
  work = fs.mkdtempSync('/run/vrun-native-process-');
  fs.mkdirSync(runDir(), { mode: 0o700 });
});

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

describe('the VMM launch spec', () => {
  it('takes a well-formed spec as it is', () => {
    expect(parseLaunchSpec(JSON.stringify(goodSpec()))).toEqual(goodSpec());
  });

  it.each([
    ['bad JSON', '{"kernel": ', /not JSON/],
    ['not an object', '[1, 2]', /the spec must be an object/],
    ['an unknown field', withSpec((s) => (s.extra = 1)), /unknown field "extra"/],
    ['vcpus as a string', withSpec((s) => (s.vcpus = '2')), /vcpus must be a whole number from 1 to 32, not "2"/],
    ['too little memory', withSpec((s) => (s.memoryMiB = 16)), /memoryMiB must be a whole number from 64/],
    ['a relative kernel', withSpec((s) => (s.kernel = 'boot/vmlinux')), /kernel "boot\/vmlinux" is not a plain absolute path/],
    ['a kernel path with ..', withSpec((s) => (s.kernel = '/boot/../etc/shadow')), /not a plain absolute path/],
    ['an agent socket outside the run directory', withSpec((s) => (s.agentSocket = '/etc/agent.sock')), /agentSocket \/etc\/agent.sock is outside the run directory \/run\/vrun\/x\/vm/],
    ['a share socket below the run directory', withSpec((s) => (s.shares = [{ tag: 'a', socket: '/run/vrun/x/vm/sub/fs.sock' }])), /shares\[0\].socket .* is outside the run directory/],
    ['a share tag too long', withSpec((s) => (s.shares = [{ tag: 'x'.repeat(37), socket: '/run/vrun/x/vm/fs.sock' }])), /is not a virtio-fs tag/],
    ['a tap on stdout', withSpec((s) => (s.nets = [{ fd: 1, tap: 'tap0', mac: '02:00:00:00:00:01', mtu: 1500 }])), /nets\[0\].fd must be a whole number from 3 to 255/],
    ['a multicast MAC', withSpec((s) => (s.nets = [{ fd: 4, tap: 'tap0', mac: '03:00:00:00:00:01', mtu: 1500 }])), /multicast/],
    ['two NICs on one fd', withSpec((s) => (s.nets = [{ fd: 4, tap: 'tap0', mac: '02:00:00:00:00:01', mtu: 1500 }, { fd: 4, tap: 'tap1', mac: '02:00:00:00:00:02', mtu: 1500 }])), /two NICs on one fd/],
    ['a relative userland image', withSpec((s) => (s.userlandPmem = 'userland.ext4')), /userlandPmem "userland.ext4" is not a plain absolute path/],
    ['a userland image that is not a path', withSpec((s) => (s.userlandPmem = 7)), /userlandPmem must be a path/],
    ['a control character in the command line', withSpec((s) => (s.cmdline = 'quiet\ninit=/bin/sh')), /cmdline must be printable ASCII/],
    ['a spec too large', JSON.stringify({ ...goodSpec(), cmdline: 'x'.repeat(70_000) }), /larger than 65536 bytes/],
  ])('refuses %s with an error naming it', (_what, text, why) => {
    expect(refusal(text)).toMatch(why);
  });
});

describe('the VMM events', () => {
  it('keeps only well-formed events, their text made printable and short', () => {
    expect(parseEvent('{"event":"started"}')).toEqual({ event: 'started' });
    expect(parseEvent('{"event":"end","end":{"kind":"exit","status":3}}')).toEqual({ event: 'end', end: { kind: 'exit', status: 3 } });
    expect(parseEvent('{"event":"end","end":{"kind":"exit","status":300}}')).toBeUndefined();
    expect(parseEvent('{"event":"end","end":{"kind":"sideways"}}')).toBeUndefined();
    expect(parseEvent('{"event":"diagnose","id":1,"state":[]}')).toBeUndefined();
    expect(parseEvent('not json')).toBeUndefined();
    const e = parseEvent(JSON.stringify({ event: 'end', end: { kind: 'panic', line: `\u001b[31m${'x'.repeat(5000)}` } }));
    expect(e?.event === 'end' && e.end.kind === 'panic' ? e.end.line : '').toMatch(/^\?\[31mx{995}$/);
  });

  it('splits lines with a bound, cutting a longer one once', () => {
    const got: [string, boolean][] = [];
    const feed = lineSplitter(8, (line, cut) => got.push([line, cut]));
    feed(Buffer.from('ab\ncdefghijklmn'));
    feed(Buffer.from('opq\nrs\n'));
    expect(got).toEqual([
      ['ab', false],
      ['cdefghij', true],
      ['rs', false],
    ]);
  });
});

describe('the VMM process', () => {
  const node = process.execPath;

  it('refuses a bad spec file with the reason, reported as the VM\'s end (status 2)', async () => {
    const file = path.join(work, 'bad.json');
    fs.writeFileSync(file, withSpec((s) => (s.agentSocket = '/etc/agent.sock')));
    const child = new VmmChild(node, [vmmBundlePath(), file], {});
    expect(await child.started).toBe(false);
    const end = await child.exited;
    expect(end.kind).toBe('error');
    expect(end.message).toMatch(/^the native VMM failed: invalid VMM launch spec: agentSocket \/etc\/agent.sock is outside the run directory/);
  });

  it('without a spec it says how it is used, and a spec it cannot read is named', async () => {
    const usage = await new VmmChild(node, [vmmBundlePath()], {}).exited;
    expect(usage.message).toBe('the native VMM failed: usage: vmm.cjs SPEC_FILE');
    const missing = await new VmmChild(node, [vmmBundlePath(), path.join(work, 'nope.json')], {}).exited;
    expect(missing.message).toMatch(/cannot read the launch spec .*nope.json: ENOENT/);
  });

  it('a VMM process that is killed ends the VM as killed, never hangs', async () => {
    // A FIFO nobody writes: the process blocks reading its spec, and a stop cannot reach it.
    const fifo = path.join(work, 'spec.fifo');
    execFileSync('mkfifo', [fifo]);
    const child = new VmmChild(node, [vmmBundlePath(), fifo], {});
    await new Promise((r) => setTimeout(r, 300));
    const end = await child.stop(200);
    expect(end).toMatchObject({ kind: 'killed', signal: 'SIGKILL', message: 'the native VMM process was killed by SIGKILL' });
    expect(await child.started).toBe(false);
  });

  it('a process that dies without its end event is an error with its exit code; one that cannot start says so', async () => {
    const child = new VmmChild(node, ['-e', 'process.exit(7)'], {});
    expect(await child.exited).toMatchObject({ kind: 'error', code: 7, message: 'the native VMM process exited with code 7' });
    const missing = new VmmChild(path.join(work, 'no-such-program'), [], {});
    expect(await missing.exited).toMatchObject({ kind: 'error', message: expect.stringMatching(/^the native VMM process could not be started \(vrun-vmm: spawn .*no-such-program ENOENT\)$/) as unknown });
    expect(await missing.started).toBe(false);
  });

  it('runs in the jail as the pod\'s uid, reads its spec there and reports through fd 3', async () => {
    const kernel = path.join(work, 'not-a-kernel');
    fs.writeFileSync(kernel, 'this is no ELF file\n');
    fs.mkdirSync(runDir(), { recursive: true });
    const jail = prepareVmmJail({
      runDir: runDir(),
      files: [vmmBundlePath(), nativeAddonPath(), kernel],
      sockets: [],
      kvm: false,
      memoryMiB: 128,
      vcpus: 1,
      overheadMiB: 256,
      pidsMax: 64,
      env: { VRUN_NATIVE_ADDON: nativeAddonPath() },
      keepFds: [EVENTS_FD],
    });
    try {
      const spec = { ...goodSpec(), kernel, initrd: undefined, runDir: runDir(), agentSocket: path.join(runDir(), 'agent.sock'), shares: [], nets: [] };
      const file = path.join(runDir(), 'vmm-launch.json');
      fs.writeFileSync(file, JSON.stringify(spec), { mode: 0o600 });
      fs.chownSync(file, jail.id, jail.id);
      const run = jail.wrap(node, [vmmBundlePath(), file]);
      const child = new VmmChild(run.command, run.args, {});
      const end = await child.exited;
      // The spec was read and checked in the jail: what failed is the kernel, which the machine checks first.
      expect(end.kind).toBe('error');
      expect(end.message).toMatch(/^the native VMM failed: .*not-a-kernel/);
      expect(fs.statSync(runDir()).uid).toBe(jail.id);
    } finally {
      await jail.teardown();
    }
  });
});
