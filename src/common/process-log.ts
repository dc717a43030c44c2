import { CappedLogFile } from './capped-log-file.js';
import { fileLogger, type Logger } from './log.js';

/**
 * A long-lived process's own JSON log (a sandbox's sandbox.log, a pod shim's shim.log). The guest can make
 * these processes log (warnings about what it sends, each agent reconnect), so they are capped and rotated
 * like the logs the guest fills directly: at most PROCESS_LOG_MAX_BYTES per file, one rotated `.1` kept.
 */
export const PROCESS_LOG_MAX_BYTES = 16 << 20;

export interface ProcessLog {
  logger: Logger;
  /** Settles once what was logged is on disk (bounded: see CappedLogFile.close). */
  close(): Promise<void>;
}

export function openProcessLog(file: string, level: string, maxBytes = PROCESS_LOG_MAX_BYTES): ProcessLog {
  const out = new CappedLogFile(file, {
    maxBytes,
    dropNote: (bytes) => Buffer.from(`${JSON.stringify({ level: 40, time: Date.now(), msg: `${bytes} bytes of log dropped: the disk did not keep up` })}\n`),
    onError: (err) => process.stderr.write(`vrun: ${file} is no longer written: ${err.message}\n`),
  });
  return { logger: fileLogger(out, { level }), close: () => out.close() };
}
