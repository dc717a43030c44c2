/**
 * Kubernetes' view of pod start-up: RunPodSandbox, CreateContainer and StartContainer through containerd's
 * CRI until the container runs, with the `vrun` handler (the pod's VM boots; TCG on hosts without usable
 * KVM) against containerd's default runc handler, in the same run and the same containerd. runc goes
 * through a wrapper that drops CRI's negative oomScoreAdj, which this host refuses even to root.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IMAGE, startCriEnv, type CriEnv } from '../test/shim/cri-fixture.js';

const RUNS: [handler: string, n: number][] = [
  ['runc', 3],
  ['vrun', 2],
];

async function podToRunning(env: CriEnv, handler: string, i: number): Promise<number> {
  const sandboxConfig = { metadata: { name: `bench-${handler}-${i}`, uid: `uid-${handler}-${i}`, namespace: 'bench', attempt: 0 }, hostname: 'bench', logDirectory: env.logDir, linux: {} };
  const t = performance.now();
  const { podSandboxId } = await env.call<{ podSandboxId: string }>('RunPodSandbox', { config: sandboxConfig, runtimeHandler: handler });
  try {
    const { containerId } = await env.call<{ containerId: string }>('CreateContainer', {
      podSandboxId,
      config: { metadata: { name: 'app' }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: `bench-${handler}-${i}.log` },
      sandboxConfig,
    });
    await env.call('StartContainer', { containerId });
    return performance.now() - t;
  } finally {
    await env.call('StopPodSandbox', { podSandboxId });
    await env.call('RemovePodSandbox', { podSandboxId });
  }
}

export async function run(): Promise<void> {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimbench-'));
  const savedRun = process.env.VRUN_RUN;
  process.env.VRUN_RUN = runDir;
  const env = await startCriEnv();
  try {
    const medians = new Map<string, number>();
    for (const [handler, n] of RUNS) {
      const times: number[] = [];
      for (let i = 0; i < n; i++) times.push(await podToRunning(env, handler, i));
      const sorted = [...times].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)] as number;
      medians.set(handler, median);
      process.stdout.write(`CRI RunPodSandbox -> container running, handler ${handler.padEnd(5)}: median ${(median / 1000).toFixed(2)} s over ${n} (${times.map((t) => (t / 1000).toFixed(2)).join(', ')})\n`);
    }
    const ratio = (medians.get('vrun') as number) / (medians.get('runc') as number);
    process.stdout.write(`vrun / runc: ${ratio.toFixed(1)}x (the vrun pod boots a VM${fs.existsSync('/dev/kvm') ? '' : ' under TCG emulation'})\n`);
  } finally {
    await env.stop();
    if (savedRun === undefined) delete process.env.VRUN_RUN;
    else process.env.VRUN_RUN = savedRun;
    fs.rmSync(runDir, { recursive: true, force: true });
  }
}
