import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxSpec, readAll, startHostAgent, type HostAgent } from './host-agent.js';

describe('agent on the host: containers through crun', () => {
  let agent: HostAgent;
  let rootfs: string;
  let n = 0;
  const id = () => `c${process.pid}-${++n}`;

  beforeAll(async () => {
    agent = await startHostAgent();
    rootfs = await agent.client.createBusyboxRootfs('rootfs');
  });
  afterAll(async () => {
    await agent?.stop();
  });

  /** create + attach output + start + wait + remove. */
  async function runOnce(args: string[], opts: Parameters<typeof busyboxSpec>[1] = {}) {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(args, opts), rootfs });
    const out = readAll(client.readOutput({ containerId: c }, 'stdout'));
    const err = readAll(client.readOutput({ containerId: c }, 'stderr'));
    await client.startContainer(c);
    const exit = await client.waitProcess({ containerId: c });
    const result = { exit, stdout: (await out).toString(), stderr: (await err).toString() };
    await client.removeContainer(c);
    return result;
  }

  it('answers health and guest details', async () => {
    expect(await agent.client.health()).toBe(true);
    const d = await agent.client.guestDetails();
    expect(d.cgroupMode).toBe('v2');
    expect(d.crunVersion).toMatch(/^crun version/);
    expect(d.nodeVersion).toBe(process.version);
  });

  it('reports exit codes 0 and 3, and stdout/stderr apart', async () => {
    const ok = await runOnce(['sh', '-c', 'echo out; echo err >&2']);
    expect(ok.exit).toEqual({ exitStatus: 0, signal: 0, oomKilled: false });
    expect(ok.stdout).toBe('out\n');
    expect(ok.stderr).toBe('err\n');
    const three = await runOnce(['sh', '-c', 'exit 3']);
    expect(three.exit.exitStatus).toBe(3);
  });

  it('reports 137 when the container is SIGKILLed', async () => {
    const c = id();
    await agent.client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await agent.client.startContainer(c);
    await agent.client.signalProcess({ containerId: c }, 'SIGKILL');
    expect(await agent.client.waitProcess({ containerId: c })).toEqual({ exitStatus: 137, signal: 9, oomKilled: false });
    await agent.client.removeContainer(c);
  });
});
