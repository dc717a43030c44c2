import { loadNative } from '../../../common/native.js';

/**
 * The host end of a virtio-net device: a persistent tap the pod's network set up (src/network/tap.ts), opened
 * through the addon (native/src/tap.cc, tap_poll.cc), or any stand-in with the same shape (the tests' fakes).
 */

export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const EAGAIN = 11;

export interface TapIo {
  /** The TUN_F_* offloads the tap accepted when opened: the most the device may offer the guest. */
  readonly offloads: number;
  /** Sets what the tap may hand over (checksum-partial, TSO frames); returns the set it took. */
  setOffloads(flags: number): number;
  /** One frame, vnet header first, into `buf`: its length, or -errno (-EAGAIN: none waiting). */
  read(buf: Buffer): number;
  /** `len` bytes of `buf` as one frame: the bytes written, or -errno. */
  write(buf: Buffer, len: number): number;
  /**
   * Calls `onReadable` while frames wait and the watch is resumed (again on each loop turn until they are
   * read); a status below 0 means the tap failed and the watch stopped.
   */
  watch(onReadable: (status: number) => void): void;
  /** False when no readiness will ever come (closed, failed). */
  resume(): boolean;
  pause(): void;
  close(): void;
}

interface TapPollHandle {
  resume(): boolean;
  pause(): void;
  close(): void;
}

/** The slice of the addon the tap uses. */
export interface TapNative {
  tapOpen(name: string, offloads: number, netns?: string): { fd: number; offloads: number };
  tapAdopt(fd: number, offloads: number): { offloads: number };
  tapSetOffload(fd: number, offloads: number): number;
  tapRead(fd: number, buf: Buffer): number;
  tapWrite(fd: number, buf: Buffer, len: number): number;
  tapVnetHdrSize: number;
  TapPoll: new (fd: number, onReadable: (status: number) => void) => TapPollHandle;
  fdClose(fd: number): void;
}

const DEFAULT_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export class NativeTap implements TapIo {
  private poll: TapPollHandle | undefined;
  private closed = false;

  private constructor(
    private readonly native: TapNative,
    readonly fd: number,
    readonly offloads: number,
    readonly name: string,
  ) {}

  /**
   * Attaches to the persistent tap `name` (never creates one), inside the network namespace file `netns` when
   * given (the pod's; the calling process stays where it is), offering it `offloads`. Throws errors shaped
   * like node:fs's (code ENODEV for no such tap, EBUSY when something else holds it).
   */
  static open(name: string, opts: { netns?: string; offloads?: number } = {}): NativeTap {
    if (!IFNAME_RE.test(name)) throw new TypeError(`tap name ${JSON.stringify(name)} is not an interface name`);
    const native = loadNative<TapNative>();
    const want = opts.offloads ?? DEFAULT_OFFLOADS;
    const { fd, offloads } = opts.netns === undefined ? native.tapOpen(name, want) : native.tapOpen(name, want, opts.netns);
    return new NativeTap(native, fd, offloads, name);
  }

  /**
   * Takes over fd `fd`, a tap another process attached and handed over (vrun-jailer's --tap: the jailed VMM has
   * no /dev/net/tun and no netns to enter), configured as open() configures its own. The fd is this object's
   * from then on, closed by close() (and by this call when it fails).
   */
  static adopt(fd: number, name: string, opts: { offloads?: number } = {}): NativeTap {
    if (!IFNAME_RE.test(name)) throw new TypeError(`tap name ${JSON.stringify(name)} is not an interface name`);
    const native = loadNative<TapNative>();
    try {
      const { offloads } = native.tapAdopt(fd, opts.offloads ?? DEFAULT_OFFLOADS);
      return new NativeTap(native, fd, offloads, name);
    } catch (err) {
      native.fdClose(fd);
      throw err;
    }
  }

  setOffloads(flags: number): number {
    return this.native.tapSetOffload(this.fd, flags & this.offloads);
  }

  read(buf: Buffer): number {
    return this.closed ? -EAGAIN : this.native.tapRead(this.fd, buf);
  }

  write(buf: Buffer, len: number): number {
    return this.closed ? -EAGAIN : this.native.tapWrite(this.fd, buf, len);
  }

  watch(onReadable: (status: number) => void): void {
    if (this.closed || this.poll) throw new Error(`tap ${this.name} is already watched or closed`);
    this.poll = new this.native.TapPoll(this.fd, onReadable);
  }

  resume(): boolean {
    return this.poll?.resume() ?? false;
  }

  pause(): void {
    this.poll?.pause();
  }

  /** Stops the watch, then closes the fd (libuv stops polling an fd before it is closed, never after). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.close();
    this.poll = undefined;
    this.native.fdClose(this.fd);
  }
}
