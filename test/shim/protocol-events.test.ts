import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TtrpcServer } from '../../src/ttrpc/server.js';
import { Code } from '../../src/ttrpc/status.js';
import { Empty, dateFromTimestamp } from '../../src/ttrpc/protobuf/well-known.js';
import { EventPublisher } from '../../src/shim/events.js';
import { EVENTS_SERVICE, ForwardRequest, TaskEvents, type Envelope } from '../../src/shim/protocol/event-messages.js';

/** A stand-in for containerd's ttrpc Events service that records what it was forwarded. */
async function eventsServer(sock: string, received: Envelope[]): Promise<TtrpcServer> {
  const server = new TtrpcServer();
  server.register(EVENTS_SERVICE, {
    Forward: (payload) => {
      const { envelope } = ForwardRequest.decode(payload);
      if (envelope) received.push(envelope);
      return Empty.encode({});
    },
  });
  await server.listen(sock);
  return server;
}

describe('task event publisher', () => {
  let dir: string;
  let sock: string;
  const servers: TtrpcServer[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-events-'));
    sock = path.join(dir, 'containerd.sock.ttrpc');
  });

  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('wraps every task event with its topic, type URL, namespace and timestamp', async () => {
    const received: Envelope[] = [];
    servers.push(await eventsServer(sock, received));
    const publisher = new EventPublisher({ address: sock, namespace: 'k8s.io' });
    const at = new Date('2031-05-06T07:08:09.010Z');
    await publisher.publish('TaskCreate', { containerId: 'c', bundle: '/b', pid: 1 }, at);
    await publisher.publish('TaskStart', { containerId: 'c', pid: 1 }, at);
    await publisher.publish('TaskExecAdded', { containerId: 'c', execId: 'e' }, at);
    await publisher.publish('TaskExecStarted', { containerId: 'c', execId: 'e', pid: 2 }, at);
    await publisher.publish('TaskPaused', { containerId: 'c' }, at);
    await publisher.publish('TaskResumed', { containerId: 'c' }, at);
    await publisher.publish('TaskOOM', { containerId: 'c' }, at);
    await publisher.publish('TaskExit', { containerId: 'c', id: 'c', pid: 1, exitStatus: 137 }, at);
    await publisher.publish('TaskDelete', { containerId: 'c', pid: 1, exitStatus: 137 }, at);
    await publisher.close();

    expect(received.map((e) => [e.topic, e.event?.typeUrl])).toEqual([
      ['/tasks/create', 'containerd.events.TaskCreate'],
      ['/tasks/start', 'containerd.events.TaskStart'],
      ['/tasks/exec-added', 'containerd.events.TaskExecAdded'],
      ['/tasks/exec-started', 'containerd.events.TaskExecStarted'],
      ['/tasks/paused', 'containerd.events.TaskPaused'],
      ['/tasks/resumed', 'containerd.events.TaskResumed'],
      ['/tasks/oom', 'containerd.events.TaskOOM'],
      ['/tasks/exit', 'containerd.events.TaskExit'],
      ['/tasks/delete', 'containerd.events.TaskDelete'],
    ]);
    for (const e of received) {
      expect(e.namespace).toBe('k8s.io');
      expect(dateFromTimestamp(e.timestamp!).toISOString()).toBe(at.toISOString());
    }
    expect(TaskEvents.TaskExit.type.decode(received[7]!.event!.value)).toMatchObject({ containerId: 'c', exitStatus: 137 });
  });

  it('keeps publication order when events are published without waiting', async () => {
    const received: Envelope[] = [];
    servers.push(await eventsServer(sock, received));
    const publisher = new EventPublisher({ address: sock, namespace: 'default' });
    await Promise.all(Array.from({ length: 200 }, (_, i) => publisher.publish('TaskStart', { containerId: `c${i}`, pid: i + 1 })));
    await publisher.close();
    expect(received.map((e) => TaskEvents.TaskStart.type.decode(e.event!.value).pid)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('retries until containerd listens, then delivers', async () => {
    const received: Envelope[] = [];
    const publisher = new EventPublisher({ address: `unix://${sock}`, namespace: 'default', maxAttempts: 6 });
    const sent = publisher.publish('TaskExit', { containerId: 'late', exitStatus: 1 });
    await new Promise((r) => setTimeout(r, 250));
    expect(received).toHaveLength(0);
    servers.push(await eventsServer(sock, received));
    await sent;
    await publisher.close();
    expect(received.map((e) => e.topic)).toEqual(['/tasks/exit']);
  });

  it('gives up after its attempts and bounds what waits in the queue', async () => {
    const publisher = new EventPublisher({ address: sock, namespace: 'default', maxAttempts: 2, maxQueued: 2 });
    const first = publisher.publish('TaskOOM', { containerId: 'a' });
    const second = publisher.publish('TaskOOM', { containerId: 'b' });
    await expect(publisher.publish('TaskOOM', { containerId: 'c' })).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    await expect(first).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: expect.stringContaining('cannot connect') });
    await expect(second).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    await publisher.close();
    await expect(publisher.publish('TaskOOM', { containerId: 'd' })).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: expect.stringContaining('closed') });
  });
});
