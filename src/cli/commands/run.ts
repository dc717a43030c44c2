import { readFile } from 'node:fs/promises';
import { VrunError } from '../../common/errors.js';
import { isAlive } from '../../sandbox/cleanup.js';
import { ClientDroppedError, controlCall, controlStream } from '../../sandbox/control-client.js';
import { listSandboxes, removeSandbox } from '../../sandbox/inventory.js';
import { launchSandbox } from '../../sandbox/launcher.js';
import { checkImage } from '../../sandbox/rootfs.js';
import { readState } from '../../sandbox/state.js';
import { prepareNetwork } from '../../sandbox/network.js';
import { chooseBackend } from '../../vmm/backend.js';
import { formatFlagHelp } from '../args.js';
import type { Command } from '../command.js';
import { RUN_FLAGS, parseRunArgs } from '../run-options.js';
import { flushStdio, initialSize, localOutput, wireLocalIo } from '../attach-io.js';
import { vrunRunDir } from '../../common/paths.js';
import { mirrorLog } from '../log-mirror.js';
import path from 'node:path';

/** Said once per host: a marker under the run dir remembers that the user was told. */
async function noticeOnce(notice: string): Promise<void> {
  const marker = path.join(vrunRunDir(), 'emulation-notice-shown');
  try {
    await readFile(marker);
  } catch {
    process.stderr.write(`vrun: note: ${notice}\n`);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(marker, `${notice}\n`).catch(() => undefined);
  }
}

const CONNECT_TIMEOUT_MS = 30_000;

export const runCommand: Command = {
  name: 'run',
  summary: 'Run a command in a new container, inside its own VM',
  usage: `vrun run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n${formatFlagHelp(RUN_FLAGS)}`,
  async run(argv) {
    const { config, name } = parseRunArgs(argv, { debug: Boolean(process.env.VRUN_DEBUG) });
    await listSandboxes(); // collects stale state before we add ours
    await checkImage(config.image);
    config.network = await prepareNetwork(config.network);
    const decision = chooseBackend(config.vmm);
    const sb = await launchSandbox(config, name);
    if (decision.notice) await noticeOnce(decision.notice);
    const alive = () => isAlive(sb.pid);
    const stopMirror = process.env.VRUN_DEBUG ? mirrorLog(sb.paths.log) : async () => undefined;

    if (config.detach) {
      try {
        await controlCall(sb.paths.control, { op: 'start' }, { connectTimeoutMs: CONNECT_TIMEOUT_MS, alive });
      } catch (err) {
        const st = await readState(sb.id).catch(() => undefined);
        if (st && !process.env.VRUN_KEEP_FAILED) await removeSandbox(st).catch(() => undefined);
        throw st?.error ? new VrunError(st.error, { kind: st.errorKind }) : err;
      } finally {
        await stopMirror();
      }
      process.stdout.write(`${sb.id}\n`);
      return 0;
    }

    let restore = () => undefined as void;
    let dropped = false;
    try {
      const session = await controlStream(
        sb.paths.control,
        {
          op: 'attach',
          start: true,
          stdin: config.interactive,
          ...initialSize(config.tty),
        },
        localOutput(),
        { timeoutMs: CONNECT_TIMEOUT_MS, alive },
      );
      restore = wireLocalIo(session, { stdin: config.interactive, tty: config.tty });
      const r = await session.result;
      return r.exitCode;
    } catch (err) {
      if (err instanceof ClientDroppedError) {
        // We did not keep up with the output and the sandbox let us go; the container runs on (even with --rm:
        // it removes itself when it exits).
        dropped = true;
        throw new VrunError(err.message, { hint: `follow it with: vrun logs -f ${sb.id.slice(0, 12)}` });
      }
      // The sandbox failed before or while running: nothing of it may stay behind for a --rm run,
      // and a failed start leaves nothing at all (Docker keeps a "Created" container; we do not).
      const st = await readState(sb.id).catch(() => undefined);
      if (st && !process.env.VRUN_KEEP_FAILED && (config.autoRemove || st.status !== 'failed' || !st.startedAt)) await removeSandbox(st).catch(() => undefined);
      if (st?.error) throw new VrunError(st.error, { kind: st.errorKind });
      throw err instanceof VrunError ? err : new VrunError(String(err));
    } finally {
      restore();
      if (config.autoRemove && !dropped) await waitGone(sb.pid);
      await stopMirror();
      await flushStdio();
    }
  },
};

/** --rm: the sandbox process deletes the state before it exits; wait for that, bounded. */
async function waitGone(pid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
