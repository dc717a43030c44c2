import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorMessage } from '../../src/common/errors.js';
import { guestImageCacheDir, projectRoot } from '../../src/common/paths.js';
import { ensureGuestImage, ensureLabImage, type ImageManifest } from '../../src/guest-image/image.js';
import { kvmPlace, runWithLinuxKvm } from '../../src/kvm-lab/placement.js';
import { USERNS_RANGE_BASE } from '../../src/vmm/jail/ids.js';

/**
 * `vrun run --vmm native` end to end where /dev/kvm can boot Linux (the KVM lab on this kind of host): the
 * real CLI, a real sandbox process, our VMM in a jailed process of its own (src/vmm/native-process/),
 * virtiofsd, the guest agent and crun in the guest. One lab run executes every case as a shell script and prints one `VRUN-CASE` line per CLI call
 * (status, duration, stdout and stderr in base64); the tests assert on those. The lab's host / is read-only,
 * so the sandboxes' state and the image store live on a tmpfs; the guest image is the host's, linked in.
 */

interface Case {
  status: number;
  ms: number;
  out: string;
  err: string;
}

interface InspectOut {
  Id: string;
  State: { Status: string; ExitCode: number; Error: string; Pid: number };
  Sandbox: { Backend: string; Pids: { sandbox?: number; vmm?: number; virtiofsd?: number[] }; Guest: { kernel?: string; cpus?: number }; PhasesMs: Record<string, number> };
}

const root = projectRoot();

