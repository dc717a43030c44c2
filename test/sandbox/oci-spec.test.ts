import { describe, expect, it } from 'vitest';
import { buildSpec, mergeEnv, processArgs } from '../../src/sandbox/oci-spec.js';

describe('OCI spec from image config and options', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['default-arg'], Env: ['PATH=/image/bin', 'A=1'], WorkingDir: '/work' };

  it('runs Entrypoint + Cmd, with user args replacing Cmd and --entrypoint replacing both', () => {
    expect(processArgs(image, {})).toEqual(['/entry', 'default-arg']);
    expect(processArgs(image, { args: ['x', 'y'] })).toEqual(['/entry', 'x', 'y']);
    expect(processArgs(image, { entrypoint: '/bin/sh' })).toEqual(['/bin/sh']);
    expect(processArgs(image, { entrypoint: '', args: ['ls'] })).toEqual(['ls']);
    expect(processArgs({ Cmd: ['sh'] }, {})).toEqual(['sh']);
  });

  it('overlays -e on the image environment by name', () => {
    expect(mergeEnv(['PATH=/a', 'B=2'], ['PATH=/b'], ['C=3'])).toEqual(['PATH=/b', 'B=2', 'C=3']);
    const spec = buildSpec(image, { env: ['A=2', 'NEW=x'] });
    expect(spec.process.env).toEqual(['PATH=/image/bin', 'A=2', 'NEW=x']);
  });

  it('maps resources to cgroup v2 values and keeps flags', () => {
    const spec = buildSpec(image, { memoryBytes: 64 << 20, cpus: 1.5, pidsLimit: 20, readonlyRootfs: true, terminal: true, workdir: '/tmp', user: { uid: 1000, gid: 100 } });
    expect(spec.linux.resources.memory).toEqual({ limit: 64 << 20, swap: 64 << 20 });
    expect(spec.linux.resources.cpu).toEqual({ quota: 150000, period: 100000 });
    expect(spec.linux.resources.pids).toEqual({ limit: 20 });
    expect(spec.root.readonly).toBe(true);
    expect(spec.process.terminal).toBe(true);
    expect(spec.process.env).toContain('TERM=xterm');
    expect(spec.process.cwd).toBe('/tmp');
    expect(spec.process.user).toEqual({ uid: 1000, gid: 100 });
    expect(buildSpec(image, {}).process.cwd).toBe('/work');
  });

  it('adds volumes as bind mounts with ro/rw', () => {
    const spec = buildSpec(image, { mounts: [{ source: '/run/vrun/volumes/0', destination: '/data', readonly: true }] });
    expect(spec.mounts.at(-1)).toEqual({ destination: '/data', type: 'bind', source: '/run/vrun/volumes/0', options: ['rbind', 'ro'] });
  });
});
