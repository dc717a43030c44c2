import fs from 'node:fs';
import path from 'node:path';
import { VrunError, type ErrorKind } from '../common/errors.js';
import { baseEnv, lastLine, run } from './exec.js';

/**
 * One call of a CNI plugin through the exec protocol (CNI spec, "Execution Protocol"): the verb and the
 * attachment in CNI_* variables, the network config on stdin, the result or a CNI error ({code, msg, details})
 * on stdout. The same way libcni (nerdctl, podman's CNI backend, containerd's CRI) calls them.
 */
export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

export interface PluginCall {
  command: CniCommand;
  containerId: string;
  /** nsfs path of the pod's namespace; '' on a DEL whose namespace is already gone (the spec allows it). */
  netns: string;
  ifname: string;
  /** CNI_ARGS, "K=V;K=V". */
  args?: Record<string, string>;
}

export interface PluginHost {
  /** Searched in order for the plugin binary, and passed as CNI_PATH (for chained IPAM plugins). */
  pluginDirs: string[];
  /** nsfs path of the namespace the plugins run in (the "host" side: bridge, iptables). Default: ours. */
  runIn?: string;
  timeoutMs?: number;
}

const TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_STDOUT = 1 << 20;

export function findPlugin(dirs: readonly string[], type: string, network: string): string {
  if (!TYPE_RE.test(type)) throw new VrunError(`network "${network}": plugin type ${JSON.stringify(type)} is not a plugin name`, { kind: 'invalid' });
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  throw new VrunError(`network "${network}": CNI plugin "${type}" not found in ${dirs.join(', ') || '(no plugin directory)'}`, {
    kind: 'not-found',
    hint: 'install the Debian package "containernetworking-plugins", or fix the plugin type in the network config',
  });
}

/** CNI's well-known error codes, as errors.ts's kinds. */
function kindOf(code: unknown): ErrorKind {
  if (code === 2 || code === 4 || code === 6 || code === 7) return 'invalid';
  if (code === 3) return 'not-found';
  if (code === 11) return 'unavailable';
  return 'internal';
}

function oneLine(s: string, max = 400): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/**
 * Runs plugin `config.type` and returns its parsed stdout for ADD (what a DEL or CHECK prints is ignored).
 * A failure is a VrunError naming the network, the plugin, the verb and the plugin's own msg and details.
 */
export async function execPlugin(host: PluginHost, network: string, config: Record<string, unknown>, call: PluginCall): Promise<unknown> {
  const type = String(config.type);
  const file = findPlugin(host.pluginDirs, type, network);
  const env: Record<string, string> = {
    ...baseEnv(),
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifname,
    CNI_PATH: host.pluginDirs.join(':'),
  };
  if (call.args && Object.keys(call.args).length > 0) env.CNI_ARGS = Object.entries(call.args).map(([k, v]) => `${k}=${v}`).join(';');
  const where = `network "${network}": CNI plugin "${type}" ${call.command}`;
  const r = await run([file], { netns: host.runIn, env, input: JSON.stringify(config), timeoutMs: host.timeoutMs ?? 60_000, maxOutputBytes: MAX_STDOUT });
  if (r.truncated) throw new VrunError(`${where}: printed more than ${MAX_STDOUT} bytes`, { kind: 'internal' });
  if (r.code !== 0) {
    if (r.signal) throw new VrunError(`${where}: killed by ${r.signal}${r.signal === 'SIGKILL' ? ' (timed out?)' : ''}`, { kind: 'deadline' });
    let cniErr: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    try {
      const v: unknown = JSON.parse(r.stdout);
      if (typeof v === 'object' && v !== null) cniErr = v as typeof cniErr;
    } catch {
      // not a CNI error document: fall back to what it wrote on stderr
    }
    const msg = typeof cniErr?.msg === 'string' ? cniErr.msg : lastLine(r.stderr) || lastLine(r.stdout) || `exited with ${r.code}`;
    const details = typeof cniErr?.details === 'string' && cniErr.details !== '' ? `: ${cniErr.details}` : '';
    throw new VrunError(oneLine(`${where} failed: ${msg}${details}`), { kind: kindOf(cniErr?.code) });
  }
  if (call.command !== 'ADD') return undefined;
  try {
    return JSON.parse(r.stdout) as unknown;
  } catch {
    throw new VrunError(`${where}: printed no JSON result (${oneLine(r.stdout, 100) || 'nothing'})`, { kind: 'internal' });
  }
}
