/**
 * A hostile guest, tried as an attacker would: a privileged container (root in the guest with every capability,
 * what a privileged pod or any escape inside the guest gets) mounts the pod's own virtio-fs share and keeps
 * planting symlinks and directories wherever the host makes mount points, while the host goes on with its normal
 * work: it creates, starts and removes containers with hostPath bind mounts in the same pod, then tears the pod
 * down. It also plants a setuid-root binary and a binary with file capabilities, tries to make a device node, and
 * floods its stdout and the guest's console. Afterwards: a canary tree outside the pod is unchanged
 * (checksummed), nothing was mounted or created outside the pod's directories, no attempt got through, the
 * planted binaries give `nobody` on the host nothing, the guest got no device node, the shim's memory did not
 * follow the floods and every log of the pod is under its cap.
 *
 * Before GuestShare the host made these mounts by path in a guest-writable tree: a planted
 * `<cid>/mounts/0 -> <dir>` made the host bind-mount the next container's source onto a host directory of the
 * guest's choosing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROCESS_LOG_MAX_BYTES } from '../../src/common/process-log.js';
import { CONSOLE_LOG_MAX_BYTES } from '../../src/vmm/console-log.js';
import { mountsUnder, processesNaming } from '../sandbox/leftovers.js';
import { IMAGE } from '../shim/cri-fixture.js';
import { useCriTestRun } from '../shim/cri-test-run.js';
import { buildBusyboxArchive } from '../shim/shim-fixture.js';

interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** Rounds of the attack loop (test/security/attack.c), each trying every plant once per container directory. */
const ATTACK_ROUNDS = Number(process.env.VRUN_TEST_ATTACK_ROUNDS ?? 1000);
const ATTACK_IMAGE = 'docker.io/library/vrun-attacker:1';
/** Output the attacker floods its stdout with, twice, while the test watches the shim's memory. */
const FLOOD_MIB = 32;
/** Kernel messages the attacker floods the guest's console with, twice: together more than the console log's two files hold. */
const KMSG_MIB = 8;
/** Container create/start/exec/stop/remove cycles the host runs while the attack loop goes on. */
const HOST_CYCLES = Number(process.env.VRUN_TEST_HOST_CYCLES ?? 10);

