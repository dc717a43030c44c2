/**
 * Warnings a person reads: the real CLI prints one plain `vrun: warning: ...` line, JSON only with --debug; the
 * logs programs read (a sandbox's or the shim's file) stay JSON in a process that prints for people.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logForPeople } from '../../src/common/log-audience.js';
import { fileLogger } from '../../src/common/log.js';
import { buildImage, buildLayer } from '../../src/image/oci-build.js';
import { writeLayout } from '../image/fixtures.js';
import { cleanup, tempDir } from '../image/helpers.js';

const VRUN = path.resolve(import.meta.dirname, '../../bin/vrun.js');

function vrun(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const full: NodeJS.ProcessEnv = { ...process.env, VRUN_ROOT: root, VRUN_RUN: path.join(root, 'run'), ...env };
  for (const k of ['VRUN_IMAGE_ROOT', 'VRUN_DEBUG', 'VRUN_LOG_LEVEL']) if (!(k in env)) delete full[k];
  const proc = spawn(process.execPath, [VRUN, ...args], { env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('log lines people read', () => {
  let dir: string;
  let layout: string;
  beforeAll(async () => {
    dir = tempDir('warn');
    // A device node in a layer is never created, and importing says so: a warning on a real path. Its name
    // carries an escape sequence, as a hostile image's could.
    const layer = await buildLayer([
      { name: 'dev/', type: 'directory' },
      { name: 'dev/\u001b[2Jnull\u009b', type: 'character-device', devmajor: 1, devminor: 3 },
    ]);
    layout = writeLayout(path.join(dir, 'layout'), buildImage([layer], { Cmd: ['sh'] }), 'v1');
  });
  afterAll(() => cleanup(dir));

  it('the CLI prints a warning as one plain line, terminal-safe, and no JSON', async () => {
    const r = await vrun(path.join(dir, 'plain'), ['import', layout, 'devices:v1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Loaded image: devices:v1');
    expect(r.stderr).not.toContain('{"level"');
    expect(r.stderr).not.toContain('\u001b');
    expect(r.stderr).not.toContain('\u009b');
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('vrun: warning: '));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^vrun: warning: device nodes in the layer were not created \(layer=.*layer 0 \(sha256:[0-9a-f]{12}\), devices=\["dev\/\\u001b\[2Jnull\\x9b"\]\)$/);
  });

  it('with --debug, the same warning is a JSON line', async () => {
    const r = await vrun(path.join(dir, 'debug'), ['--debug', 'import', layout, 'devices:v1']);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain('vrun: warning:');
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('{'));
    const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => o.level === 40);
    expect(warning).toMatchObject({ msg: 'device nodes in the layer were not created', devices: ['dev/\u001b[2Jnull\u009b'] });
  });

  it('a log file stays JSON in a process whose own lines are for people', async () => {
    logForPeople('vrun');
    const dest = new PassThrough();
    let text = '';
    dest.on('data', (d: Buffer) => (text += d.toString()));
    fileLogger(dest, { level: 'info' }).warn({ path: '/x' }, 'for the sandbox log');
    await new Promise((r) => setImmediate(r));
    expect(JSON.parse(text)).toMatchObject({ level: 40, path: '/x', msg: 'for the sandbox log' });
  });
});
