import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/agent/host/agent-error.js';
import { busyboxSpec, readAll, startHostAgent, type HostAgent } from '../../src/agent/host/host-process.js';

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

  it('creates and starts in one call', async () => {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sh', '-c', 'echo started; exit 4']), rootfs, start: true });
    // The output waited in the pipe for this reader.
    expect((await readAll(client.readOutput({ containerId: c }, 'stdout'))).toString()).toBe('started\n');
    expect(await client.waitProcess({ containerId: c })).toEqual({ exitStatus: 4, signal: 0, oomKilled: false });
    await expect(client.startContainer(c)).rejects.toThrow(/not created/);
    await client.removeContainer(c);
  });

  it('reports 137 when the container is SIGKILLed', async () => {
    const c = id();
    await agent.client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await agent.client.startContainer(c);
    await agent.client.signalProcess({ containerId: c }, 'SIGKILL');
    expect(await agent.client.waitProcess({ containerId: c })).toEqual({ exitStatus: 137, signal: 9, oomKilled: false });
    await agent.client.removeContainer(c);
  });

  it('keeps 100 MB of stdout and stderr apart and byte-exact', async () => {
    const c = id();
    const { client } = agent;
    // Two different byte patterns, interleaved in time by two writers.
    const script = 'yes abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz012345678 | head -c 104857600 & ' +
      'yes 0000000000 | head -c 104857600 >&2; wait';
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sh', '-c', script]), rootfs });
    const digest = async (which: 'stdout' | 'stderr') => {
      const h = createHash('sha256');
      let bytes = 0;
      for await (const chunk of client.readOutput({ containerId: c }, which)) {
        h.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      return { bytes, sha: h.digest('hex') };
    };
    const out = digest('stdout');
    const err = digest('stderr');
    await client.startContainer(c);
    const [o, e] = await Promise.all([out, err]);
    expect((await client.waitProcess({ containerId: c })).exitStatus).toBe(0);
    // The bytes `yes LINE | head -c N` produce, computed here independently.
    const expected = (line: string) => {
      const h = createHash('sha256');
      const unit = `${line}\n`;
      const block = Buffer.from(unit.repeat(Math.ceil((1 << 20) / unit.length)));
      const usable = block.length - (block.length % unit.length);
      let left = 104857600;
      while (left > 0) {
        const piece = block.subarray(0, Math.min(left, usable));
        h.update(piece);
        left -= piece.length;
      }
      return h.digest('hex');
    };
    expect(o.bytes).toBe(104857600);
    expect(e.bytes).toBe(104857600);
    expect(o.sha).toBe(expected('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz012345678'));
    expect(e.sha).toBe(expected('0000000000'));
    await client.removeContainer(c);
  });

  it('stops a writer whose reader stops reading, and resumes it when the reader does', async () => {
    const c = id();
    const { client } = agent;
    const total = 128 * 1024 * 1024;
    const pid = await client.createContainer({ containerId: c, spec: busyboxSpec(['head', '-c', String(total), '/dev/zero']), rootfs });
    const it = client.readOutput({ containerId: c }, 'stdout')[Symbol.asyncIterator]();
    await client.startContainer(c);
    let received = ((await it.next()).value as Buffer).length;
    // The reader now takes nothing: the writer must come to a stop well short of its 128 MiB, held by the
    // pipe, the agent's few read buffers and the HTTP/2 window, instead of the agent buffering it all.
    const written = async () => Number(/^wchar: (\d+)$/m.exec(await readFile(`/proc/${pid}/io`, 'utf8'))?.[1]);
    let last = -1;
    let now = await written();
    while (now !== last) {
      await new Promise((r) => setTimeout(r, 500));
      last = now;
      now = await written();
    }
    expect(now).toBeLessThan(total / 2);
    for (let r = await it.next(); !r.done; r = await it.next()) received += (r.value as Buffer).length;
    expect(received).toBe(total);
    expect((await client.waitProcess({ containerId: c })).exitStatus).toBe(0);
    await client.removeContainer(c);
  });

  it('hands the rest of an output, in order, to a reader that comes after one left mid-stream', async () => {
    const c = id();
    const { client } = agent;
    const last = 3_000_000;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['seq', '1', String(last)]), rootfs });
    await client.startContainer(c);
    // Readers that each take one chunk and leave while the agent's read buffers are on their way to them:
    // the next reader must not wait for those buffers.
    for (let i = 0; i < 5; i++) {
      const leaver = client.readOutput({ containerId: c }, 'stdout');
      const chunk = ((await leaver[Symbol.asyncIterator]().next()).value as Buffer).toString();
      if (i === 0) expect(chunk.startsWith('1\n2\n3\n')).toBe(true);
      leaver.destroy();
      await new Promise((r) => setTimeout(r, 200));
    }
    const rest = (await readAll(client.readOutput({ containerId: c }, 'stdout'))).toString();
    expect((await client.waitProcess({ containerId: c })).exitStatus).toBe(0);
    // What the readers that left had in flight is gone; the rest is a gap-free, in-order tail of the sequence.
    const lines = rest.slice(rest.indexOf('\n') + 1).split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBeGreaterThan(0);
    const from = Number(lines[0]);
    expect(from).toBeGreaterThan(1);
    expect(lines.every((l, i) => Number(l) === from + i)).toBe(true);
    expect(Number(lines[lines.length - 1])).toBe(last);
    await client.removeContainer(c);
  });

  it('pipes stdin to the process and delivers EOF when it ends', async () => {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sh', '-c', 'wc -c; md5sum']), rootfs });
    const out = readAll(client.readOutput({ containerId: c }, 'stdout'));
    await client.startContainer(c);
    const input = Buffer.alloc(3 * 1024 * 1024 + 7, 0x61);
    const stdin = client.writeStdin({ containerId: c });
    stdin.end(input);
    expect(await stdin.written).toBe(input.length);
    expect((await client.waitProcess({ containerId: c })).exitStatus).toBe(0);
    // wc consumed everything, so md5sum read an immediate EOF: the md5 of nothing.
    expect((await out).toString()).toBe(`${input.length}\nd41d8cd98f00b204e9800998ecf8427e  -\n`);
    await client.removeContainer(c);
  });

  it('execs into a running container, with its own stdio and exit code', async () => {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer(c);
    const pid = await client.execProcess({ containerId: c, execId: 'e1', process: { args: ['sh', '-c', 'echo in-$(hostname); cat /proc/1/cmdline; exit 5'], env: ['PATH=/bin'], cwd: '/' } });
    expect(pid).toBeGreaterThan(1);
    const out = await readAll(client.readOutput({ containerId: c, execId: 'e1' }, 'stdout'));
    expect(await client.waitProcess({ containerId: c, execId: 'e1' })).toEqual({ exitStatus: 5, signal: 0, oomKilled: false });
    // Same UTS and pid namespace as the container: its hostname, and its pid 1 is the init's sleep.
    expect(out.toString()).toBe('in-ctr\nsleep\u00001000\u0000');
    const procs = await client.listProcesses(c);
    expect(procs.some((p) => p.known && p.execId === '')).toBe(true);
    await client.removeContainer(c, { force: true });
  });

  it('resolves an exec\'s -u in the container\'s own /etc/passwd and /etc/group, as the guest sees them', async () => {
    const { client } = agent;
    const own = await client.createBusyboxRootfs('rootfs-users');
    await writeFile(path.join(own, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\n');
    await writeFile(path.join(own, 'etc', 'group'), 'root:x:0:\nstaff:x:1001:\nwheel:x:10:alice\n');
    const c = id();
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs: own });
    await client.startContainer(c);
    const idsOf = async (execId: string, userSpec: string) => {
      await client.execProcess({ containerId: c, execId, process: { args: ['sh', '-c', 'echo $(id -u) $(id -g) $(id -G)'], env: ['PATH=/bin'] }, userSpec });
      const out = await readAll(client.readOutput({ containerId: c, execId }, 'stdout'));
      await client.waitProcess({ containerId: c, execId });
      return out.toString().trim();
    };
    expect(await idsOf('u1', 'alice')).toBe('1000 1001 1001 10');
    expect(await idsOf('u2', 'alice:wheel')).toBe('1000 10 10');
    expect(await idsOf('u3', '4242:77')).toBe('4242 77 77');
    // The guest changed its passwd file after the container started: the exec sees the new one.
    await writeFile(path.join(own, 'etc', 'passwd'), 'bob:x:2000:2000::/:/bin/sh\n');
    expect(await idsOf('u4', 'bob')).toBe('2000 2000 2000');
    const unknown = await client.execProcess({ containerId: c, execId: 'u5', process: { args: ['true'] }, userSpec: 'alice' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(unknown).toBeInstanceOf(AgentError);
    expect((unknown as AgentError).kind).toBe('not-found');
    expect((unknown as AgentError).details).toMatch(/unable to find user alice/);
    const bad = await client.execProcess({ containerId: c, execId: 'u6', process: { args: ['true'] }, userSpec: 'a b' }).catch((e: unknown) => e);
    expect((bad as AgentError).kind).toBe('invalid');
    await client.removeContainer(c, { force: true });
  });

  it('runs a terminal whose resize is visible to stty size', async () => {
    const c = id();
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sh', '-c', 'read x; stty size; echo got:$x']), rootfs, stdio: 'terminal' });
    const out = readAll(client.readOutput({ containerId: c }, 'stdout'));
    await client.startContainer(c);
    await client.resizeTerminal({ containerId: c }, { rows: 33, cols: 77 });
    const stdin = client.writeStdin({ containerId: c }, { closeOnEnd: false });
    stdin.end('go\n');
    await stdin.written;
    expect((await client.waitProcess({ containerId: c })).exitStatus).toBe(0);
    const text = (await out).toString();
    expect(text).toContain('33 77\r\n');
    expect(text).toContain('got:go');
    await client.removeContainer(c);
  });

  it('runs an exec with its own terminal, whose resize is visible to stty size (ids of CRI length)', async () => {
    // CRI gives containers and execs 64-hex ids: no path made of them may outgrow a unix socket's 107 bytes.
    const c = createHash('sha256').update(id()).digest('hex');
    const { client } = agent;
    await client.createContainer({ containerId: c, spec: busyboxSpec(['sleep', '1000']), rootfs });
    await client.startContainer(c);
    const ref = { containerId: c, execId: createHash('sha256').update(`exec-${c}`).digest('hex') };
    await client.execProcess({ ...ref, process: { args: ['sh', '-c', 'read x; stty size; tty; echo got:$x'], env: ['PATH=/bin'] }, stdio: 'terminal' });
    const out = readAll(client.readOutput(ref, 'stdout'));
    // A terminal has no separate stderr: its stream ends at once, empty.
    expect((await readAll(client.readOutput(ref, 'stderr'))).length).toBe(0);
    await client.resizeTerminal(ref, { rows: 21, cols: 93 });
    const stdin = client.writeStdin(ref, { closeOnEnd: false });
    stdin.end('go\n');
    await stdin.written;
    expect(await client.waitProcess(ref)).toEqual({ exitStatus: 0, signal: 0, oomKilled: false });
    const lines = (await out).toString().split('\r\n');
    // The terminal echoes the input line first; then the exec's own output.
    expect(lines).toEqual(['go', '21 93', expect.stringMatching(/^\/dev\/pts\/\d+$/), 'got:go', '']);
    // The init process has no terminal: resizing it is refused.
    await expect(client.resizeTerminal({ containerId: c }, { rows: 10, cols: 10 })).rejects.toThrow(/has no terminal/);
    await client.removeContainer(c, { force: true });
  });

  it('honours env, cwd, user and a read-only rootfs from the OCI spec', async () => {
    const r = await runOnce(['sh', '-c', 'echo $FOO; pwd; id -u; id -g; touch /x 2>/dev/null && echo writable || echo readonly; touch /tmp/y && echo tmp-ok'], {
      env: ['PATH=/bin', 'FOO=bar baz'],
      cwd: '/etc',
      user: { uid: 1234, gid: 4321 },
      readonly: true,
    });
    expect(r.exit.exitStatus).toBe(0);
    expect(r.stdout).toBe('bar baz\n/etc\n1234\n4321\nreadonly\ntmp-ok\n');
  });

  // Last: it restarts the agent this file shares.
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
