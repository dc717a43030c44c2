import { open, stat, type FileHandle } from 'node:fs/promises';
import { CappedLogFile } from '../common/capped-log-file.js';
import { errorMessage } from '../common/errors.js';
import { rootLogger } from '../common/log.js';
import { FrameDecoder, FrameType, encodeFrame } from './frames.js';

/**
 * container.log: the container's stdout and stderr as frames, in the order they arrived, so `vrun logs`
 * replays both streams apart and byte-exact.
 *
 * Bounded like Docker's json-file driver with `max-size=16m max-file=2` (Docker's own default is unbounded; we
 * pick a bound, since a chatty or hostile container must not fill /run): past CONTAINER_LOG_MAX_BYTES the file
 * is rotated to `container.log.1` (replacing an older one), so at most 2 x 16 MiB is kept, the newest output
 * always. Frames are never split across the two files. The file is 0600; a write error (full disk, EIO) is
 * logged once and the log stops, the container carries on. Output that arrives faster than the disk takes it
 * is dropped past a bound of memory, with a note in the log (the pumps read the guest without backpressure).
 */
export const CONTAINER_LOG_MAX_BYTES = 16 << 20;
const CONTAINER_LOG_MAX_PENDING = 4 << 20;
/** Payload per frame in the log (a chunk from the guest may be larger than a frame may be). */
const FRAME_PAYLOAD = 64 * 1024;

export function rotatedLogPath(file: string): string {
  return `${file}.1`;
}

export class ContainerLogWriter {
  private readonly out: CappedLogFile;
  private readonly piece: number;

  constructor(
    file: string,
    maxBytes = CONTAINER_LOG_MAX_BYTES,
    opts: { onError?: (err: Error) => void; maxPendingBytes?: number } = {},
  ) {
    this.piece = Math.max(1, Math.min(FRAME_PAYLOAD, Math.floor(maxBytes / 4) - 5));
    this.out = new CappedLogFile(file, {
      maxBytes,
      maxPendingBytes: opts.maxPendingBytes ?? Math.min(CONTAINER_LOG_MAX_PENDING, maxBytes),
      dropNote: (n) => encodeFrame(FrameType.stderr, `\n[vrun: ${n} bytes of container output dropped from the log: the disk could not keep up]\n`),
      onError:
        opts.onError ?? ((err) => rootLogger().warn({ err: errorMessage(err), log: file }, 'cannot write the container log: no longer writing it')),
    });
  }

  /** The log's error, once it is no longer written. */
  get failed(): Error | undefined {
    return this.out.failed;
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const type = stream === 'stdout' ? FrameType.stdout : FrameType.stderr;
    for (let o = 0; o < chunk.length; o += this.piece) this.out.write(encodeFrame(type, chunk.subarray(o, o + this.piece)));
  }

  close(): Promise<void> {
    return this.out.close();
  }
}

type Sinks = { stdout: (b: Buffer) => void; stderr: (b: Buffer) => void };

async function openIfThere(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function inodeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).ino;
  } catch {
    return undefined;
  }
}

/**
 * Replays container.log to the two sinks: the rotated `container.log.1` first (the older output), then the
 * current file; with `follow`, keeps reading as the file grows (and across rotations) until `stillRunning()` says
 * the container is done and the file has no more bytes.
 */
export async function replayContainerLog(
  file: string,
  sinks: Sinks,
  opts: { follow?: boolean; stillRunning?: () => Promise<boolean>; pollMs?: number } = {},
): Promise<void> {
  const rotated = await openIfThere(rotatedLogPath(file));
  let current = await openIfThere(file);
  if (!rotated && !current && !opts.follow) return;
  const buf = Buffer.alloc(1 << 16);

  /** Reads `fh` from `pos` to its end; returns the new position. Each file starts on a frame boundary. */
  const drain = async (fh: FileHandle, pos: number, dec: FrameDecoder): Promise<number> => {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return pos;
      pos += bytesRead;
      for (const f of dec.push(Buffer.from(buf.subarray(0, bytesRead)))) {
        if (f.type === FrameType.stdout) sinks.stdout(f.payload);
        else if (f.type === FrameType.stderr) sinks.stderr(f.payload);
      }
    }
  };

  let curIno = current ? (await current.stat()).ino : undefined;
  try {
    if (rotated) {
      // Rotated between the two opens: what we opened as current is the rotated file; the new one comes later.
      if (current && curIno === (await rotated.stat()).ino) {
        await current.close();
        current = undefined;
      }
      // The writer renames a file only once all its writes are done: `.1` is complete.
      await drain(rotated, 0, new FrameDecoder());
    }
    let pos = 0;
    let dec = new FrameDecoder();
    for (;;) {
      if (current) pos = await drain(current, pos, dec);
      // A new file at the path (a rotation, or the first one): the one we read is complete, see above.
      const ino = await inodeOf(file);
      if (ino !== undefined && ino !== curIno) {
        if (current) await current.close();
        current = undefined;
        current = await openIfThere(file);
        curIno = current ? (await current.stat()).ino : undefined;
        pos = 0;
        dec = new FrameDecoder();
        continue;
      }
      if (!opts.follow) return;
      const running = opts.stillRunning ? await opts.stillRunning() : false;
      if (!running) {
        // One more look: output written (or a rotation) between the last read and the status check.
        const before = pos;
        if (current) pos = await drain(current, pos, dec);
        const now = await inodeOf(file);
        if (pos === before && (now === undefined || now === curIno)) return;
        continue;
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    }
  } finally {
    await rotated?.close();
    await current?.close();
  }
}