function treeDigest(dir: string): string {
  const h = crypto.createHash('sha256');
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      h.update(`${path.relative(dir, p)} ${st.mode} ${st.size}\n`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) h.update(fs.readFileSync(p));
      else if (st.isSymbolicLink()) h.update(fs.readlinkSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** Mount points outside the places a pod may mount (its own state directory, containerd's). */
function foreignMounts(allowed: string[]): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp !== '' && !allowed.some((a) => mp === a || mp.startsWith(`${a}/`)))
    .sort();
}

function findFiles(root: string, name: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.name === name) out.push(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

describe('a hostile guest in a CRI pod', () => {
  const cri = useCriTestRun('vrun-hostile-');
  let canary: string;
  let hostVol: string;
  const sandboxConfig = () => ({
    metadata: { name: 'hostile', uid: 'uid-hostile', namespace: 'default', attempt: 0 },
    hostname: 'hostile',
    logDirectory: cri.env.logDir,
    // A privileged pod: its containers are root in the guest with every capability and device, /dev/kmsg too.
    linux: { securityContext: { privileged: true } },
  });

  beforeAll(async () => {
    canary = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-canary-'));
    fs.mkdirSync(path.join(canary, 'etc', 'cron.d'), { recursive: true });
    fs.writeFileSync(path.join(canary, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    fs.writeFileSync(path.join(canary, 'data'), crypto.randomBytes(4096));
    hostVol = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-hostvol-'));
    fs.writeFileSync(path.join(hostVol, 'hello'), 'from the host\n');
    const build = path.join(cri.env.dir, 'attacker');
    fs.mkdirSync(build);
    execFileSync('cc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', path.join(build, 'attack'), path.join(import.meta.dirname, 'attack.c')]);
    await cri.env.importImage(buildBusyboxArchive(build, ATTACK_IMAGE, undefined, { attack: path.join(build, 'attack') }));
  });

  afterAll(() => {
    for (const d of [canary, hostVol]) fs.rmSync(d, { recursive: true, force: true });
  });

  it('gets nothing on the host while the host creates and removes containers around it', async () => {
    const canaryBefore = treeDigest(canary);
    const allowed = [cri.runDir, cri.env.dir, '/run/containerd', '/var/lib/containerd', '/run/vrun', '/tmp/vrun-'];
    const mountsBefore = foreignMounts(allowed);

    const sandbox = await cri.env.call<{ podSandboxId: string }>('RunPodSandbox', { config: sandboxConfig(), runtimeHandler: 'vrun' }).catch((err: Error) => {
      throw new Error(`${err.message}\n${cri.env.log().slice(-3000)}`);
    });
    cri.podId = sandbox.podSandboxId;

    const attacker = await cri.env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: cri.podId,
      config: {
        metadata: { name: 'attacker' },
        image: { image: ATTACK_IMAGE },
        command: ['sh', '-c', `/bin/attack plant vrun-pod ${canary} ${ATTACK_ROUNDS}; exec sleep 100000`],
        logPath: 'attacker.log',
        linux: { securityContext: { privileged: true } },
      },
      sandboxConfig: sandboxConfig(),
    });
    await cri.env.call('StartContainer', { containerId: attacker.containerId });

    // The host's normal work while the loop runs: containers come and go, each with a hostPath bind.
    let cycles = 0;
    const attackLog = () => (fs.existsSync(path.join(cri.env.logDir, 'attacker.log')) ? fs.readFileSync(path.join(cri.env.logDir, 'attacker.log'), 'utf8') : '');
    const round = () => Number([...attackLog().matchAll(/ATTACK-ROUND (\d+)/g)].pop()?.[1] ?? '0');
    while (!/ATTACK-MOUNT-FAILED/.test(attackLog()) && (round() < ATTACK_ROUNDS || cycles < HOST_CYCLES)) {
      const victim = await cri.env.call<{ containerId: string }>('CreateContainer', {
        podSandboxId: cri.podId,
        config: {
          metadata: { name: 'victim', attempt: cycles },
          image: { image: IMAGE },
          command: ['sh', '-c', 'cat /data/hello; exec sleep 100000'],
          logPath: `victim-${cycles}.log`,
          mounts: [{ containerPath: '/data', hostPath: hostVol, readonly: true }],
        },
        sandboxConfig: sandboxConfig(),
      });
      await cri.env.call('StartContainer', { containerId: victim.containerId });
      const r = await cri.env.call<ExecResult>('ExecSync', { containerId: victim.containerId, cmd: ['cat', '/data/hello'], timeout: 120 });
      expect(r.stdout.toString()).toBe('from the host\n');
      await cri.env.call('StopContainer', { containerId: victim.containerId, timeout: 5 });
      await cri.env.call('RemoveContainer', { containerId: victim.containerId });
      cycles++;
      console.log(`${new Date().toISOString()} host cycle ${cycles} done; the attack loop is at round ${round()}`);
      if (cycles > 200) throw new Error(`the attack loop does not progress: ${attackLog().slice(-2000)}`);
    }
    await cri.env.call('ExecSync', { containerId: attacker.containerId, cmd: ['sh', '-c', ': > /tmp/attack-stop'], timeout: 120 });
    const until = Date.now() + 120_000;
    while (!/ATTACK-DONE|ATTACK-MOUNT-FAILED/.test(attackLog()) && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    const done = /ATTACK-DONE rounds=(\d+) ok=(\d+) refused=(\d+)/.exec(attackLog());
    expect(done, attackLog().slice(-2000)).not.toBeNull();
    expect(attackLog()).toContain('ATTACK-CONTROL-OK');
    const [rounds, okCount, refusedCount] = [Number(done?.[1]), Number(done?.[2]), Number(done?.[3])];
    console.log(`hostile guest: ${refusedCount} plants refused, ${okCount} got through, over ${rounds} rounds while the host ran ${cycles} container cycles`);
    expect(okCount, attackLog().slice(-2000)).toBe(0);
    expect(rounds).toBeGreaterThanOrEqual(ATTACK_ROUNDS);
    expect(refusedCount).toBeGreaterThanOrEqual(ATTACK_ROUNDS * 2);

    // Things the guest makes: a setuid-root program and a program with file capabilities in its rootfs, and a
    // device node (refused by virtiofsd). The control: the same file capabilities on a tmpfs of the guest's own hold.
    const plant = await cri.env.call<ExecResult>('ExecSync', {
      containerId: attacker.containerId,
      cmd: ['sh', '-c', '/bin/attack suid /evil && /bin/attack mknod /evil-mem && /bin/attack fcap /evil-fcap && mkdir -p /ctl && mount -t tmpfs ctl /ctl && /bin/attack fcap /ctl/fcap'],
      timeout: 120,
    });
    const planted = plant.stdout.toString();
    expect(planted, plant.stderr.toString()).toContain('SUID-PLANTED mode=4755 uid=0');
    expect(planted).toMatch(/MKNOD-REFUSED/);
    expect(planted).toMatch(/^FCAP-REFUSED .*\nFCAP-PLANTED$/m);

    // Floods of the container's stdout and of the guest's console: the shim's memory must not follow them.
    // Bounded means it stops growing: a second flood of the same size adds less than its own size to the peak
    // the first reached (the first grows V8's heap with garbage, which a bound allows; output kept in memory
    // would add at least the flood's size again).
    const podDirs = fs.readdirSync(path.join(cri.runDir, 'shim'));
    expect(podDirs).toHaveLength(1);
    const podDir = path.join(cri.runDir, 'shim', podDirs[0] ?? '');
    const shimPid = (JSON.parse(fs.readFileSync(path.join(podDir, 'pod.json'), 'utf8')) as { pids: { shim?: number } }).pids.shim;
    expect(shimPid).toBeDefined();
    const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${shimPid}/status`, 'utf8'))?.[1] ?? 0);
    const peakRssDuring = async (flood: () => Promise<void>): Promise<number> => {
      let peak = rssKiB();
      const sampler = setInterval(() => (peak = Math.max(peak, rssKiB())), 100);
      try {
        await flood();
      } finally {
        clearInterval(sampler);
      }
      return peak;
    };
    // ExecSync's reply is larger than a gRPC client takes: its failure after the flood went through is expected.
    const stdoutFlood = async () => {
      await cri.env.call('ExecSync', { containerId: attacker.containerId, cmd: ['/bin/attack', 'flood', String(FLOOD_MIB)], timeout: 600 }).catch(() => undefined);
    };
    const consoleFlood = async () => {
      const r = await cri.env.call<ExecResult>('ExecSync', { containerId: attacker.containerId, cmd: ['/bin/attack', 'kmsg', String(KMSG_MIB)], timeout: 900 });
      expect(r.stdout.toString(), r.stderr.toString()).toContain(`KMSG-DONE bytes=${KMSG_MIB << 20}`);
    };
    for (const [what, mib, flood] of [['stdout', FLOOD_MIB, stdoutFlood], ['console', KMSG_MIB, consoleFlood]] as const) {
      const before = rssKiB();
      const peaks = [await peakRssDuring(flood), await peakRssDuring(flood)];
      console.log(`hostile guest: shim RSS ${before} KiB, at most ${peaks[0]} KiB during a first ${mib} MiB ${what} flood, ${peaks[1]} KiB during a second`);
      expect((peaks[1] ?? 0) - (peaks[0] ?? 0), `${what} flood`).toBeLessThan(mib << 10);
    }
    // The flood reached the log (it rotated), and every log of the pod is under its cap.
    expect(fs.existsSync(path.join(podDir, 'console.log.1')), fs.readdirSync(podDir).join(' ')).toBe(true);
    for (const name of fs.readdirSync(podDir).filter((n) => /\.log(\.1)?$/.test(n))) {
      const cap = name.startsWith('console.log') ? CONSOLE_LOG_MAX_BYTES : PROCESS_LOG_MAX_BYTES;
      const size = fs.statSync(path.join(podDir, name)).size;
      console.log(`hostile guest: ${name} ${size} bytes (cap ${cap})`);
      expect(size, name).toBeLessThanOrEqual(cap);
    }

    // On the host: every copy of the planted binary is out of reach of an unprivileged user, and the one
    // mount that shows it carries nosuid.
    const copies = findFiles(cri.runDir, 'evil').concat(findFiles(cri.env.dir, 'evil'));
    expect(copies.length).toBeGreaterThan(0);
    for (const p of copies) {
      const st = fs.statSync(p);
      expect(st.mode & 0o4000, p).toBe(0o4000);
      // The exec must come from a process that already is `nobody`: setpriv's own exec of its argument is not.
      const asNobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', '/bin/sh', '-c', '"$0" id', p], { encoding: 'utf8' });
      expect(asNobody.stdout.trim(), `${p} ran for nobody: ${asNobody.stdout}${asNobody.stderr}`).not.toBe('0');
      expect(asNobody.status, `${p}: ${asNobody.stdout}${asNobody.stderr}`).not.toBe(0);
    }
    expect(findFiles(cri.runDir, 'evil-mem')).toEqual([]);
    const fcapCopies = findFiles(cri.runDir, 'evil-fcap').concat(findFiles(cri.env.dir, 'evil-fcap'));
    expect(fcapCopies.length).toBeGreaterThan(0);
    for (const p of fcapCopies) {
      // No capability reached the host's copy, and nobody gains one by running it (if it can reach it at all:
      // the pod's directory is 0700).
      expect(execFileSync('getcap', [p], { encoding: 'utf8' }).trim(), p).toBe('');
      const asNobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', '/bin/sh', '-c', '"$0" caps', p], { encoding: 'utf8' });
      expect(asNobody.stdout, `${p} gave nobody capabilities`).not.toMatch(/^CapEff:\s+0*[1-9a-f]/m);
      if (asNobody.status === 0) expect(asNobody.stdout, p).toMatch(/^CapEff:\s+0+$/m);
    }

    await cri.env.call('StopPodSandbox', { podSandboxId: cri.podId });
    await cri.env.call('RemovePodSandbox', { podSandboxId: cri.podId });
    cri.podId = '';
    const deadline = Date.now() + 60_000;
    while ((processesNaming(path.join(cri.runDir, 'shim')).length > 0 || fs.readdirSync(path.join(cri.runDir, 'shim')).length > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(mountsUnder(cri.runDir)).toEqual([]);
    expect(treeDigest(canary)).toBe(canaryBefore);
    expect(foreignMounts(allowed)).toEqual(mountsBefore);
    expect(fs.readFileSync(path.join(hostVol, 'hello'), 'utf8')).toBe('from the host\n');
    expect(execFileSync('ls', ['-A', '/etc/cron.d'], { encoding: 'utf8' })).not.toMatch(/vrun|canary/);
  });
});
