/**
 * A container whose init exits while its pause is in flight: the agent, on the host, runs a crun wrapper
 * whose `pause` kills the init before it returns, so the exit lands between the pause's request and its
 * completion. The container must end stopped with the exit status, not paused.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { busyboxSpec, startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';

/**
 * crun's own arguments come first (--root DIR --log ... --log-format json), then the command. On `pause`, the
 * real crun freezes the container, then the wrapper SIGKILLs the init (a fatal signal reaches a frozen task
 * on cgroup v2) and returns only once the agent has reaped it, with time for the agent to take the exit in.
 */
const WRAPPER = (crun: string) => `#!/bin/sh
set -e
"${crun}" "$@"
if [ "$7" != pause ]; then exit 0; fi
root="$2"
pid=$(cat "$(dirname "$root")/containers/$8/init.pid")
kill -KILL "$pid"
i=0
while [ -e "/proc/$pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.3
`;

describe('agent: an exit during an in-flight pause', () => {
  let agent: HostAgent;
  let rootfs: string;
  let dir: string;
  const saved = process.env.VRUN_AGENT_CRUN;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-crun-wrapper-'));
    const wrapper = path.join(dir, 'crun');
    await writeFile(wrapper, WRAPPER(execFileSync('sh', ['-c', 'command -v crun']).toString().trim()));
    await chmod(wrapper, 0o755);
    // The host agent takes its crun from the environment it is started with.
    process.env.VRUN_AGENT_CRUN = wrapper;
    try {
      agent = await startHostAgent();
    } finally {
      if (saved === undefined) delete process.env.VRUN_AGENT_CRUN;
      else process.env.VRUN_AGENT_CRUN = saved;
    }
    rootfs = await agent.client.createBusyboxRootfs('rootfs');
  });
  afterAll(async () => {
    await agent?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves the container stopped with the exit status', async () => {
    const { client } = agent;
    const c = `race${process.pid}`;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer(c);
    await client.pauseContainer(c);
    expect(await client.waitProcess({ containerId: c })).toEqual({ exitStatus: 137, signal: 9, oomKilled: false });
    // Stopped, not paused: nothing to resume, and a remove needs no force.
    const resume = await client.resumeContainer(c).then(() => null, (err: unknown) => err);
    expect(resume).toBeInstanceOf(AgentError);
    expect((resume as AgentError).details).toBe(`container ${c} is stopped, not paused: cannot resume`);
    expect((resume as AgentError).kind).toBe('precondition');
    await client.removeContainer(c);
  });
});
