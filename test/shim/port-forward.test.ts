/**
 * CRI port-forward without a VM: the real agent (on the host, in a network namespace of its own standing in for
 * the guest's) and the shim's forwarder in another one standing in for the pod's, where a connection to
 * 127.0.0.1:PORT (what containerd dials) is redirected to the shim's listener and carried through the agent's
 * PortForward call to localhost:PORT on the "guest" side: 127.0.0.1, then ::1 when nothing is there (containerd's
 * order), so the "guest" namespace's lo has both.
 *
 * Safety: every socket and rule is in the two namespaces this file makes; the agent's unix socket is a file.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { run } from '../../src/network/exec.js';
import { createNetns, deleteNetns } from '../../src/network/netns.js';
import { connectInNetns, listenInNetns } from '../../src/shim/netns-socket.js';
import { PortForwarder } from '../../src/shim/port-forward.js';
import pino from 'pino';
import { loadAgentProto } from '../../src/agent/protocol/proto.js';

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
  /** What the shim logged (debug and up): the agent's error for a connection it could not forward. */
  const shimLog: string[] = [];
  /**
   * A server on the "guest" namespace's loopback (`host`, port 0 for any free one): answers
   * `<prefix>reply:<what it read>` once the client half-closed.
   */
  const guestServer = async (host = '127.0.0.1', port = 0, prefix = ''): Promise<number> => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.on('data', (b: Buffer) => (got += b.toString()));
      s.on('end', () => s.end(`${prefix}reply:${got}`));
    });
    servers.push(server);
    return (await listenInNetns(server, guestNs, host, port)).port;
  };
  /** Closes a server guestServer made, and waits until it no longer listens. */
  const closeServer = (server: net.Server | undefined): Promise<void> =>
    new Promise((resolve, reject) => {
      if (!server) return reject(new Error('no server to close'));
      servers.splice(servers.indexOf(server), 1);
      server.close(() => resolve());
    });
  /** How a PortForward call through the agent client ended: the error, or null when it closed cleanly. */
  const outcome = (d: Duplex): Promise<unknown> =>
    new Promise((resolve) => {
      d.on('error', resolve);
      d.on('close', () => resolve(null));
      d.resume();
    });

  beforeAll(async () => {
    podNs = await createNetns(podId);
    guestNs = await createNetns(guestId);
    // The guest's lo carries ::1 (CONFIG_IPV6=y); a host may disable IPv6 in new namespaces: enable it in this one only.
    if (!(await run(['ip', '-6', 'addr', 'show', 'dev', 'lo'], { netns: guestNs })).stdout.includes('::1/128')) {
      await run(['sysctl', '-q', '-w', 'net.ipv6.conf.lo.disable_ipv6=0'], { netns: guestNs });
    }
    expect((await run(['ip', '-6', 'addr', 'show', 'dev', 'lo'], { netns: guestNs })).stdout).toContain('inet6 ::1/128');
    agent = await startHostAgent({ wrapper: ['nsenter', `--net=${guestNs}`, '--'] });
    forwarder = await PortForwarder.start(podNs, agent.client, pino({ level: 'debug' }, { write: (line: string) => void shimLog.push(line) }));
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

  it('closes the pod side at once when nothing listens on either family, and the error names both attempts', async () => {
    const closed = await guestServer();
    await closeServer(servers.at(-1));
    const s = connectInNetns(podNs, '127.0.0.1', closed);
    const got = await exchange(s, 'anyone?').catch((e: NodeJS.ErrnoException) => `error:${e.code}`);
    expect(got === '' || got === 'error:ECONNRESET' || got === 'error:EPIPE').toBe(true);
    const both = new RegExp(`cannot connect to localhost:${closed} in the guest, IPv4: 127\\.0\\.0\\.1:${closed} ECONNREFUSED, IPv6: \\[::1\\]:${closed} ECONNREFUSED`);
    // The shim's connection failed with the agent's error, as the agent client (what the shim calls) sees it.
    await expect.poll(() => shimLog.filter((l) => l.includes('port-forward connection failed')).join('\n')).toMatch(both);
    const err = await outcome(agent.client.portForward(closed));
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe(grpc.status.UNAVAILABLE);
    expect((err as AgentError).message).toMatch(both);
    // An explicit address is dialled alone, and its error names only it.
    for (const [address, shown] of [['127.0.0.1', '127\\.0\\.0\\.1'], ['::1', '\\[::1\\]']] as const) {
      const one = (await outcome(agent.client.portForward(closed, address))) as AgentError;
      expect(one.code).toBe(grpc.status.UNAVAILABLE);
      expect(one.message).toMatch(new RegExp(`cannot connect to ${shown}:${closed} in the guest: ECONNREFUSED$`));
    }
  });

  it('reaches a guest server listening only on ::1 through the pod\'s 127.0.0.1:PORT', async () => {
    const port = await guestServer('::1', 0, 'v6:');
    expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), 'hello')).toBe('v6:reply:hello');
    // A megabyte each way through the fallback keeps its bytes and order too.
    const big = Buffer.alloc(1 << 20, 'y').toString() + 'end';
    const got = await exchange(connectInNetns(podNs, '127.0.0.1', port), big);
    expect(got).toBe(`v6:reply:${big}`);
    // An explicit 127.0.0.1 is not rerouted to ::1.
    expect(((await outcome(agent.client.portForward(port, '127.0.0.1'))) as AgentError).message).toContain('ECONNREFUSED');
  });

  it('prefers the IPv4 server when both families listen on the port, and falls back to IPv6 once it is gone', async () => {
    const port = await guestServer('127.0.0.1', 0, 'v4:');
    const v4 = servers.at(-1);
    await guestServer('::1', port, 'v6:');
    for (let i = 0; i < 3; i++) expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), `n${i}`)).toBe(`v4:reply:n${i}`);
    await closeServer(v4);
    expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), 'later')).toBe('v6:reply:later');
  });

  it('keeps what the host sent before the guest connected, in order, across the fallback', async () => {
    const port = await guestServer('::1', 0, 'v6:');
    // The pod side: the client writes as soon as it is connected, before the guest's dials have finished.
    const s = connectInNetns(podNs, '127.0.0.1', port);
    const replied = exchange(s, 'first-');
    expect(await replied).toBe('v6:reply:first-');
    // The agent's own call: data in the opening message and in two more, all sent before any reply could come.
    const Ctor = grpc.makeClientConstructor(loadAgentProto().service, 'Agent');
    const raw = new Ctor(`unix:${agent.socketPath}`, grpc.credentials.createInsecure()) as unknown as {
      portForward(): grpc.ClientDuplexStream<{ port?: number; address?: string; data?: Buffer }, { data: Buffer }>;
      close(): void;
    };
    try {
      const call = raw.portForward();
      const got = new Promise<string>((resolve, reject) => {
        let text = '';
        call.on('data', (m: { data: Buffer }) => (text += m.data.toString()));
        call.on('error', reject);
        call.on('end', () => resolve(text));
      });
      call.write({ port, data: Buffer.from('a-') });
      call.write({ data: Buffer.from('b-') });
      call.write({ data: Buffer.alloc(200_000, 'c') });
      call.end();
      const text = await got;
      expect(text).toBe(`v6:reply:a-b-${'c'.repeat(200_000)}`);
    } finally {
      raw.close();
    }
  });

  it('counts a call once against the bound across the fallback, and releases it when both dials fail', async () => {
    const port = await guestServer('::1', 0, 'v6:');
    const closed = await guestServer();
    await closeServer(servers.at(-1));
    // Calls that fail on both families give their slot back.
    for (let i = 0; i < 70; i++) expect(((await outcome(agent.client.portForward(closed))) as AgentError).code).toBe(grpc.status.UNAVAILABLE);
    const open = Array.from({ length: 64 }, () => agent.client.portForward(port));
    await Promise.all(open.map((d) => new Promise((r) => d.write('x', r))));
    await new Promise((r) => setTimeout(r, 500));
    expect(((await outcome(agent.client.portForward(port))) as AgentError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // All 64 reached the IPv6 server: each answers once its call half-closes.
    const replies = open.map(
      (d) =>
        new Promise<string>((resolve, reject) => {
          let got = '';
          d.on('data', (b: Buffer) => (got += b.toString()));
          d.on('error', reject);
          d.on('end', () => resolve(got));
          d.end();
        }),
    );
    expect(await Promise.all(replies)).toEqual(open.map(() => 'v6:reply:x'));
    await new Promise((r) => setTimeout(r, 500));
    expect(await exchange(connectInNetns(podNs, '127.0.0.1', port), 'again')).toBe('v6:reply:again');
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
