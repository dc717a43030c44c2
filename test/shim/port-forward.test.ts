/**
 * CRI port-forward without a VM: the real agent (on the host, in a network namespace of its own standing in for
 * the guest's) and the shim's forwarder in another one standing in for the pod's, where a connection to
 * 127.0.0.1:PORT (what containerd dials) is redirected to the shim's listener and carried through the agent's
 * PortForward call to 127.0.0.1:PORT on the "guest" side.
 *
 * Safety: every socket and rule is in the two namespaces this file makes; the agent's unix socket is a file.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { run } from '../../src/network/exec.js';
import { createNetns, deleteNetns } from '../../src/network/netns.js';
import { connectInNetns, listenInNetns } from '../../src/shim/netns-socket.js';
import { PortForwarder } from '../../src/shim/port-forward.js';
import pino from 'pino';

const podId = `test-pf-pod-${process.pid}`;
const guestId = `test-pf-guest-${process.pid}`;

/** Everything the peer sent until it closed, after writing `send` and half-closing. */
function exchange(s: net.Socket, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString()));
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.end(send);
  });
}

describe('port-forward through the agent', () => {
  let podNs = '';
  let guestNs = '';
  let agent: HostAgent;
  let forwarder: PortForwarder;
  const servers: net.Server[] = [];
  /** A server in the "guest" namespace's loopback: answers `reply:<what it read>` once the client half-closed. */
  const guestServer = async (): Promise<number> => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.on('data', (b: Buffer) => (got += b.toString()));
      s.on('end', () => s.end(`reply:${got}`));
    });
    servers.push(server);
    return (await listenInNetns(server, guestNs, '127.0.0.1', 0)).port;
  };

  beforeAll(async () => {
    podNs = await createNetns(podId);
    guestNs = await createNetns(guestId);
    agent = await startHostAgent({ wrapper: ['nsenter', `--net=${guestNs}`, '--'] });
    forwarder = await PortForwarder.start(podNs, agent.client, pino({ level: 'silent' }));
  });
  afterAll(async () => {
    await forwarder?.stop().catch(() => undefined);
    for (const s of servers) s.close();
    await agent?.stop();
    await deleteNetns(podId).catch(() => undefined);
    await deleteNetns(guestId).catch(() => undefined);
  });

  it('carries a loopback connection in the pod namespace to the same port in the guest, both half-closes included', async () => {
    const port = await guestServer();
    const rules = await run(['iptables-save', '-t', 'nat'], { netns: podNs });
    expect(rules.stdout).toContain(`! --dport ${forwarder.port} -m comment --comment vrun-port-forward -j REDIRECT --to-ports ${forwarder.port}`);
    expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), 'hello')).toBe('reply:hello');
    // A megabyte each way keeps its bytes and order through the chunking and the backpressure.
    const big = Buffer.alloc(1 << 20, 'x').toString() + 'end';
    const got = await exchange(connectInNetns(podNs, '127.0.0.1', port), big);
    expect(got.length).toBe(big.length + 'reply:'.length);
    expect(got.endsWith('xend')).toBe(true);
  });

  it('closes the pod side at once when nothing listens on the guest port', async () => {
    const closed = await guestServer();
    servers.pop()?.close();
    const s = connectInNetns(podNs, '127.0.0.1', closed);
    const got = await exchange(s, 'anyone?').catch((e: NodeJS.ErrnoException) => `error:${e.code}`);
    expect(got === '' || got === 'error:ECONNRESET' || got === 'error:EPIPE').toBe(true);
    const err = await new Promise<unknown>((resolve) => {
      const d = agent.client.portForward(closed);
      d.on('error', resolve);
      d.on('close', () => resolve(null));
      d.resume();
    });
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe(grpc.status.UNAVAILABLE);
    expect((err as AgentError).message).toMatch(new RegExp(`cannot connect to 127\\.0\\.0\\.1:${closed} in the guest: ECONNREFUSED`));
  });

  it('refuses ports out of range and addresses off the guest loopback, by name', async () => {
    const refused = (port: number, address?: string) =>
      new Promise<AgentError>((resolve, reject) => {
        const d = agent.client.portForward(port, address as '127.0.0.1');
        d.on('error', (e) => (e instanceof AgentError ? resolve(e) : reject(e)));
        d.on('close', () => reject(new Error('not refused')));
        d.resume();
      });
    for (const port of [0, 65536, 1e9]) {
      const e = await refused(port);
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.message).toMatch(/port \d+ is out of range 1\.\.65535/);
    }
    const e = await refused(80, '10.0.0.1');
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.message).toContain('address "10.0.0.1" is not the guest\'s loopback');
    expect(await agent.client.health()).toBe(true);
  });

  it('bounds the open streams in the guest: the 65th waits for RESOURCE_EXHAUSTED, and a slot frees when one ends', async () => {
    const port = await guestServer();
    const open = Array.from({ length: 64 }, () => agent.client.portForward(port));
    // Each has dialled once its first reply could come; a write proves the stream is up on the guest side.
    await Promise.all(open.map((d) => new Promise((r) => d.write('x', r))));
    await new Promise((r) => setTimeout(r, 500));
    const extra = agent.client.portForward(port);
    const err = await new Promise<unknown>((resolve) => {
      extra.on('error', resolve);
      extra.on('close', () => resolve(null));
      extra.resume();
    });
    expect((err as AgentError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const first = open.shift();
    const ended = new Promise<string>((resolve) => {
      let got = '';
      first?.on('data', (b: Buffer) => (got += b.toString()));
      first?.on('end', () => resolve(got));
    });
    first?.end();
    expect(await ended).toBe('reply:x');
    for (const d of open) d.destroy();
    await new Promise((r) => setTimeout(r, 500));
    expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), 'again')).toBe('reply:again');
  });

  it('removes its rule and listener on stop', async () => {
    const port = forwarder.port;
    await forwarder.stop();
    const rules = await run(['iptables-save', '-t', 'nat'], { netns: podNs });
    expect(rules.stdout).not.toContain('vrun-port-forward');
    expect(() => connectInNetns(podNs, '127.0.0.1', port)).toThrow(/ECONNREFUSED/);
  });
});
