import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/agent/client.js';
import { busyboxSpec, readAll, startHostAgent, type HostAgent } from '../../src/agent/host-process.js';

describe('agent on the host: restart', () => {
  let agent: HostAgent;
  let rootfs: string;

  beforeAll(async () => {
    agent = await startHostAgent();
    rootfs = await agent.client.createBusyboxRootfs('rootfs');
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('keeps its containers across a crash and restart, and the same client reconnects', async () => {
    const { client } = agent;
    await client.createContainer({ containerId: 'keep', spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer('keep');
    const execPid = await client.execProcess({ containerId: 'keep', execId: 'e1', process: { args: ['sleep', '1000'], env: ['PATH=/bin'] } });
    const initPid = (await client.listProcesses('keep')).find((p) => p.known && p.execId === '')?.pid;
    expect(initPid).toBeGreaterThan(1);
    // Created, not started: it runs only when started after the restart (seen by the file it makes).
    await client.createContainer({ containerId: 'later', spec: busyboxSpec(['touch', '/started-later']), rootfs });
    const marker = path.join(rootfs, 'started-later');

    const before = agent.child.pid;
    await agent.restart();
    expect(agent.child.pid).not.toBe(before);
    await client.waitForReady(10_000);
    expect(await client.health()).toBe(true);

    // Both processes are still there and still known by their exec ids.
    const procs = await client.listProcesses('keep');
    expect(procs).toEqual(expect.arrayContaining([
      { pid: initPid, execId: '', known: true },
      { pid: execPid, execId: 'e1', known: true },
    ]));
    // New execs work in full: output and exit status.
    await client.execProcess({ containerId: 'keep', execId: 'e2', process: { args: ['sh', '-c', 'echo after-restart; exit 6'], env: ['PATH=/bin'] } });
    expect((await readAll(client.readOutput({ containerId: 'keep', execId: 'e2' }, 'stdout'))).toString()).toBe('after-restart\n');
    expect(await client.waitProcess({ containerId: 'keep', execId: 'e2' })).toEqual({ exitStatus: 6, signal: 0, oomKilled: false });
    const dup = await client.execProcess({ containerId: 'keep', execId: 'e1', process: { args: ['true'] } }).then(() => null, (e: unknown) => e);
    expect(dup).toBeInstanceOf(AgentError);
    expect((dup as AgentError).details).toMatch(/already used/);

    // The earlier agent's processes are no longer the agent's children: their exits are seen, their
    // statuses are not (255).
    await client.signalProcess({ containerId: 'keep', execId: 'e1' }, 'KILL');
    expect(await client.waitProcess({ containerId: 'keep', execId: 'e1' }, 20_000)).toEqual({ exitStatus: 255, signal: 0, oomKilled: false });
    await client.signalProcess({ containerId: 'keep' }, 'KILL');
    expect(await client.waitProcess({ containerId: 'keep' }, 20_000)).toEqual({ exitStatus: 255, signal: 0, oomKilled: false });
    await client.removeContainer('keep');

    expect(existsSync(marker)).toBe(false);
    await client.startContainer('later');
    await client.waitProcess({ containerId: 'later' }, 20_000);
    expect(existsSync(marker)).toBe(true);
    await client.removeContainer('later');

    // The ids are free again: the cleanup of recovered containers finished.
    await client.createContainer({ containerId: 'keep', spec: busyboxSpec(['sh', '-c', 'exit 3']), rootfs });
    await client.startContainer('keep');
    expect((await client.waitProcess({ containerId: 'keep' })).exitStatus).toBe(3);
    await client.removeContainer('keep');
  });
});
