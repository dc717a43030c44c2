import { VrunError, errorKind } from '../../common/errors.js';
import { terminalSafe, terminalSafeJson } from '../../common/terminal-text.js';
import { findSandbox } from '../../sandbox/inventory.js';
import type { SandboxState } from '../../sandbox/state.js';
import { parseArgs } from '../args.js';
import type { Command } from '../command.js';

/**
 * Docker-shaped where it matters to scripts: State.Status/ExitCode/OOMKilled/Error, Name, Id, Config. Like
 * Docker, a name that is no container is looked up as an image.
 *
 * State.Error and Sandbox.Guest hold what the guest said (agent errors, console lines, its kernel release):
 * their control characters are made visible and their length bounded, and the whole JSON is printed with DEL,
 * C1 and bidi controls \u-escaped (terminalSafeJson), so nothing in it acts on the terminal.
 */
export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'Show details of containers or images as JSON',
  usage: 'vrun inspect CONTAINER|IMAGE [CONTAINER|IMAGE...]',
  async run(argv) {
    const { positionals } = parseArgs(argv, {}, { command: 'inspect', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun inspect" requires at least one container or image');
    const out = [];
    for (const ref of positionals) {
      const s = await findSandbox(ref).catch((err: unknown) => {
        if (errorKind(err) === 'not-found') return undefined;
        throw err;
      });
      if (!s) {
        out.push(await inspectImage(ref));
        continue;
      }
      out.push({
        Id: s.id,
        Name: s.name,
        Created: s.createdAt,
        Image: s.image,
        State: {
          Status: s.status === 'failed' ? 'dead' : s.status === 'creating' ? 'created' : s.status,
          Running: s.status === 'running',
          OOMKilled: s.oomKilled === true,
          Dead: s.status === 'failed',
          ExitCode: s.exitCode ?? 0,
          Error: terminalSafe(s.error ?? '', { maxLength: 4096 }),
          StartedAt: s.startedAt ?? '',
          FinishedAt: s.finishedAt ?? '',
          Pid: s.pids.vmm ?? 0,
        },
        Config: s.config,
        NetworkSettings: networkSettings(s),
        Sandbox: { Backend: s.backend ?? '', Pids: s.pids, Guest: guestDetails(s.guest), PhasesMs: s.phases ?? {} },
      });
    }
    process.stdout.write(`${terminalSafeJson(out, 2)}\n`);
    return 0;
  },
};

/** Docker's NetworkSettings, the fields scripts read: the address, and the published ports by container port. */
function networkSettings(s: SandboxState): Record<string, unknown> {
  const net = s.config.network;
  const ports: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of net?.ports ?? []) (ports[`${p.containerPort}/${p.protocol}`] ??= []).push({ HostIp: p.hostIP || '0.0.0.0', HostPort: String(p.hostPort) });
  const ips = s.ips ?? [];
  const v4 = ips.find((ip) => !ip.includes(':')) ?? '';
  const v6 = ips.find((ip) => ip.includes(':')) ?? '';
  const name = net?.name ?? 'none';
  return {
    IPAddress: v4,
    GlobalIPv6Address: v6,
    Ports: ports,
    Networks: name === 'none' ? { none: {} } : { [name]: { IPAddress: v4, GlobalIPv6Address: v6 } },
  };
}

/** The guest's own account of itself: strings made safe and short, numbers kept only if they are numbers. */
function guestDetails(g: SandboxState['guest']): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(g ?? {})) {
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
    else if (typeof v === 'string') out[k] = terminalSafe(v, { singleLine: true, maxLength: 256 });
  }
  return out;
}

async function inspectImage(ref: string) {
  const { imageDetails } = await import('./image-inspect.js');
  try {
    return imageDetails(ref);
  } catch (err) {
    if (errorKind(err) === 'not-found') throw new VrunError(`no such container or image: ${ref.slice(0, 140)}`, { kind: 'not-found', cause: err });
    throw err;
  }
}