/** One CLI call per case; `$W/out` keeps the last call's stdout for the script's own use. */
function labScript(): string {
  return `
set -u
base=$(mktemp -d /run/vrun-native-XXXXXX)
# No pod network: the lab's /etc is the host's, read-only (networking is tested under QEMU and in native-net-lab).
export VRUN_ROOT="$base/root" VRUN_RUN="$base/run" VRUN_DEBUG= VRUN_NETWORK=none
mkdir -p "$VRUN_ROOT" "$VRUN_RUN"
ln -s '${guestImageCacheDir()}' "$VRUN_ROOT/guest-image"
W="$base/io"; mkdir -p "$W"; : >"$W/in"
cd '${root}'
echo "VRUN-L1 boot_id=$(cat /proc/sys/kernel/random/boot_id)"
# Sandbox directories of the running case: those not listed in $W/before when it started.
case_sandbox() { [ -d "$1" ] && ! grep -qxF "$(basename "$1")" "$W/before"; }
run_case() {
  name=$1; shift
  attempt=1
  while :; do
    t0=$(date +%s%N)
    # A case that hangs: every sandbox is asked for its VMM state (SIGUSR2, into its log), then the CLI is
    # stopped, so the logs below say where it stood. A guest of this case whose kernel reports an RCU stall
    # (one of its CPUs stopped taking interrupts early in boot: a known defect in the lab, cause not found,
    # see the README) counts as hung at once, and that case alone is run again, at most twice: at about 1 boot
    # in 12, one retry still left a CI run failing about once in 20 (two stalls in one case).
    rm -f "$W/hung"; ls "$VRUN_RUN" >"$W/before"
    (
      i=0
      while [ $i -lt 48 ]; do
        sleep 5; i=$((i + 1))
        for d in "$VRUN_RUN"/*/; do
          case_sandbox "$d" || continue
          grep -qs 'rcu_sched detected stalls' "$d/console.log" && { echo stall >"$W/hung"; break 2; }
        done
      done
      [ -e "$W/hung" ] || echo timeout >"$W/hung"
      pkill -USR2 -f bin/vrun-sandbox.js; sleep 5; pkill -KILL -f bin/vrun.js
    ) &
    watchdog=$!
    node bin/vrun.js "$@" >"$W/out" 2>"$W/err" <"$W/in"
    st=$?
    kill $watchdog 2>/dev/null
    t1=$(date +%s%N)
    hung=$(cat "$W/hung" 2>/dev/null)
    # A hang where the VMM's diagnosis (SIGUSR2, above) shows a vCPU L1's KVM holds and does not give back: a
    # timer interrupt held back (halted, interrupts on, TSC deadline long past) or a thread that stays inside
    # KVM_RUN after its kick (src/vmm/kvm/stuck-in-kvm.ts). No code of ours runs there, so it counts with the
    # RCU stalls as the lab's defect.
    if [ "$hung" = timeout ]; then
      for d in "$VRUN_RUN"/*/; do
        case_sandbox "$d" && grep -qs '"stuckInKvm":"vCPU' "$d/sandbox.log" && { hung=stuck-in-kvm; break; }
      done
    fi
    echo "VRUN-CASE $name status=$st ms=$(( (t1 - t0) / 1000000 )) out=$(base64 -w0 <"$W/out") err=$(base64 -w0 <"$W/err")"
    # A failed run keeps its sandbox (VRUN_KEEP_FAILED): its logs go out with the results, since the lab's
    # tmpfs is gone when the lab stops; then the sandbox is removed like any other.
    if [ -n "$hung" ] || { [ "$1" = run ] && [ $st -ne 0 ] && [ $st -ne 3 ]; }; then
      for d in "$VRUN_RUN"/*/; do
        [ -f "$d/state.json" ] && case_sandbox "$d" || continue
        for f in sandbox.log console.log; do
          [ -f "$d/$f" ] && echo "VRUN-DIAG $name $f $(tail -c 24000 "$d/$f" | base64 -w0)"
        done
        node bin/vrun.js rm -f "$(basename "$d")" >/dev/null 2>&1
      done
    fi
    { [ "$hung" = stall ] || [ "$hung" = stuck-in-kvm ]; } && [ $attempt -lt 3 ] || break
    if [ "$hung" = stall ]; then echo "VRUN-RETRY $name after a guest RCU stall"; else echo "VRUN-RETRY $name after a guest vCPU stuck in L1's KVM"; fi
    attempt=$((attempt + 1))
  done
}
export VRUN_KEEP_FAILED=1
run_case hello run --vmm native --name native-hello busybox echo hello
run_case hello-inspect inspect native-hello
run_case hello-rm rm -f native-hello
run_case exit3 run --rm --vmm native busybox sh -c 'cat /proc/sys/kernel/random/boot_id; exit 3'
echo "VRUN-L1 clock-before=$(date +%s)"
run_case uname run --rm --vmm native busybox sh -c 'uname -r; date +%s'
echo "VRUN-L1 clock-after=$(date +%s)"
# A boot that times out: the sandbox logs where the VMM saw the guest (vCPUs, devices) before it gives up.
VRUN_BOOT_TIMEOUT_MS=1500 run_case boot-timeout run --rm --vmm native busybox true
# stdin through the agent port, and a volume: a second virtio-fs device with its own virtiofsd.
mkdir "$base/vol" && echo seed >"$base/vol/seed" && echo x >"$W/in"
run_case stdin-volume run --rm -i --vmm native -v "$base/vol:/data" busybox sh -c 'cat; cat /data/seed; echo written >/data/out'
: >"$W/in"
echo "VRUN-VOLUME out=$(cat "$base/vol/out" 2>/dev/null)"
# The jailed VMM process as the host sees it, then kill -9 of it.
run_case detached run -d --vmm native --name native-kill busybox sleep 1000
run_case kill-inspect inspect native-kill
set -- $(node -e 'const i = JSON.parse(require("fs").readFileSync(0, "utf8"))[0]; const p = i.Sandbox.Pids; console.log(i.Id, p.vmm, p.sandbox, ...(p.virtiofsd || []))' <"$W/out")
id=$1; vmm=$2; sandbox=$3; shift 2
echo "VRUN-VMM status=$(base64 -w0 </proc/$vmm/status) cmdline=$(tr '\\0' ' ' </proc/$vmm/cmdline | base64 -w0) mnt=$(readlink /proc/$vmm/ns/mnt) pid=$(readlink /proc/$vmm/ns/pid) sandbox-mnt=$(readlink /proc/$sandbox/ns/mnt) sandbox-pid=$(readlink /proc/$sandbox/ns/pid)"
# virtiofsd as the host sees it: the jailer's child, with its uid (the jailer is the pid inspect gives).
for j in "$@"; do [ "$j" = "$sandbox" ] || echo "VRUN-VIRTIOFSD $(ps -o uid=,pid=,args= --ppid "$j" | base64 -w0)"; done
mcg=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ || $2 == "" {print $3; exit}' /proc/$vmm/cgroup)
for f in memory.max_usage_in_bytes memory.usage_in_bytes memory.limit_in_bytes memory.peak memory.current memory.max; do
  [ -f "/sys/fs/cgroup/memory$mcg/$f" ] && echo "VRUN-VMM-MEM cgroup $f=$(cat /sys/fs/cgroup/memory$mcg/$f)"
  [ -f "/sys/fs/cgroup$mcg/$f" ] && echo "VRUN-VMM-MEM cgroup $f=$(cat /sys/fs/cgroup$mcg/$f)"
done
echo "VRUN-VMM-MEM ls-kvm=$(ls -ln /dev/kvm | tr ' ' _)"
kill -9 "$vmm"
run_case kill-ps ps -a
run_case kill-dead inspect native-kill
run_case kill-rm rm -f native-kill
alive=""
for p in "$vmm" "$@"; do [ -e "/proc/$p" ] && ! grep -q '^State:.*zombie' "/proc/$p/status" && alive="$alive,$p"; done
echo "VRUN-LEFT alive=$alive mounts=$(grep -c " $VRUN_RUN/$id" /proc/self/mountinfo) dir=$([ -e "$VRUN_RUN/$id" ] && echo yes || echo no)"
rm -rf "$base"
`;
}

