import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { bootFiles } from '../../src/guest-image/boot-files.js';
import { READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import { launchNative } from '../../src/vmm/native-backend.js';

/**
 * Run inside the KVM lab by test/vmm/native-userland-pmem.slow.test.ts: boots the split guest image on the native
 * VMM as vrun runs it (the jailed VMM process, launchNative, the boot files vrun picks), the userland image
 * mapped read-only as persistent memory, runs the same probe as the QEMU test (test/guest-image/
 * userland-image.slow.test.ts), and prints one `VRUN-PMEM {...}` line: the probe's facts, the image's sha256
 * before and after the guest wrote to the raw device as root, whether the VMM survived that, and the VMM
 * process's memory by kind.
 */

export interface PmemRun {
  attach?: string;
  facts?: Record<string, string>;
  hashBefore?: string;
  hashAfter?: string;
  vmmAlive?: boolean;
  pssKiB?: Record<string, number>;
  error?: string;
  consoleTail?: string;
}

/**
 * After the init's self-check (vrun.check=1): where /usr comes from, what reading all of node costs the guest's
 * page cache, and whether the guest can write to the image: through the file system (refused) or, as root,
 * straight to the block device (the host's file must not change). Single quotes only: the kernel's command
 * line parser takes double quotes as its own. The raw write goes last: it wrecks the guest's own view.
 * Under KVM every store into the read-only range is an exit to the VMM (as with QEMU's readonly memory under
 * KVM), so `rawPages` stays small there: 256 pages are ~130,000 exits, minutes in the nested lab.
 */
export function userlandProbe(device: string, rawPages = 256): string {
  return [
    "echo VRUN-CHECK usr-mount=$(grep -c ' /usr ext4 ro,' /proc/mounts)",
    "echo VRUN-CHECK userland-dax=$(grep ' /.userland ' /proc/mounts | grep -c dax)",
    "echo VRUN-CHECK cached-before=$(grep ^Cached: /proc/meminfo | tr -s ' ' | cut -d' ' -f2)",
    'cat /usr/bin/node > /dev/null',
    "echo VRUN-CHECK cached-after=$(grep ^Cached: /proc/meminfo | tr -s ' ' | cut -d' ' -f2)",
    "echo VRUN-CHECK node-kib=$(du -k /usr/bin/node | cut -f1)",
    'if touch /usr/x 2>/dev/null; then echo VRUN-CHECK usr-write=ok; else echo VRUN-CHECK usr-write=refused; fi',
    'if mount -o remount,rw /.userland 2>/dev/null; then echo VRUN-CHECK remount-rw=ok; else echo VRUN-CHECK remount-rw=refused; fi',
    'echo VRUN-CHECK agent=$(ls /opt/vrun/vrun-agent.js)',
    `blockdev --setrw ${device} 2>/dev/null; dd if=/dev/zero of=${device} bs=4096 count=${rawPages} conv=fsync 2>/dev/null; echo VRUN-CHECK raw-write-done=1`,
  ].join(';');
}

/** The probe's `VRUN-CHECK key=value` lines (and the init's self-check's) from console text. */
export function probeFacts(consoleText: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of consoleText.matchAll(/^VRUN-CHECK ([a-z0-9-]+)=(.*)$/gm)) out.set(m[1] as string, (m[2] as string).trim());
  return out;
}

export async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function pssOf(pid: number): Record<string, number> {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(Pss|Pss_Anon|Pss_File|Pss_Shmem):\s+(\d+) kB/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function run(): Promise<PmemRun> {
  const rep: PmemRun = {};
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-pmem-'));
  const runDir = path.join(dir, 'run');
  await mkdir(runDir, { mode: 0o700 });
  let vm: Awaited<ReturnType<typeof launchNative>> | undefined;
  try {
    const image = await loadGuestImage('guest-image');
    const files = bootFiles(image, 'native');
    rep.attach = files.userland?.attach ?? 'initrd';
    if (!files.userland) throw new Error('vrun gives the native VMM no userland image: the guest image has no split form');
    rep.hashBefore = await sha256(files.userland.image);
    const probe = userlandProbe('/dev/pmem0', 1);
    vm = await launchNative(
      { backend: 'native', accel: 'kvm' },
      {
        kernel: image.kernel,
        initrd: files.initrd,
        userland: files.userland,
        cmdline: `vrun.check=1 vrun.cmd=${probe.replace(/ /g, '%20')}`,
        vcpus: 2,
        memoryMiB: 512,
        runDir,
        agentSocket: path.join(runDir, 'agent.sock'),
        shares: [],
        consoleLog: path.join(dir, 'console.log'),
      },
    );
    await vm.console.waitFor(READY_PATTERN, 300_000, 'VRUN-READY');
    await vm.console.waitFor(/VRUN-CHECK raw-write-done=/, 300_000, 'the probe');
    rep.facts = Object.fromEntries(probeFacts(vm.console.recent(300)));
    const pid = vm.pid;
    rep.vmmAlive = pid !== undefined && (() => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    })();
    if (pid !== undefined && rep.vmmAlive) rep.pssKiB = pssOf(pid);
    rep.hashAfter = await sha256(files.userland.image);
  } catch (err) {
    rep.error = errorMessage(err);
  } finally {
    rep.consoleTail = vm?.console.recent(30);
    await vm?.kill().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return rep;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`VRUN-PMEM ${JSON.stringify(await run())}\n`);
}
