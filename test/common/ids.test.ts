/** The one id rule (src/common/ids.ts), and the places that name things after ids refusing a bad one. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../src/agent/guest/config.js';
import { mountShare } from '../../src/agent/guest/guest-setup.js';
import { checkExecId, checkId as checkAgentId, isSafeId } from '../../src/agent/guest/request-checks.js';
import { VrunError } from '../../src/common/errors.js';
import { MAX_ID_LENGTH, checkId, isValidId } from '../../src/common/ids.js';
import { createRootfs, destroyRootfs } from '../../src/image/rootfs.js';
import type { StoreLayout } from '../../src/image/store-layout.js';
import { newSandboxId } from '../../src/sandbox/state.js';
import { reserveName, validateName } from '../../src/sandbox/names.js';
import type { EventPublisher } from '../../src/shim/events.js';
import type { PodPaths } from '../../src/shim/pod-paths.js';
import type { CreateTaskRequest } from '../../src/shim/protocol/task-messages.js';
import { VrunTasks } from '../../src/shim/tasks.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';

const CRI_ID = 'f'.repeat(64);

const GOOD = [
  CRI_ID,
  '0123456789abcdef0123456789abcdef', // a sandbox id vrun makes
  'exec-0a1b2c3d4e5f', // an exec id vrun makes
  'native-hello',
  'web.1',
  'my_app-2',
  'A',
  'x'.repeat(MAX_ID_LENGTH),
];

const BAD = [
  '',
  '.',
  '..',
  '../x',
  'a/b',
  '/abs',
  '.hidden',
  '-rf',
  '_x',
  'trailing-',
  'a..b',
  'a--b',
  'a b',
  'a\u0000b',
  'a\nb',
  'é',
  'x'.repeat(MAX_ID_LENGTH + 1),
];

describe('the id rule', () => {
  it('accepts CRI ids, the ids vrun makes, and plain names', () => {
    for (const id of [...GOOD, newSandboxId()]) {
      expect(isValidId(id), id).toBe(true);
      expect(checkId('container id', id)).toBe(id);
    }
  });

  it('refuses path tricks, empty and over-long ids, and non-strings, naming the id', () => {
    for (const id of BAD) {
      expect(isValidId(id), JSON.stringify(id)).toBe(false);
      let err: unknown;
      try {
        checkId('container id', id);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VrunError);
      expect((err as VrunError).kind).toBe('invalid');
      expect((err as VrunError).message).toContain(`container id ${JSON.stringify(id)} is not valid`);
    }
    for (const v of [undefined, null, 7, ['a']]) expect(isValidId(v)).toBe(false);
    expect(() => checkId('exec id', 42)).toThrow(/exec id \(number\) is not valid/);
  });

  it('shows at most 80 characters of a long bad id', () => {
    expect(() => checkId('container id', `../${'y'.repeat(5000)}`)).toThrow(/^container id "\.\.\/y{77}…" is not valid/);
  });

  it('takes a lower limit, never a higher one', () => {
    expect(isValidId('x'.repeat(36), 36)).toBe(true);
    expect(isValidId('x'.repeat(37), 36)).toBe(false);
    expect(() => checkId('share tag', 'x'.repeat(37), 36)).toThrow(/at most 36 characters/);
    expect(isValidId('x'.repeat(MAX_ID_LENGTH + 1), 1000)).toBe(false);
  });
});

describe('the places that use it', () => {
  it('the shim refuses to create a task with a bad container id (INVALID_ARGUMENT)', async () => {
    const events = { publish: async () => undefined } as unknown as EventPublisher;
    const tasks = new VrunTasks({} as PodPaths, events, pino({ level: 'silent' }), async () => undefined);
    const err = await tasks.create({ id: '../../etc' } as CreateTaskRequest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect((err as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as TtrpcError).message).toMatch(/container id "\.\.\/\.\.\/etc" is not valid/);
  });

  it('the agent refuses bad container ids, exec ids and share tags', async () => {
    expect(() => checkAgentId('container_id', '../x')).toThrow(/container_id "\.\.\/x" is not valid/);
    expect(() => checkExecId('.x')).toThrow(/exec_id "\.x" is not valid/);
    expect(checkExecId('')).toBe('');
    expect(isSafeId(CRI_ID)).toBe(true);
    expect(isSafeId('..')).toBe(false);
    const cfg = { stateDir: '/nonexistent/state', shareDir: '/nonexistent/share' } as AgentConfig;
    await expect(mountShare(cfg, { tag: '../vrun-rootfs', path: 'root', readonly: false })).rejects.toThrow(/share tag "\.\.\/vrun-rootfs" is not valid/);
    await expect(mountShare(cfg, { tag: 'v'.repeat(37), path: 'root', readonly: false })).rejects.toThrow(/at most 36 characters/);
  });

  it('the image store refuses a rootfs for a bad container id', async () => {
    const layout = {} as StoreLayout;
    await expect(destroyRootfs(layout, '../x')).rejects.toThrow(/container id "\.\.\/x" is not valid/);
    await expect(createRootfs(layout, { containerId: 'a/b' } as Parameters<typeof createRootfs>[1])).rejects.toThrow(/container id "a\/b" is not valid/);
  });

  it('`vrun run --name` refuses a bad name', async () => {
    expect(() => validateName('native-hello')).not.toThrow();
    expect(() => validateName('../x')).toThrow(/container name "\.\.\/x" is not valid/);
    await expect(reserveName('a/b', newSandboxId(), '/nonexistent')).rejects.toThrow(/container name "a\/b" is not valid/);
  });
});