function parseCases(stdout: string): Map<string, Case> {
  const cases = new Map<string, Case>();
  for (const m of stdout.matchAll(/^VRUN-CASE (\S+) status=(\d+) ms=(\d+) out=(\S*) err=(\S*)$/gm)) {
    const b64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');
    cases.set(m[1]!, { status: Number(m[2]), ms: Number(m[3]), out: b64(m[4]), err: b64(m[5]) });
  }
  return cases;
}

describe('vrun run --vmm native (KVM lab)', () => {
  let image: ImageManifest;
  let cases = new Map<string, Case>();
  let raw = '';
  let l1BootId = '';
  let left = '';
  let volumeOut = '';
  let place = '';
  let virtiofsd: string[] = [];
  const diag = new Map<string, string>();

  beforeAll(async () => {
    image = await ensureGuestImage();
    if (kvmPlace() === 'lab') await ensureLabImage();
    // A run takes 3 to 5 minutes; every case has its own 240 s watchdog inside the lab, so only the lab itself
    // can run past 12 minutes. That was seen once: L1 went idle for good (both vCPUs halted, no console output)
    // during a case, and the run hit the limit. The whole lab run is then started once more in a fresh L1.
    let res: Awaited<ReturnType<typeof runWithLinuxKvm>>;
    try {
      res = await runWithLinuxKvm(labScript(), { timeoutMs: 720_000 });
    } catch (err) {
      if (!/timed out after/.test(errorMessage(err))) throw err;
      console.log(`native backend in the lab: the lab stopped making progress; running it once more in a fresh L1 (${errorMessage(err).split('\n')[0]})`);
      res = await runWithLinuxKvm(labScript(), { timeoutMs: 720_000 });
    }
    raw = `status ${res.status} (${res.place}, command ${res.commandMs} ms)\nstdout: ${res.stdout.replace(/^VRUN-DIAG .*\n?/gm, '')}\nstderr: ${res.stderr}\nconsole:\n${res.consoleLog}`;
    cases = parseCases(res.stdout);
    const retries = [...res.stdout.matchAll(/^VRUN-RETRY (.*)$/gm)].map((m) => m[1]);
    if (retries.length > 0) console.log(`native backend in the lab: case retried: ${retries.join('; ')}`);
    for (const m of res.stdout.matchAll(/^VRUN-DIAG (\S+) (\S+) (\S*)$/gm)) {
      const text = Buffer.from(m[3] ?? '', 'base64').toString('utf8');
      diag.set(`${m[1]} ${m[2]}`, text);
      if (m[1] !== 'boot-timeout') raw += `\n--- ${m[1]}: ${m[2]} (tail) ---\n${text}`;
    }
    // Each stall the retries absorbed leaves its evidence in the run's output: the guest's first RCU report, or the
    // vCPU L1's KVM held, and where the VMM saw the vCPUs (the known defect's cause is still open).
    for (const name of new Set(retries.map((r) => r?.split(' ')[0] ?? ''))) {
      const rcu = /^.*rcu: .*$/m.exec(diag.get(`${name} console.log`) ?? '')?.[0] ?? 'no RCU line in the console tail';
      const seen = (diag.get(`${name} sandbox.log`) ?? '').split('\n').find((l) => l.includes('where the VMM saw it')) ?? '';
      let vmm = 'no VMM state logged';
      let lost = '';
      try {
        const d = (JSON.parse(seen) as { vmm?: { stuckInKvm?: string | null; vcpus?: unknown } }).vmm;
        lost = d?.stuckInKvm ? `stuck in L1's KVM: ${d.stuckInKvm}; ` : '';
        vmm = JSON.stringify(d?.vcpus ?? d).slice(0, 1500);
      } catch {
        // the line was cut by the log tail, or is missing
      }
      console.log(`native backend in the lab: stalled ${name}: ${lost}${rcu.trim()}; vCPUs: ${vmm}`);
    }
    l1BootId = /^VRUN-L1 boot_id=(\S+)$/m.exec(res.stdout)?.[1] ?? '';
    left = /^VRUN-LEFT (.*)$/m.exec(res.stdout)?.[1] ?? '';
    volumeOut = /^VRUN-VOLUME out=(.*)$/m.exec(res.stdout)?.[1] ?? '';
    place = res.place;
    virtiofsd = [...res.stdout.matchAll(/^VRUN-VIRTIOFSD (\S*)$/gm)].map((m) => Buffer.from(m[1] ?? '', 'base64').toString('utf8').trim());
    expect(res.status, raw).toBe(0);
  }, 1_600_000);

  const get = (name: string): Case => {
    const c = cases.get(name);
    expect(c, `case ${name} did not run\n${raw}`).toBeDefined();
    return c!;
  };
  const inspected = (name: string): InspectOut => {
    const c = get(name);
    expect(c.status, `${c.err}\n${raw}`).toBe(0);
    return (JSON.parse(c.out) as InspectOut[])[0]!;
  };

  it('prints exactly the output of echo, on the native backend with the guest kernel', () => {
    const c = get('hello');
    expect(c.err, raw).toBe('');
    expect(c.out).toBe('hello\n');
    expect(c.status).toBe(0);
    const info = inspected('hello-inspect');
    expect(info.Sandbox.Backend).toBe('native');
    expect(info.State.Status).toBe('exited');
    // The VMM is a process of its own.
    expect(info.Sandbox.Pids.vmm).toBeGreaterThan(1);
    expect(info.Sandbox.Pids.vmm).not.toBe(info.Sandbox.Pids.sandbox);
    expect(info.Sandbox.Guest.kernel).toBe(image.kernelRelease);
    expect(info.Sandbox.Guest.cpus).toBe(2);
    console.log(`native backend in the lab: ${c.ms} ms for the whole run; phases ${JSON.stringify(info.Sandbox.PhasesMs)}`);
    expect(get('hello-rm').status).toBe(0);
  });

  it('exits with the container\'s exit code, on a kernel of its own', () => {
    const c = get('exit3');
    expect(c.status, `${c.err}\n${raw}`).toBe(3);
    const bootId = c.out.trim();
    expect(bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(l1BootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(bootId).not.toBe(l1BootId);
    expect(bootId).not.toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  });

  it('on a boot timeout, fails with a clear error and logs where the VMM saw the guest', () => {
    const c = get('boot-timeout');
    expect(c.status, `${c.err}\n${raw}`).toBe(125);
    expect(c.err).toMatch(/timed out after 1500 ms waiting for "VRUN-READY"/);
    const log = diag.get('boot-timeout sandbox.log') ?? '';
    const line = log.split('\n').find((l) => l.includes('where the VMM saw it'));
    expect(line, `sandbox log:\n${log}`).toBeDefined();
    type Seen = { vcpu: number; rip?: string; mpState?: string; error?: string; lapic?: { enabled: boolean; timer: { mode: string } }; tscDeadline?: { tsc: string; msLate: number | null }; thread?: { inKvmRun: boolean; kvmRuns: number } };
    const vmm = (JSON.parse(line!) as { vmm: { vcpus: Seen[]; stuckInKvm: string | null; serial: { ier: number }; virtio: { device: string }[] } }).vmm;
    expect(vmm.vcpus.map((v) => v.vcpu)).toEqual([0, 1]);
    // The boot vCPU has run kernel code by then; it was paused and read, not left running.
    expect(vmm.vcpus[0]?.error).toBeUndefined();
    expect(vmm.vcpus[0]?.rip).toMatch(/^0x[0-9a-f]+$/);
    // Its local APIC, TSC and thread, read from KVM: what tells a timer KVM held back from a guest waiting on us.
    expect(typeof vmm.vcpus[0]?.lapic?.enabled).toBe('boolean');
    expect(['one-shot', 'periodic', 'tsc-deadline', 'reserved']).toContain(vmm.vcpus[0]?.lapic?.timer.mode);
    expect(BigInt(vmm.vcpus[0]?.tscDeadline?.tsc ?? '0')).toBeGreaterThan(0n);
    expect(vmm.vcpus[0]?.thread?.kvmRuns).toBeGreaterThan(0);
    // 1.5 s into a healthy boot no timer is 5 s overdue and every thread left KVM_RUN when kicked.
    expect(vmm.stuckInKvm).toBeNull();
    expect(vmm.serial).toHaveProperty('ier');
    expect(vmm.virtio.map((d) => d.device.replace(/^virtio-mmio:/, '').replace(/:.*/, '')).sort()).toEqual(['balloon', 'console', 'fs', 'rng']);
  });

  it('runs uname -r on the guest kernel, whose clock (kvmclock) is the lab\'s', () => {
    const c = get('uname');
    expect(c.status, `${c.err}\n${raw}`).toBe(0);
    const [release, clock] = c.out.split('\n');
    expect(release).toBe(image.kernelRelease);
    const l1 = (key: string) => Number(new RegExp(`^VRUN-L1 clock-${key}=(\\d+)$`, 'm').exec(raw)?.[1]);
    expect(Number(clock)).toBeGreaterThanOrEqual(l1('before') - 2);
    expect(Number(clock)).toBeLessThanOrEqual(l1('after') + 2);
  });

  it('pipes stdin with -i and shares a volume read-write (a second virtio-fs device)', () => {
    const c = get('stdin-volume');
    expect(c.status, `${c.err}\n${raw}`).toBe(0);
    expect(c.out).toBe('x\nseed\n');
    expect(volumeOut).toBe('written');
  });

  it('runs the VMM jailed: a non-root uid and gid, no_new_privs, seccomp, mount and pid namespaces of its own', () => {
    const before = inspected('kill-inspect');
    expect(before.State.Status).toBe('running');
    const line = /^VRUN-VMM (.*)$/m.exec(raw)?.[1] ?? '';
    const field = (k: string) => new RegExp(`(?:^| )${k}=(\\S*)`).exec(line)?.[1] ?? '';
    const status = Buffer.from(field('status'), 'base64').toString('utf8');
    const statusOf = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim().split(/\s+/) ?? [];
    expect(status, raw).toMatch(/^Name:/);
    const mem = [...raw.matchAll(/^VRUN-VMM-MEM (.*)$/gm)].map((m) => m[1]).join('; ');
    console.log(`native VMM process in the lab: ${statusOf('VmRSS').join(' ')} RSS, ${statusOf('VmHWM').join(' ')} peak, RssAnon ${statusOf('RssAnon').join(' ')}, RssFile ${statusOf('RssFile').join(' ')}, RssShmem ${statusOf('RssShmem').join(' ')}, ${statusOf('Threads').join('')} threads; ${mem}`);
    // Real, effective, saved and filesystem ids: all the pod's jail id, none root.
    const [uid, ...uids] = statusOf('Uid');
    const [gid, ...gids] = statusOf('Gid');
    expect(Number(uid), status).toBeGreaterThan(0);
    expect(uids, status).toEqual([uid, uid, uid]);
    expect(Number(gid), status).toBeGreaterThan(0);
    expect(gids, status).toEqual([gid, gid, gid]);
    expect(statusOf('NoNewPrivs'), status).toEqual(['1']);
    // The process-wide floor (src/vmm/kvm/process-seccomp.ts, applied to every thread before the machine starts).
    expect(statusOf('Seccomp'), status).toEqual(['2']);
    expect(statusOf('CapEff'), status).toEqual(['0000000000000000']);
    expect(Buffer.from(field('cmdline'), 'base64').toString('utf8')).toMatch(/^\S*node\S* \S*\/dist\/vmm\/vmm\.cjs .*\/vmm-launch\.json/);
    for (const ns of ['mnt', 'pid']) {
      expect(field(ns)).toMatch(new RegExp(`^${ns}:\\[\\d+\\]$`));
      expect(field(ns)).not.toBe(field(`sandbox-${ns}`));
    }
  });

  it('runs virtiofsd in its user namespace, as a non-root uid, where the kernel can id-map the pod\'s share', () => {
    expect(virtiofsd, raw).toHaveLength(1);
    console.log(`virtiofsd in the ${place} (uid pid args): ${virtiofsd[0]}`);
    const [uid, , binary] = virtiofsd[0]!.split(/\s+/);
    expect(binary).toMatch(/virtiofsd$/);
    // The lab's L1 runs Linux 6.12, which id-maps the tmpfs the sandboxes live on; Debian 12's own 6.1 cannot,
    // and there virtiofsd runs as root (src/vmm/vhost-user/virtiofsd.ts).
    if (place === 'lab') expect(Number(uid), virtiofsd[0]).toBeGreaterThanOrEqual(USERNS_RANGE_BASE);
  });

  it('kill -9 of the VMM process: ps shows the sandbox failed with the reason, rm -f leaves nothing behind', () => {
    const d = get('detached');
    expect(d.status, `${d.err}\n${raw}`).toBe(0);
    const before = inspected('kill-inspect');
    expect(before.State.Status).toBe('running');
    expect(before.Sandbox.Pids.virtiofsd?.length).toBe(1);
    const ps = get('kill-ps');
    expect(ps.status).toBe(0);
    const row = ps.out.split('\n').find((l) => l.includes('native-kill'));
    expect(row, ps.out).toMatch(/Failed: the VM stopped unexpectedly: the native VMM process was killed by SIGKILL/);
    const after = inspected('kill-dead');
    expect(after.State.Status).toBe('dead');
    expect(after.State.Error).toMatch(/^the VM stopped unexpectedly: the native VMM process was killed by SIGKILL/);
    expect(get('kill-rm').status).toBe(0);
    expect(left).toBe('alive= mounts=0 dir=no');
  });
});

describe('vrun run --vmm native on this host', () => {
  it('runs where hardware virtualization is usable, else says why in one line and exits 125', () => {
    const runDir = mkdtempSync('/run/vrun-test-');
    try {
      const r = spawnSync(process.execPath, [path.join(root, 'bin/vrun.js'), 'run', '--rm', '--vmm', 'native', 'busybox', 'echo', 'hello'], {
        env: { ...process.env, VRUN_RUN: runDir, VRUN_DEBUG: '' },
        encoding: 'utf8',
        timeout: 600_000,
      });
      if (kvmPlace() === 'direct') {
        expect(r.stdout).toBe('hello\n');
        expect(r.status).toBe(0);
      } else {
        expect(r.status).toBe(125);
        expect(r.stderr).toMatch(/^vrun: --vmm native needs hardware virtualization: this host has (no \/dev\/kvm|\/dev\/kvm but no hardware virtualization .*)\n$/);
        expect(r.stdout).toBe('');
      }
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});
