import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxSpec, startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';
import { refusal } from './refusal.js';

/** A raw gRPC call with hand-made request bytes: what a hostile or broken peer can send. */
function rawCall(socketPath: string, method: string, body: Buffer): Promise<{ code: grpc.status; details: string }> {
  const c = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  return new Promise((resolve) => {
    c.makeUnaryRequest(`/vrun.agent.v1.Agent/${method}`, (b: Buffer) => b, (b: Buffer) => b, body, (err) => {
      c.close();
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' });
    });
  });
}

/** protobuf wire bytes of a string field. */
function stringField(n: number, s: string): Buffer {
  const data = Buffer.from(s);
  const len: number[] = [];
  let v = data.length;
  while (v > 127) {
    len.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  len.push(v);
  return Buffer.concat([Buffer.from([(n << 3) | 2, ...len]), data]);
}


describe('agent on the host: hostile requests', () => {
  let agent: HostAgent;
  let rootfs: string;

  beforeAll(async () => {
    agent = await startHostAgent();
    rootfs = await agent.client.createBusyboxRootfs('rootfs');
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('refuses an oversized message with RESOURCE_EXHAUSTED', async () => {
    const body = stringField(2, 'x'.repeat(5 * 1024 * 1024));
    const r = await rawCall(agent.socketPath, 'CreateContainer', body);
    expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await agent.client.health()).toBe(true);
  });

  it('refuses unknown fields, naming the field', async () => {
    const r = await rawCall(agent.socketPath, 'Health', Buffer.from([0x98, 0x06, 0x01])); // field 99, varint 1
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.details).toMatch(/unknown field number 99 in HealthRequest/);
    const nested = await rawCall(agent.socketPath, 'StartContainer', Buffer.concat([stringField(1, 'abc'), stringField(7, 'zz')]));
    expect(nested.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(nested.details).toMatch(/unknown field number 7/);
    expect(await agent.client.health()).toBe(true);
  });

  it('refuses ids outside the safe charset', async () => {
    for (const bad of ['../x', 'a/b', '', '.hidden', '-rf', 'x'.repeat(77), 'a\u0000b']) {
      const err = await refusal(agent.client.createContainer({ containerId: bad, spec: busyboxSpec(['true']), rootfs }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/container_id .* is not valid/);
    }
    const tag = await refusal(agent.client.mountShare({ tag: '../vrun-rootfs', path: 'root' }));
    expect(tag.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(tag.details).toMatch(/share tag "\.\.\/vrun-rootfs" is not valid/);
    const exec = await refusal(agent.client.execProcess({ containerId: 'nope', execId: '../../etc', process: { args: ['true'] } }));
    expect([grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND]).toContain(exec.code);
  });

  it('refuses rootfs paths outside the share dir, also through a symlink', async () => {
    for (const bad of ['/', '/etc', `${agent.shareDir}/../..`, 'relative/path']) {
      const err = await refusal(agent.client.createContainer({ containerId: 'r1', spec: busyboxSpec(['true']), rootfs: bad }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/rootfs/);
    }
    const link = path.join(agent.shareDir, 'escape');
    await symlink('/usr', link);
    const viaLink = await refusal(agent.client.createContainer({ containerId: 'r2', spec: busyboxSpec(['true']), rootfs: link }));
    expect(viaLink.details).toMatch(/outside the agent's directories/);
    await mkdir(path.join(agent.shareDir, 'empty'));
    const rel = await refusal(agent.client.createBusyboxRootfs('../outside'));
    expect(rel.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses bad JSON specs and unknown signals; signals reach only known processes', async () => {
    const badSpec = await refusal(agent.client.createContainer({ containerId: 'j1', spec: { ociVersion: '1', process: { args: [] } }, rootfs }));
    expect(badSpec.details).toMatch(/args must be a non-empty array/);

    // Resources of the wrong type or shape: crun would ignore them and run without the limit.
    const badLimit = await refusal(agent.client.createContainer({ containerId: 'j2', spec: busyboxSpec(['true'], { linux: { resources: { pids: { limit: '10' } } } }), rootfs }));
    expect(badLimit.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badLimit.details).toMatch(/linux\.resources\.pids\.limit must be an integer/);

    await agent.client.createContainer({ containerId: 's1', spec: busyboxSpec(['sleep', '1000']), rootfs });
    await agent.client.startContainer('s1');
    for (const [resources, why] of [
      [{ memory: { limit: 'lots' } }, /memory\.limit must be an integer/],
      [{ pids: { max: 5 } }, /pids\.max is not an OCI resource field/],
      [{ cpus: 2 }, /cpus is not an OCI resource field/],
      [{ hugepageLimits: [{ pageSize: '2MB', limit: -1 }] }, /hugepageLimits\[0\]\.limit must be a non-negative integer/],
    ] as const) {
      const err = await refusal(agent.client.updateResources('s1', resources));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(why);
    }
    for (const sig of ['SIGFOO', '99', '0', '-9', 'KILL; rm -rf /']) {
      const err = await refusal(agent.client.signalProcess({ containerId: 's1' }, sig));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/signal/);
    }
    // The API names processes by exec id, never by pid: a process the agent did not start cannot be named.
    const foreign = await refusal(agent.client.signalProcess({ containerId: 's1', execId: String(process.pid) }, 'KILL'));
    expect(foreign.code).toBe(grpc.status.NOT_FOUND);
    const missing = await refusal(agent.client.signalProcess({ containerId: 'nope' }, 'KILL'));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    // Still serving, and the container is untouched by all of the above.
    expect((await agent.client.listProcesses('s1')).length).toBeGreaterThan(0);
    await agent.client.signalProcess({ containerId: 's1' }, '9');
    const exit = await agent.client.waitProcess({ containerId: 's1' });
    expect(exit.exitStatus).toBe(137);
    await agent.client.removeContainer('s1');
    expect(await agent.client.health()).toBe(true);
  });

  it('refuses bad hostnames and DNS entries, and writes good ones', async () => {
    expect((await refusal(agent.client.setHostname('bad host\nname'))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await refusal(agent.client.setDns({ nameservers: ['1.1.1.1\nnameserver 6.6.6.6'] }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    await agent.client.setHostname('pod-1');
    await agent.client.setDns({ nameservers: ['10.0.0.2'], searches: ['svc.local'] });
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(path.join(agent.etcDir, 'resolv.conf'), 'utf8')).toBe('nameserver 10.0.0.2\nsearch svc.local\n');
    expect(await readFile(path.join(agent.etcDir, 'hostname'), 'utf8')).toBe('pod-1\n');
  });

  it('refuses bad sysctls before writing any, names a missing one, and writes good ones', async () => {
    const { readFile } = await import('node:fs/promises');
    const file = path.join(agent.procSysDir, 'kernel', 'shm_rmid_forced');
    const bads: Record<string, string>[] = [{ '../../etc/passwd': 'x' }, { 'kernel/shm_rmid_forced': '1' }, { 'kernel.shm_rmid_forced': '1\nkernel.x' }, { kernel: '1' }];
    for (const bad of bads) {
      expect((await refusal(agent.client.setSysctls({ 'kernel.shm_rmid_forced': '1', ...bad }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    }
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`kernel.k${i}`, '1']));
    expect((await refusal(agent.client.setSysctls(many))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await readFile(file, 'utf8')).toBe('0\n');
    const missing = await refusal(agent.client.setSysctls({ 'kernel.no_such_parameter': '1' }));
    expect(missing.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(missing.message).toContain('kernel.no_such_parameter');
    await agent.client.setSysctls({ 'kernel.shm_rmid_forced': '1' });
    // Written in place as /proc/sys takes it (never created, never truncated): over this file's "0\n".
    expect(await readFile(file, 'utf8')).toBe('1\n');
  });
});
