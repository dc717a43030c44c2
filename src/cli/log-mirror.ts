import { open, type FileHandle } from 'node:fs/promises';

/**
 * `--debug`: mirrors the sandbox's pino log (sandbox.log, written by the detached sandbox process) to
 * stderr while the CLI waits, so the JSON lines show up as if the CLI had written them. The file stays open
 * from the first read on: a `--rm` sandbox deletes its directory, log included, as its last step, and what it
 * logged about its teardown must still reach stderr.
 *
 * A debugging aid must never be what fails the command: a read error (the log is not a readable file) or a
 * broken `out` (EPIPE) ends the mirroring, once, and nothing else.
 */
export function mirrorLog(file: string, out: NodeJS.WritableStream = process.stderr): () => Promise<void> {
  let stopped = false;
  let broken = false;
  let pos = 0;
  let fh: FileHandle | undefined;
  const buf = Buffer.alloc(1 << 16);
  const onOutError = () => {
    broken = true;
  };
  out.on('error', onOutError);
  const pump = async () => {
    if (broken) return;
    try {
      fh ??= await open(file, 'r').catch(() => undefined);
      if (!fh) return;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0 || broken) return;
        pos += bytesRead;
        out.write(Buffer.from(buf.subarray(0, bytesRead)));
      }
    } catch {
      broken = true;
    }
  };
  let running = Promise.resolve();
  const timer = setInterval(() => {
    if (!stopped) running = running.then(pump);
  }, 100);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
    await pump();
    await fh?.close().catch(() => undefined);
    out.off('error', onOutError);
  };
}
