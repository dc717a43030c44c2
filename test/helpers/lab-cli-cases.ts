/**
 * CLI calls run as cases of one shell script inside the KVM lab (src/kvm-lab/): every call prints one
 * `VRUN-CASE` line (status, duration, stdout and stderr in base64) that the test parses afterwards, since the
 * lab's tmpfs is gone once L1 stops. A `vrun` case that hangs, or whose guest reports an RCU stall (the lab's
 * known defect below the VMM, see the README), is diagnosed and cut off by a watchdog; a stall, or a vCPU that
 * L1's KVM holds (the VMM's diagnosis says `stuckInKvm`), reruns that case alone, at most twice, printing
 * `VRUN-RETRY` with the reason. Nothing else is retried.
 */

export interface LabCase {
  status: number;
  ms: number;
  out: string;
  err: string;
}

/**
 * Shell functions for the lab script. Needs, set before: $W (a scratch directory holding `in`, the calls'
 * stdin), $VRUN_RUN, VRUN_KEEP_FAILED=1, and the project root as the working directory.
 * - `run_case NAME ARGS...`: `node bin/vrun.js ARGS...`, its stdout left in $W/out.
 * - `probe NAME COMMAND...`: any other command (at most 60 s), printed the same way.
 */
export const LAB_CASE_FUNCTIONS = `
b64() { base64 -w0 <"$1"; }
case_line() { echo "VRUN-CASE $1 status=$2 ms=$3 out=$(b64 "$W/out") err=$(b64 "$W/err")"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Sandbox directories of the running case: those not listed in $W/before when it started.
case_sandbox() { [ -d "$1" ] && ! grep -qxF "$(basename "$1")" "$W/before"; }
sandbox_pid() { sed -n 's/.*"sandbox": *\\([0-9][0-9]*\\).*/\\1/p' "$1/state.json" 2>/dev/null | head -n1; }
probe() {
  name=$1; shift
  t0=$(now_ms)
  timeout 60 "$@" >"$W/out" 2>"$W/err"
  st=$?
  case_line "$name" $st $(( $(now_ms) - t0 ))
}
run_case() {
  name=$1; shift
  attempt=1
  while :; do
    rm -f "$W/hung"; ls "$VRUN_RUN" >"$W/before"
    t0=$(now_ms)
    node bin/vrun.js "$@" >"$W/out" 2>"$W/err" <"$W/in" &
    cli=$!
    # The watchdog: 240 s, or at once when a guest of this case reports an RCU stall. Every sandbox of the case is
    # asked for its VMM's state (SIGUSR2, into its log), then the CLI is stopped, so the logs say where it stood.
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
      for d in "$VRUN_RUN"/*/; do
        case_sandbox "$d" || continue
        p=$(sandbox_pid "$d"); [ -n "$p" ] && kill -USR2 "$p" 2>/dev/null
      done
      sleep 5; kill -KILL "$cli" 2>/dev/null
    ) &
    watchdog=$!
    wait "$cli"
    st=$?
    kill "$watchdog" 2>/dev/null
    ms=$(( $(now_ms) - t0 ))
    hung=$(cat "$W/hung" 2>/dev/null)
    # A hang whose diagnosis shows a vCPU L1's KVM holds and does not give back (src/vmm/kvm/stuck-in-kvm.ts): no
    # code of ours runs there, so it counts with the RCU stalls as the lab's defect.
    if [ "$hung" = timeout ]; then
      for d in "$VRUN_RUN"/*/; do
        case_sandbox "$d" && grep -qs '"stuckInKvm":"vCPU' "$d/sandbox.log" && { hung=stuck-in-kvm; break; }
      done
    fi
    case_line "$name" $st $ms
    # A failed run keeps its sandbox (VRUN_KEEP_FAILED): its logs go out with the results, then it is removed.
    if [ -n "$hung" ] || { [ "$1" = run ] && [ $st -ne 0 ]; }; then
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
`;

function fromB64(s: string | undefined): string {
  return Buffer.from(s ?? '', 'base64').toString('utf8');
}

export function parseLabCases(stdout: string): Map<string, LabCase> {
  const cases = new Map<string, LabCase>();
  for (const m of stdout.matchAll(/^VRUN-CASE (\S+) status=(\d+) ms=(\d+) out=(\S*) err=(\S*)$/gm)) {
    cases.set(m[1]!, { status: Number(m[2]), ms: Number(m[3]), out: fromB64(m[4]), err: fromB64(m[5]) });
  }
  return cases;
}

/** The failed cases' sandbox.log and console.log tails, keyed `CASE FILE`. */
export function parseLabDiagnostics(stdout: string): Map<string, string> {
  const diag = new Map<string, string>();
  for (const m of stdout.matchAll(/^VRUN-DIAG (\S+) (\S+) (\S*)$/gm)) diag.set(`${m[1]} ${m[2]}`, fromB64(m[3]));
  return diag;
}

/**
 * One line per retried case with the evidence that the failure was below the VMM: the guest's first RCU report,
 * or the vCPU L1's KVM held, and where the VMM saw the vCPUs.
 */
export function retryEvidence(stdout: string, diag: Map<string, string>): string[] {
  const retries = [...stdout.matchAll(/^VRUN-RETRY (.*)$/gm)].map((m) => m[1] ?? '');
  const lines = retries.map((r) => `VRUN-RETRY ${r}`);
  for (const name of new Set(retries.map((r) => r.split(' ')[0] ?? ''))) {
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
    lines.push(`  evidence for ${name}: ${lost}${rcu.trim()}; vCPUs: ${vmm}`);
  }
  return lines;
}
