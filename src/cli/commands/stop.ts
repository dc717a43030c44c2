import { VrunError } from '../../common/errors.js';
import { terminalSafeError } from '../../common/terminal-text.js';
import { allPids, isAlive, killSandboxProcesses } from '../../sandbox/cleanup.js';
import { controlCall } from '../../sandbox/control-client.js';
import { stopReplyDeadlineMs } from '../../sandbox/control-protocol.js';
import { findSandbox, reconcile } from '../../sandbox/inventory.js';
import { type SandboxState, readState, sandboxPaths } from '../../sandbox/state.js';
import { formatFlagHelp, parseArgs } from '../args.js';
import type { Command } from '../command.js';
import { parsePositiveNumber } from '../units.js';

const FLAGS = {
  time: { type: 'string', short: 't', value: 'SECONDS', description: 'Seconds to wait before killing (default 10)' },
} as const;

/** How long the CLI tries to reach a sandbox's control socket before it treats the sandbox as stuck. */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Docker's stop with a deadline: the sandbox sends SIGTERM, waits `timeoutS`, sends SIGKILL, and kills the VM if
 * the guest does not confirm (control-server.ts). Should the sandbox process itself not answer within
 * stopReplyDeadlineMs(timeoutS), its processes (the VMM and virtiofsd included) are killed here the way
 * `rm -f` does, and the state is kept (marked failed, with why) for `ps -a`, `logs` and `rm`. So `vrun stop`
 * returns within timeoutS + a fixed bound (connect 5 s + 5 s kill grace + 10 s teardown + 2 s slack + 5 s to reap).
 */
async function stopOne(s: SandboxState, timeoutS: number): Promise<void> {
  const paths = sandboxPaths(s.id);
  const pid = s.pids.sandbox;
  try {
    await controlCall(
      paths.control,
      { op: 'stop', timeoutS },
      { connectTimeoutMs: CONNECT_TIMEOUT_MS, replyTimeoutMs: stopReplyDeadlineMs(timeoutS), alive: pid === undefined ? undefined : () => isAlive(pid) },
    );
    return;
  } catch (err) {
    const now = await readState(s.id).catch(() => undefined);
    if (!now || (now.status !== 'running' && now.status !== 'creating')) return; // it ended meanwhile: stopped
    const why = `the sandbox did not stop in time (${terminalSafeError(err, { singleLine: true, maxLength: 300 })}): its processes were killed`;
    const survivors = await killSandboxProcesses(allPids(now.pids), paths.dir);
    if (survivors.length > 0) throw new VrunError(`cannot stop container ${now.name}: processes ${survivors.join(', ')} did not die`);
    // Marks it failed (the sandbox process is gone) and undoes its mounts, as any command would on next look.
    await reconcile({ ...now, error: now.error ?? why });
    process.stderr.write(`vrun: ${why}\n`);
  }
}

export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop running containers (SIGTERM, then SIGKILL)',
  usage: `vrun stop [OPTIONS] CONTAINER [CONTAINER...]\n\n${formatFlagHelp(FLAGS)}`,
  async run(argv) {
    const { flags, positionals } = parseArgs(argv, FLAGS, { command: 'stop', stopAtPositional: false });
    if (positionals.length === 0) throw new VrunError('"vrun stop" requires at least one container');
    const timeoutS = flags.time === undefined ? 10 : flags.time === '0' ? 0 : parsePositiveNumber(flags.time, '--time', { max: 3600 });
    let code = 0;
    for (const ref of positionals) {
      try {
        const s = await findSandbox(ref);
        if (s.status === 'running' || s.status === 'creating') await stopOne(s, timeoutS);
        process.stdout.write(`${ref}\n`);
      } catch (err) {
        process.stderr.write(`vrun: ${terminalSafeError(err)}\n`);
        code = 1;
      }
    }
    return code;
  },
};
