import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import { launchNative } from '../../src/vmm/native-backend.js';
import { projectRoot } from '../../src/common/paths.js';
import { runWithLinuxKvm } from '../../src/kvm-lab/placement.js';

/**
 * A diagnostic, run by hand (not part of `npm run bench`: it measures no speed): boots the guest on the native VMM
 * (the jailed VMM process, as vrun runs it) again and again until the guest's readiness line, and for a boot that
 * does not get there within the limit prints where the VMM saw it twice, a few seconds apart (vCPUs, local APIC,
 * TSC deadline, threads, devices): a hang that happens in about one boot in fifty needs many boots to be seen at
 * all. `node dist/bench/vmm/boot-soak-lab.js [boots=60] [seconds per boot=60]` runs itself inside the KVM lab
 * where the host cannot boot Linux under KVM, and prints one `VRUN-SOAK {...}` line per boot and a summary.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bootOnce(i: number, limitMs: number): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-soak-'));
  const runDir = path.join(dir, 'run');
  await mkdir(runDir, { mode: 0o700 });
  const t0 = performance.now();
  let vm: Awaited<ReturnType<typeof launchNative>> | undefined;
  const rep: Record<string, unknown> = { i };
  try {
    const image = await loadGuestImage('guest-image');
    vm = await launchNative(
      { backend: 'native', accel: 'kvm' },
      { kernel: image.kernel, initrd: image.initrd, cmdline: `${BASE_CMDLINE} quiet vrun.cmd=sleep%20600`, vcpus: 2, memoryMiB: 512, runDir, agentSocket: path.join(runDir, 'agent.sock'), shares: [], consoleLog: path.join(dir, 'console.log') },
    );
    try {
      await vm.console.waitFor(READY_PATTERN, limitMs, 'VRUN-READY');
      rep.readyMs = Math.round(performance.now() - t0);
    } catch (err) {
      rep.hung = errorMessage(err);
      rep.first = await vm.diagnose?.();
      await sleep(3000);
      rep.second = await vm.diagnose?.();
      rep.consoleTail = vm.console.recent(30);
    }
  } catch (err) {
    rep.error = errorMessage(err);
  } finally {
    await vm?.kill().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return rep;
}

/** One line: how many boots got ready, their p50, and each hang's verdict. */
function summary(stdout: string): string {
  const runs = [...stdout.matchAll(/^VRUN-SOAK (.*)$/gm)].map((m) => JSON.parse(m[1] ?? '{}') as { readyMs?: number; hung?: string; error?: string; first?: { stuckInKvm?: string | null } });
  const ready = runs.flatMap((r) => (r.readyMs === undefined ? [] : [r.readyMs])).sort((a, b) => a - b);
  const hangs = runs.filter((r) => r.hung !== undefined).map((r) => (/rcu_sched detected stalls/.test(r.hung ?? '') ? 'rcu-stall' : 'silent') + (r.first?.stuckInKvm ? ' (stuck in KVM)' : ''));
  return `VRUN-SOAK-SUMMARY boots=${runs.length} ready=${ready.length} p50ReadyMs=${ready[ready.length >> 1] ?? '-'} hung=${hangs.length} [${hangs.join(', ')}] errors=${runs.filter((r) => r.error).length}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const inside = process.argv[2] === '--inside';
  const [boots = '60', limitS = '60'] = process.argv.slice(inside ? 3 : 2);
  if (inside) {
    for (let i = 0; i < Number(boots); i++) process.stdout.write(`VRUN-SOAK ${JSON.stringify(await bootOnce(i, 1000 * Number(limitS)))}\n`);
  } else {
    const res = await runWithLinuxKvm(`cd '${projectRoot()}' && exec node dist/bench/vmm/boot-soak-lab.js --inside ${Number(boots)} ${Number(limitS)}`, { timeoutMs: Number(boots) * (Number(limitS) + 30) * 1000 + 120_000 });
    process.stdout.write(`${res.stdout}${summary(res.stdout)} (${res.place}, status ${res.status})\n`);
    if (res.status !== 0) process.stderr.write(res.stderr.slice(-4000));
  }
}
