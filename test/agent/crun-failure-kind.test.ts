import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { crunFailureKind } from '../../src/agent/guest/crun.js';
import { busyboxSpec, startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';

/** crun 1.8.1's messages, as it logs them (seen running it: the real-crun cases below check they still are). */
const CRUN_NOT_FOUND = 'executable file `nosuchcmd` not found in $PATH: No such file or directory';
const CRUN_NOT_FOUND_PATH = 'executable file `/no/such` not found in $PATH: No such file or directory';
const CRUN_NOT_EXECUTABLE = 'open executable: Permission denied';
const CRUN_DIRECTORY = 'open executable: Operation not permitted';

describe('crun failure kinds', () => {
  it("reads crun's words for a missing or unexecutable command", () => {
    expect(crunFailureKind([CRUN_NOT_FOUND])).toBe('command-not-found');
    expect(crunFailureKind([CRUN_NOT_FOUND_PATH])).toBe('command-not-found');
    expect(crunFailureKind(['executable file `a b`c` not found in $PATH: No such file or directory'])).toBe('command-not-found');
    expect(crunFailureKind([CRUN_NOT_EXECUTABLE])).toBe('command-not-executable');
    expect(crunFailureKind([CRUN_DIRECTORY])).toBe('command-not-executable');
    expect(crunFailureKind(['some warning', CRUN_NOT_FOUND])).toBe('command-not-found');
  });

  it('leaves every other crun failure a failed precondition', () => {
    for (const m of [
      'chdir to `/nope`: No such file or directory',
      'open executable: Not a directory',
      'error opening file `/run/x/status`: No such file or directory',
      `prefix ${CRUN_NOT_FOUND}`,
      `${CRUN_NOT_EXECUTABLE} trailing`,
      'exit status 1',
    ]) {
      expect(crunFailureKind([m]), m).toBe('precondition');
    }
    expect(crunFailureKind([])).toBe('precondition');
  });
});

/**
 * The real agent and real crun (host-process.ts: its own mount namespace with cgroup2, as crun refuses this
 * host's hybrid cgroups), through the real host client: the kind crosses gRPC as the status code plus its
 * name, and the message keeps crun's own words (containerd and people read those).
 */
describe('agent on the host: a command crun cannot run', () => {
  let agent: HostAgent;
  let rootfs: string;
  let n = 0;
  const id = () => `k${process.pid}-${++n}`;

  beforeAll(async () => {
    agent = await startHostAgent();
    rootfs = await agent.client.createBusyboxRootfs('rootfs');
    await mkdir(path.join(rootfs, 'adir'));
    await writeFile(path.join(rootfs, 'bin', 'not-exec'), '#!/bin/sh\necho hi\n', { mode: 0o644 });
  });
  afterAll(async () => {
    await agent?.stop();
  });

  async function createFails(args: string[]): Promise<AgentError> {
    const err = await agent.client.createContainer({ containerId: id(), spec: busyboxSpec(args), rootfs }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }

  it.each([
    [['nosuchcmd'], 'command-not-found', grpc.status.NOT_FOUND, CRUN_NOT_FOUND],
    [['/no/such'], 'command-not-found', grpc.status.NOT_FOUND, CRUN_NOT_FOUND_PATH],
    [['/etc/passwd'], 'command-not-executable', grpc.status.PERMISSION_DENIED, CRUN_NOT_EXECUTABLE],
    [['not-exec'], 'command-not-executable', grpc.status.PERMISSION_DENIED, CRUN_NOT_EXECUTABLE],
    [['/adir'], 'command-not-executable', grpc.status.PERMISSION_DENIED, CRUN_DIRECTORY],
  ])('create %j: %s (%s), with crun\'s message', async (args, kind, code, said) => {
    const err = await createFails(args);
    expect(err.kind).toBe(kind);
    expect(err.code).toBe(code);
    expect(err.details).toBe(`crun create failed: ${said}`);
  });

  it('other crun failures stay a failed precondition', async () => {
    const err = await agent.client
      .createContainer({ containerId: id(), spec: busyboxSpec(['true'], { cwd: '/etc/passwd' }), rootfs })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).kind).toBe('precondition');
    expect((err as AgentError).code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('exec of a missing or unexecutable command in a running container', async () => {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer(c);
    try {
      const missing = await client.execProcess({ containerId: c, execId: 'e1', process: { args: ['nosuchcmd'], env: ['PATH=/bin'] } }).then(() => null, (e: unknown) => e);
      expect(missing).toBeInstanceOf(AgentError);
      expect((missing as AgentError).kind).toBe('command-not-found');
      expect((missing as AgentError).details).toBe(`crun exec failed: ${CRUN_NOT_FOUND}`);
      const denied = await client.execProcess({ containerId: c, execId: 'e2', process: { args: ['/etc/passwd'] } }).then(() => null, (e: unknown) => e);
      expect((denied as AgentError).kind).toBe('command-not-executable');
      expect((denied as AgentError).details).toBe(`crun exec failed: ${CRUN_NOT_EXECUTABLE}`);
    } finally {
      await client.signalProcess({ containerId: c }, 'SIGKILL');
      await client.waitProcess({ containerId: c });
      await client.removeContainer(c);
    }
  });
});
