import { rm } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import { sandboxLogger, setRootLogger } from '../common/log.js';
import { openProcessLog } from '../common/process-log.js';
import { removeSandboxDir } from './cleanup.js';
import { ControlServer } from './control-server.js';
import { releaseName } from './names.js';
import { Sandbox } from './sandbox.js';
import { ID_RE, readState, sandboxPaths } from './state.js';

/**
 * The sandbox process: `bin/vrun-sandbox.js <state-dir>` (this module, bundled), started detached by `vrun run`. It
 * owns the pod (VMM, virtiofsd, agent client), serves ctl.sock, and exits once the pod is torn down.
 */
async function main(stateDir: string): Promise<void> {
  const runDir = path.dirname(stateDir);
  const id = path.basename(stateDir);
  if (!ID_RE.test(id)) throw new Error(`not a sandbox state directory: ${stateDir}`);
  // Sockets, logs and state are for root alone; what the jailed VMM must reach is opened up on purpose.
  process.umask(0o077);
  const paths = sandboxPaths(id, runDir);
  const state = await readState(id, runDir);
  if (!state) throw new Error(`no state in ${stateDir}`);
  const processLog = openProcessLog(paths.log, state.config.debug ? 'debug' : 'info');
  const log = sandboxLogger(processLog.logger, id);
  setRootLogger(log);
  log.info({ image: state.config.image, name: state.name }, 'sandbox process starting');

  const sandbox = new Sandbox(state, paths, log);
  const server = new ControlServer(sandbox, paths.control, log);
  await server.listen();
  let shuttingDown = false;
  const onSignal = (sig: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.warn({ sig }, 'sandbox process told to stop');
    void sandbox.stop(5);
    // A guest that answers nothing still ends: after the stop's own grace, the VM is pulled.
    setTimeout(() => void sandbox.teardown({ status: 'exited', exitCode: 137, error: `stopped by ${sig}; the guest did not confirm in time` }), 10_000).unref();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGHUP', () => undefined);
  // A stuck sandbox can be asked where its VM stands: `kill -USR2 PID` logs it to sandbox.log.
  process.on('SIGUSR2', () => void sandbox.logVmmState('asked by SIGUSR2'));

  await sandbox.boot();
  await sandbox.whenDone();
  await server.close();
  await rm(paths.control, { force: true });
  // VRUN_KEEP_FAILED (for tests and debugging) keeps a failed --rm sandbox's logs for a look; `vrun rm -f` takes it.
  if (state.config.autoRemove && !(process.env.VRUN_KEEP_FAILED && sandbox.current.status === 'failed')) {
    await releaseName(state.name, id, runDir);
    const problem = await removeSandboxDir(paths.dir, []);
    if (problem) log.error({ problem }, 'removing the sandbox failed');
  }
  log.info('sandbox process done');
  await processLog.close();
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: vrun-sandbox.js STATE_DIR\n');
  process.exit(2);
}
main(path.resolve(dir)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`vrun sandbox: ${errorMessage(err)}\n${err instanceof Error ? (err.stack ?? '') : ''}\n`);
    process.exit(1);
  },
);
