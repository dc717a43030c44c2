/**
 * The CNI exec protocol against fake plugins (shell scripts that touch no network): what is passed to a
 * plugin (variables, prevResult chaining, runtime config only to plugins that declare the capability, the
 * cached ADD state on DEL), and how what a plugin prints is bounded and checked.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedResult, cniAdd, cniCheck, cniDel, type CniEnv } from '../../src/network/cni.js';
import { loadNetwork, parseConfList, type NetworkConfigList } from '../../src/network/cni-config.js';
import { execPlugin } from '../../src/network/cni-plugin.js';
import { parseCniResult } from '../../src/network/cni-result.js';
import { parsePortMappings } from '../../src/network/ports.js';

let tmp: string;
let env: CniEnv;
const call = { command: 'ADD' as const, containerId: 'c1', netns: '/run/netns/none', ifname: 'eth0' };

const RESULT = '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/none"}],"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.1"]}}';

function plugin(name: string, body: string): void {
  fs.writeFileSync(path.join(tmp, 'bin', name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-cni-'));
  fs.mkdirSync(path.join(tmp, 'bin'));
  fs.mkdirSync(path.join(tmp, 'log'));
  env = { pluginDirs: [path.join(tmp, 'bin')], confDir: path.join(tmp, 'net.d'), cacheDir: path.join(tmp, 'cache') };
  // Records its stdin and environment per call, then passes on prevResult (or a fresh result).
  const recorder = (tag: string): string => `
n=$(ls ${tmp}/log | wc -l)
cat > ${tmp}/log/$n-${tag}-$CNI_COMMAND.json
env | grep ^CNI_ | sort > ${tmp}/log/$n-${tag}-$CNI_COMMAND.env
[ "$CNI_COMMAND" = ADD ] || exit 0
if grep -q prevResult ${tmp}/log/$n-${tag}-$CNI_COMMAND.json; then python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["prevResult"]))' ${tmp}/log/$n-${tag}-$CNI_COMMAND.json
else echo '${RESULT}'; fi`;
  plugin('first', recorder('first'));
  plugin('second', recorder('second'));
  plugin('garbage', 'echo not json');
  plugin('huge', 'head -c 2000000 /dev/zero | tr "\\0" x');
  plugin('cnierr', `printf '%s\\n' '{"cniVersion":"1.0.0","code":7,"msg":"bad subnet","details":"line one\\nline two"}'; exit 1`);
  plugin('stderronly', 'echo "something broke" >&2; exit 3');
  plugin('badshape', `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}'`);
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function logged(): { name: string; text: string }[] {
  return fs
    .readdirSync(path.join(tmp, 'log'))
    .sort((a, b) => parseInt(a) - parseInt(b) || Number(a.endsWith('.env')) - Number(b.endsWith('.env')))
    .map((name) => ({ name, text: fs.readFileSync(path.join(tmp, 'log', name), 'utf8') }));
}

describe('chaining', () => {
  const list: NetworkConfigList = { cniVersion: '1.0.0', name: 'fake', plugins: [{ type: 'first', capabilities: { portMappings: true } }, { type: 'second', k: 'v' }] };

  it('ADD in order with prevResult, DEL in reverse with the cached result and port mappings', async () => {
    const portMappings = parsePortMappings(['8080:80']);
    const r = await cniAdd(env, list, { ...call, portMappings });
    expect(r.ips).toEqual([{ family: 4, address: '10.0.0.2', prefixLength: 24, gateway: '10.0.0.1', interface: 0 }]);
    expect(r.dns.nameservers).toEqual(['10.0.0.1']);
    await cniCheck(env, list, call);
    await cniDel(env, list, call);
    const log = logged();
    expect(log.map((l) => l.name.replace(/^\d+-/, ''))).toEqual([
      'first-ADD.json', 'first-ADD.env', 'second-ADD.json', 'second-ADD.env',
      'first-CHECK.json', 'first-CHECK.env', 'second-CHECK.json', 'second-CHECK.env',
      'second-DEL.json', 'second-DEL.env', 'first-DEL.json', 'first-DEL.env',
    ]);
    const stdin = (i: number): Record<string, unknown> => JSON.parse(log[i]?.text ?? '') as Record<string, unknown>;
    const mapping = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }];
    expect(stdin(0)).toEqual({ type: 'first', capabilities: { portMappings: true }, cniVersion: '1.0.0', name: 'fake', runtimeConfig: { portMappings: mapping } });
    expect(stdin(2)).toEqual({ type: 'second', k: 'v', cniVersion: '1.0.0', name: 'fake', prevResult: JSON.parse(RESULT) });
    expect(stdin(10)).toMatchObject({ prevResult: JSON.parse(RESULT), runtimeConfig: { portMappings: mapping } });
    expect(log[1]?.text).toBe(`CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\nCNI_NETNS=/run/netns/none\nCNI_PATH=${env.pluginDirs[0]}\n`);
    expect(cachedResult(env, 'fake', call)).toBeUndefined();
  });
});

describe('what plugins print', () => {
  const run = (type: string) => execPlugin(env, 'fake', { type, cniVersion: '1.0.0', name: 'fake' }, call).then((v) => parseCniResult(v, type));

  it('is checked and bounded, and errors are one line naming the plugin', async () => {
    await expect(run('garbage')).rejects.toThrow('network "fake": CNI plugin "garbage" ADD: printed no JSON result (not json)');
    await expect(run('huge')).rejects.toThrow('network "fake": CNI plugin "huge" ADD: printed more than 1048576 bytes');
    await expect(run('cnierr')).rejects.toMatchObject({ message: 'network "fake": CNI plugin "cnierr" ADD failed: bad subnet: line one line two', kind: 'invalid' });
    await expect(run('stderronly')).rejects.toThrow('network "fake": CNI plugin "stderronly" ADD failed: something broke');
    await expect(run('badshape')).rejects.toThrow('CNI plugin "badshape" printed a result with a bad ip address: "10.0.0.300/24"');
    await expect(run('../bin/first')).rejects.toThrow('network "fake": plugin type "../bin/first" is not a plugin name');
  });

  it('a failed ADD half-way is rolled back and leaves no cache', async () => {
    const list: NetworkConfigList = { cniVersion: '1.0.0', name: 'half', plugins: [{ type: 'first' }, { type: 'cnierr' }] };
    const before = logged().length;
    await expect(cniAdd(env, list, call)).rejects.toThrow('CNI plugin "cnierr" ADD failed: bad subnet');
    expect(logged().slice(before).map((l) => l.name.replace(/^\d+-/, ''))).toEqual(['first-ADD.json', 'first-ADD.env', 'first-DEL.json', 'first-DEL.env']);
    expect(cachedResult(env, 'half', call)).toBeUndefined();
  });
});

describe('network configs', () => {
  it('are checked, with the file and the field named', () => {
    expect(() => parseConfList('{', 'a.conflist')).toThrow(/^network config a\.conflist: not JSON/);
    expect(() => parseConfList('{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}', 'a')).toThrow('network config a: "name" undefined is not a network name');
    expect(() => parseConfList('{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}', 'a')).toThrow('"cniVersion" "9.9.9" is not one vrun speaks (0.3.0, 0.3.1, 0.4.0, 1.0.0)');
    expect(() => parseConfList('{"cniVersion":"1.0.0","name":"n","plugins":[{}]}', 'a')).toThrow('network config a: plugin 0 has no "type"');
    expect(parseConfList('{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"b0"}', 'a.conf')).toEqual({ cniVersion: '0.4.0', name: 'single', plugins: [{ type: 'bridge', bridge: 'b0' }] });
  });

  it('are found by name; a broken file is named when the network is missing', () => {
    const dir = path.join(tmp, 'conf');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '20-a.conflist'), '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"first"}]}');
    fs.writeFileSync(path.join(dir, '10-a.conflist'), '{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"second"}]}');
    fs.writeFileSync(path.join(dir, '30-broken.conflist'), '{"name":');
    expect(loadNetwork(dir, 'a').plugins[0]?.type).toBe('second');
    expect(() => loadNetwork(dir, 'b')).toThrow(/^network "b" not found in .*conf \(known: a; unreadable: network config .*30-broken\.conflist: not JSON/);
    expect(() => loadNetwork(dir, '../etc')).toThrow('network name "../etc" is not valid');
  });
});
