import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseEnvFile, parseRunArgs, parseVolume } from '../../src/cli/run-options.js';
import { VrunError } from '../../src/common/errors.js';

const opts = { debug: false };

describe('vrun run argument parsing', () => {
  it('takes flags before the image and everything after it as the command', () => {
    const { config, name } = parseRunArgs(['--vm', '--rm', '-it', '--name', 'web', '-e', 'A=1', '-w', '/tmp', 'busybox', 'ls', '-la', '--rm'], opts);
    expect(name).toBe('web');
    expect(config.image).toBe('busybox');
    expect(config.args).toEqual(['ls', '-la', '--rm']);
    expect(config).toMatchObject({ autoRemove: true, interactive: true, tty: true, env: ['A=1'], workdir: '/tmp', detach: false });
  });

  it('parses resource limits the way Docker does', () => {
    const { config } = parseRunArgs(['--memory', '64m', '--cpus', '1.5', '--pids-limit', '20', '--read-only', 'busybox'], opts);
    expect(config.memoryBytes).toBe(64 * 1024 * 1024);
    expect(config.cpus).toBe(1.5);
    expect(config.pidsLimit).toBe(20);
    expect(config.readOnly).toBe(true);
  });

  it.each([
    [['--memory', 'lots', 'busybox'], /--memory/],
    [['--memory', '1k', 'busybox'], /minimum/],
    [['--cpus', '-1', 'busybox'], /--cpus/],
    [['--pids-limit', '2.5', 'busybox'], /--pids-limit/],
    [['--vmm', 'xen', 'busybox'], /--vmm/],
    [['--name', '../x', 'busybox'], /container name/],
    [['-u', 'a b', 'busybox'], /--user/],
    [['-w', 'relative', 'busybox'], /--workdir/],
    [['-e', '1BAD=x', 'busybox'], /environment variable name/],
    [['--bogus', 'busybox'], /unknown flag: --bogus/],
    [[], /requires an image/],
  ])('rejects %j with a clear error', (argv, msg) => {
    expect(() => parseRunArgs(argv, opts)).toThrow(VrunError);
    expect(() => parseRunArgs(argv, opts)).toThrow(msg);
  });

  it('copies -e NAME from the environment and skips unset names', () => {
    process.env.VRUN_TEST_COPY = 'copied';
    const { config } = parseRunArgs(['-e', 'VRUN_TEST_COPY', '-e', 'VRUN_TEST_UNSET_XYZ', 'busybox'], opts);
    expect(config.env).toEqual(['VRUN_TEST_COPY=copied']);
  });

  it('reads --env-file, ignoring comments and blank lines, with -e taking precedence by order', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-envfile-'));
    const f = path.join(dir, 'env');
    writeFileSync(f, '# comment\nA=1\n\nB=two words\r\n');
    expect(parseEnvFile(f)).toEqual(['A=1', 'B=two words']);
    const { config } = parseRunArgs(['--env-file', f, '-e', 'A=3', 'busybox'], opts);
    expect(config.env).toEqual(['A=1', 'B=two words', 'A=3']);
    expect(() => parseEnvFile(path.join(dir, 'missing'))).toThrow(/cannot read --env-file/);
  });
});

describe('volume specs', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-vol-'));

  it('accepts HOST:CTR and HOST:CTR:ro', () => {
    expect(parseVolume(`${dir}:/data`)).toEqual({ hostPath: dir, containerPath: '/data', readonly: false });
    expect(parseVolume(`${dir}:/data/:ro`)).toEqual({ hostPath: dir, containerPath: '/data', readonly: true });
  });

  it.each([
    ['/does/not/exist/vrun:/data', /does not exist/],
    ['relative:/data', /must be absolute/],
    [`${dir}:data`, /container path must be absolute/],
    [`${dir}:/`, /cannot mount over/],
    [`${dir}:/data:rx`, /invalid volume mode/],
    [`${dir}`, /expected HOST_DIR:CONTAINER_PATH/],
  ])('rejects %s', (spec, msg) => {
    expect(() => parseVolume(spec)).toThrow(msg);
  });

  it('refuses a file as a volume and duplicate mount points', () => {
    const f = path.join(dir, 'file');
    writeFileSync(f, 'x');
    expect(() => parseVolume(`${f}:/f`)).toThrow(/not a directory/);
    expect(() => parseRunArgs(['-v', `${dir}:/a`, '-v', `${dir}:/a`, 'busybox'], opts)).toThrow(/duplicate mount point/);
  });
});
