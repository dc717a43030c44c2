/**
 * Interop with a real ttrpc peer: containerd 1.6. Our events publisher forwards task events to
 * containerd's ttrpc socket; `ctr events` (subscribed through containerd's gRPC API) must show them with
 * the right topic, namespace and decoded payload. Errors containerd's Go ttrpc returns must arrive as the
 * status codes and messages it sent.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TtrpcClient } from '../../src/ttrpc/client.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';
import { EventPublisher } from '../../src/shim/events.js';
import { startContainerd, type Containerd } from './containerd-fixture.js';

describe('events to a real containerd over ttrpc', () => {
  let ctd: Containerd;
  let events: ChildProcess;
  let output = '';

  async function waitForOutput(pattern: RegExp, what: string, ms = 10_000): Promise<string> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const line = output.split('\n').find((l) => pattern.test(l));
      if (line) return line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`ctr events never showed ${what}; it printed:\n${output}\ncontainerd log tail:\n${ctd.log().slice(-2000)}`);
  }

  beforeAll(async () => {
    ctd = await startContainerd();
    events = spawn('ctr', ['--address', ctd.address, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    events.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    events.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    // The subscription is live once an event containerd itself emits shows up.
    const probe = async (): Promise<void> => {
      for (let i = 0; i < 100 && !output.includes('/namespaces/create'); i++) {
        execFileSync('ctr', ['--address', ctd.address, 'namespaces', 'create', `probe-${i}`]);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await probe();
    await waitForOutput(/\/namespaces\/create/, 'its own namespace event');
  });

  afterAll(async () => {
    events?.kill('SIGTERM');
    await ctd?.stop();
  });

  it('delivers TaskExit and TaskCreate with their topics, namespace and payload', async () => {
    const publisher = new EventPublisher({ address: `unix://${ctd.ttrpcAddress}`, namespace: 'vrun-test' });
    const exitedAt = new Date('2030-01-02T03:04:05.678Z');
    await publisher.publish('TaskExit', { containerId: 'ctr-exit-1', id: 'ctr-exit-1', pid: 4321, exitStatus: 42, exitedAt: { seconds: Math.floor(exitedAt.getTime() / 1000), nanos: 678_000_000 } });
    await publisher.publish('TaskCreate', { containerId: 'ctr-create-1', bundle: '/run/bundle', rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a'] }], io: { stdout: '/fifo/out' }, pid: 99 });
    await publisher.close();

    const exitLine = await waitForOutput(/\/tasks\/exit/, 'the TaskExit');
    expect(exitLine).toContain('vrun-test');
    expect(exitLine).toContain('"container_id":"ctr-exit-1"');
    expect(exitLine).toContain('"pid":4321');
    expect(exitLine).toContain('"exit_status":42');
    expect(exitLine).toContain('2030-01-02T03:04:05.678');

    const createLine = await waitForOutput(/\/tasks\/create/, 'the TaskCreate');
    expect(createLine).toContain('vrun-test');
    expect(createLine).toContain('"container_id":"ctr-create-1"');
    expect(createLine).toContain('"lowerdir=/a"');
    expect(createLine).toContain('"stdout":"/fifo/out"');
  });

  it('gets containerd\'s refusal of an invalid namespace as INVALID_ARGUMENT, without retrying', async () => {
    const publisher = new EventPublisher({ address: ctd.ttrpcAddress, namespace: 'not a valid namespace!' });
    const t0 = Date.now();
    const err = await publisher.publish('TaskOOM', { containerId: 'x' }).catch((e: unknown) => e);
    await publisher.close();
    expect(err).toBeInstanceOf(TtrpcError);
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('namespace') });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('gets Go ttrpc\'s UNIMPLEMENTED for a service containerd does not serve', async () => {
    const client = await TtrpcClient.connect(ctd.ttrpcAddress);
    try {
      await expect(client.call('containerd.task.v2.Task', 'State', new Uint8Array(0), { timeoutMs: 5000 })).rejects.toMatchObject({
        code: Code.UNIMPLEMENTED,
        message: expect.stringContaining('containerd.task.v2.Task'),
      });
      // Concurrent calls on one connection to the Go server, each answered on its own stream.
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => client.call(`svc.${i}`, 'M', new Uint8Array(0))));
      expect(results.map((r) => (r.status === 'rejected' ? (r.reason as TtrpcError).message : 'ok'))).toEqual(Array.from({ length: 10 }, (_, i) => expect.stringContaining(`svc.${i}`)));
    } finally {
      client.close();
    }
  });
});
