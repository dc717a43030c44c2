import { rm } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';
import { setRootLogger } from '../common/log.js';
import { openProcessLog } from '../common/process-log.js';
import { TtrpcServer } from '../ttrpc/server.js';
import { EventPublisher } from './events.js';
import type { ShimFlags } from './flags.js';
import { removeSandboxDir } from '../sandbox/cleanup.js';
import { podPaths, writePodRecord, type PodRecord } from './pod-paths.js';
import { mountTaskService } from './protocol/task-service.js';
import { VrunTasks } from './tasks.js';

/**
 * The serving process, one per pod: started detached by `start`, listens on <pod dir>/shim.sock, and
 * exits after containerd's Shutdown once the pod's last container was deleted (or on SIGTERM).
 */
export async function serve(flags: ShimFlags, dir: string, groupId: string): Promise<void> {
  // Sockets, logs and state are for root alone; what the jailed VMM must reach is opened up on purpose.
  process.umask(0o077);
  const paths = podPaths(dir);
  const processLog = openProcessLog(paths.log, flags.debug ? 'debug' : 'info');
  const log = processLog.logger.child({ pod: groupId, ns: flags.namespace });
  setRootLogger(log);
  const ttrpcAddress = process.env.TTRPC_ADDRESS ?? `${flags.address}.ttrpc`;
  const events = new EventPublisher({ address: ttrpcAddress, namespace: flags.namespace, logger: log });
  const record: PodRecord = { namespace: flags.namespace, groupId, pids: { shim: process.pid } };
  await writePodRecord(paths, record);
  const tasks = new VrunTasks(paths, events, log, async (pids, backend) => {
    record.pids = { ...record.pids, ...pids };
    record.backend = backend;
    await writePodRecord(paths, record);
  });
  const server = new TtrpcServer();
  mountTaskService(server, tasks);
  await rm(paths.socket, { force: true });
  await server.listen(paths.socket);
  log.info({ socket: paths.socket, ttrpcAddress }, 'shim serving');

  const stop = (sig: string) => {
    log.warn({ sig }, 'shim told to stop');
    void tasks.stopPod();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => undefined);
  process.on('SIGPIPE', () => undefined);

  await tasks.done;
  // Shutdown's own reply must reach containerd before the socket goes away.
  await new Promise((r) => setTimeout(r, 100));
  await events.close().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'closing the event publisher'));
  await server.close({ graceful: true, timeoutMs: 2000 }).catch(() => undefined);
  // Removed only once nothing is mounted under it any more: a mount left behind is never emptied.
  const problem = await removeSandboxDir(paths.dir, []);
  if (problem) log.error({ problem }, 'the pod directory was not removed');
  log.info('shim done');
  await processLog.close();
}
