/**
 * The agent's overhead against calling crun directly, both on this host (the agent as a host process in
 * its private cgroup2 namespace, crun entered into the same namespace with nsenter):
 *  - create+start (one CreateContainer call) + wait + remove of `true` through the agent vs `crun run` of
 *    the same bundle;
 *  - stdout throughput of `head -c N /dev/zero` read through the agent vs read from crun's stdout pipe.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { busyboxSpec, startHostAgent } from '../src/agent/host/host-process.js';

const ROUNDS = 10;
/** Odd, for a true median; five, because one round on a shared machine can be off by 30%. */
const THROUGHPUT_ROUNDS = 5;
const BYTES = 256 * 1024 * 1024;

function nsenter(pid: number, args: string[], onStdout?: (b: Buffer) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', ['-t', String(pid), '-m', ...args], { stdio: ['ignore', onStdout ? 'pipe' : 'ignore', 'inherit'] });
    if (onStdout) child.stdout?.on('data', onStdout);
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? -1));
  });
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

export async function run(): Promise<void> {
  const agent = await startHostAgent();
  try {
    const { client } = agent;
    const pid = agent.child.pid as number;
    const rootfs = await client.createBusyboxRootfs('rootfs');
    const crunRoot = path.join(agent.dir, 'direct-crun');
    await mkdir(crunRoot, { recursive: true });
    const bundle = async (name: string, args: string[]) => {
      const dir = path.join(agent.dir, 'direct', name);
      await mkdir(dir, { recursive: true });
      const spec = busyboxSpec(args);
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...spec, root: { path: rootfs, readonly: false }, linux: { ...spec.linux, cgroupsPath: `/vrun-bench/${name}` } }));
      return dir;
    };

    const trueBundle = await bundle('true', ['true']);
    const viaAgent: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      direct.push(
        await timed(async () => {
          const code = await nsenter(pid, ['crun', '--root', crunRoot, 'run', '--bundle', trueBundle, `true-${i}`]);
          if (code !== 0) throw new Error(`crun run exited ${code}`);
        }),
      );
      viaAgent.push(
        await timed(async () => {
          const id = `true-${i}`;
          // Created and started in one call, as `crun run` does.
          await client.createContainer({ containerId: id, spec: busyboxSpec(['true']), rootfs, start: true });
          const r = await client.waitProcess({ containerId: id });
          if (r.exitStatus !== 0) throw new Error(`true exited ${r.exitStatus}`);
          await client.removeContainer(id);
        }),
      );
    }
    const a = median(viaAgent);
    const d = median(direct);
    process.stdout.write(`lifecycle of \`true\` (median of ${ROUNDS}): agent ${a.toFixed(1)} ms, crun run ${d.toFixed(1)} ms, ratio ${(a / d).toFixed(2)}x (goal <= 1.3x)\n`);

    const script = ['head', '-c', String(BYTES), '/dev/zero'];
    const zeroBundle = await bundle('zero', script);
    const directRuns: number[] = [];
    const agentRuns: number[] = [];
    // Alternating rounds, so both sides see the same (shared, busy) machine.
    for (let i = 0; i < THROUGHPUT_ROUNDS; i++) {
      let directBytes = 0;
      directRuns.push(
        await timed(async () => {
          const code = await nsenter(pid, ['crun', '--root', crunRoot, 'run', '--bundle', zeroBundle, `zero-${i}`], (b) => (directBytes += b.length));
          if (code !== 0) throw new Error(`crun run exited ${code}`);
        }),
      );
      let agentBytes = 0;
      agentRuns.push(
        await timed(async () => {
          const id = `zero-${i}`;
          await client.createContainer({ containerId: id, spec: busyboxSpec(script), rootfs });
          const out = client.readOutput({ containerId: id }, 'stdout');
          await client.startContainer(id);
          for await (const chunk of out) agentBytes += (chunk as Buffer).length;
          await client.waitProcess({ containerId: id });
          await client.removeContainer(id);
        }),
      );
      if (agentBytes !== BYTES || directBytes !== BYTES) throw new Error(`byte counts differ: agent ${agentBytes}, direct ${directBytes}, expected ${BYTES}`);
    }
    const agentMs = median(agentRuns);
    const directMs = median(directRuns);
    const mbps = (ms: number) => BYTES / 1048576 / (ms / 1000);
    process.stdout.write(
      `stdout throughput (${BYTES / 1048576} MiB, median of ${THROUGHPUT_ROUNDS}): agent ${mbps(agentMs).toFixed(0)} MiB/s, crun pipe ${mbps(directMs).toFixed(0)} MiB/s, ` +
        `time ratio ${(agentMs / directMs).toFixed(2)}x (goal <= 1.3x); load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
    );
  } finally {
    await agent.stop();
  }
}
