import { VrunError, errorMessage } from '../../common/errors.js';
import { loadNative } from '../../common/native.js';

/**
 * The frontend (VMM) side of the vhost-user protocol, enough to hand a device's queues to an external
 * backend such as virtiofsd: feature negotiation, the guest memory table (the memfd itself is sent),
 * and per queue its size, ring addresses, kick eventfd (a KVM ioeventfd) and call eventfd (a KVM
 * irqfd). After that, guest and backend talk without the VMM on the data path.
 *
 * Every reply is checked against the request it answers, and sizes are bounded: the backend is a
 * separate, less trusted process.
 */

interface VhostNative {
  vhostConnect(path: string, timeoutMs: number): number;
  vhostSend(fd: number, data: Buffer, fds: number[]): void;
  vhostRecv(fd: number, length: number): Buffer;
  vhostClose(fd: number): void;
}

export const REQ = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  SET_MEM_TABLE: 5,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
} as const;

export const VHOST_USER_F_PROTOCOL_FEATURES = 30n;
export const PROTOCOL_F_MQ = 0n;
export const PROTOCOL_F_REPLY_ACK = 3n;

const VERSION = 0x1;
const FLAG_REPLY = 0x4;
const FLAG_NEED_REPLY = 0x8;
const HEADER = 12;
const MAX_PAYLOAD = 1024;
const MAX_REGIONS = 8;

export interface MemoryRegion {
  guestAddr: number;
  size: number;
  /** The address the frontend claims for this region; ring addresses are given in the same space. */
  userAddr: number;
  mmapOffset: number;
}

export interface VringSetup {
  index: number;
  size: number;
  descUser: number;
  availUser: number;
  usedUser: number;
  kickFd: number;
  callFd: number;
}

export class VhostUserFrontend {
  private fd: number;
  backendFeatures = 0n;
  protocolFeatures = 0n;

  private constructor(
    readonly socketPath: string,
    fd: number,
    private readonly native: VhostNative,
  ) {
    this.fd = fd;
  }

  static connect(socketPath: string, timeoutMs = 5000): VhostUserFrontend {
    const native = loadNative<VhostNative>();
    let fd: number;
    try {
      fd = native.vhostConnect(socketPath, timeoutMs);
    } catch (err) {
      throw new VrunError(`vhost-user backend: ${errorMessage(err)}`, { hint: 'is virtiofsd running and listening on that socket?' });
    }
    return new VhostUserFrontend(socketPath, fd, native);
  }

  /** GET_FEATURES, then the protocol features we use (REPLY_ACK when offered), then SET_OWNER. */
  handshake(): void {
    this.backendFeatures = this.getU64(REQ.GET_FEATURES);
    if (this.backendFeatures & (1n << VHOST_USER_F_PROTOCOL_FEATURES)) {
      const offered = this.getU64(REQ.GET_PROTOCOL_FEATURES);
      this.protocolFeatures = offered & ((1n << PROTOCOL_F_REPLY_ACK) | (1n << PROTOCOL_F_MQ));
      this.send(REQ.SET_PROTOCOL_FEATURES, u64(this.protocolFeatures), [], false);
    }
    this.send(REQ.SET_OWNER, Buffer.alloc(0));
  }

  get replyAck(): boolean {
    return (this.protocolFeatures & (1n << PROTOCOL_F_REPLY_ACK)) !== 0n;
  }

  /** Features the driver negotiated, limited to what the backend offers, plus PROTOCOL_FEATURES. */
  setFeatures(driverFeatures: bigint): void {
    const pf = this.backendFeatures & (1n << VHOST_USER_F_PROTOCOL_FEATURES);
    this.send(REQ.SET_FEATURES, u64((driverFeatures & this.backendFeatures) | pf), [], false);
  }

  setMemTable(regions: MemoryRegion[], memfd: number): void {
    if (regions.length === 0 || regions.length > MAX_REGIONS) throw new VrunError(`vhost-user memory table needs 1..${MAX_REGIONS} regions`);
    const p = Buffer.alloc(8 + 32 * regions.length);
    p.writeUInt32LE(regions.length, 0);
    regions.forEach((r, i) => {
      const o = 8 + 32 * i;
      p.writeBigUInt64LE(BigInt(r.guestAddr), o);
      p.writeBigUInt64LE(BigInt(r.size), o + 8);
      p.writeBigUInt64LE(BigInt(r.userAddr), o + 16);
      p.writeBigUInt64LE(BigInt(r.mmapOffset), o + 24);
    });
    this.send(REQ.SET_MEM_TABLE, p, regions.map(() => memfd));
  }

  setupVring(v: VringSetup): void {
    this.send(REQ.SET_VRING_NUM, state(v.index, v.size));
    const a = Buffer.alloc(40);
    a.writeUInt32LE(v.index, 0);
    a.writeBigUInt64LE(BigInt(v.descUser), 8);
    a.writeBigUInt64LE(BigInt(v.usedUser), 16);
    a.writeBigUInt64LE(BigInt(v.availUser), 24);
    this.send(REQ.SET_VRING_ADDR, a);
    this.send(REQ.SET_VRING_BASE, state(v.index, 0));
    this.send(REQ.SET_VRING_CALL, u64(BigInt(v.index)), [v.callFd]);
    this.send(REQ.SET_VRING_KICK, u64(BigInt(v.index)), [v.kickFd]);
    if (this.protocolFeatures !== 0n || this.backendFeatures & (1n << VHOST_USER_F_PROTOCOL_FEATURES)) {
      this.send(REQ.SET_VRING_ENABLE, state(v.index, 1));
    }
  }

  close(): void {
    if (this.fd >= 0) this.native.vhostClose(this.fd);
    this.fd = -1;
  }

  private getU64(request: number): bigint {
    this.send(request, Buffer.alloc(0), [], false);
    const reply = this.reply(request);
    if (reply.length !== 8) throw new VrunError(`vhost-user backend answered request ${request} with ${reply.length} bytes instead of 8`);
    return reply.readBigUInt64LE(0);
  }

  /**
   * Sends one message. Requests without a defined reply ask for an ack when REPLY_ACK was
   * negotiated, so a backend that rejects something is noticed at once, with the request named.
   */
  private send(request: number, payload: Buffer, fds: number[] = [], ack = true): void {
    if (this.fd < 0) throw new VrunError('vhost-user connection is closed');
    const wantAck = ack && this.replyAck;
    const msg = Buffer.alloc(HEADER + payload.length);
    msg.writeUInt32LE(request, 0);
    msg.writeUInt32LE(VERSION | (wantAck ? FLAG_NEED_REPLY : 0), 4);
    msg.writeUInt32LE(payload.length, 8);
    payload.copy(msg, HEADER);
    try {
      this.native.vhostSend(this.fd, msg, fds);
    } catch (err) {
      throw new VrunError(`vhost-user request ${request} to ${this.socketPath}: ${errorMessage(err)}`);
    }
    if (wantAck) {
      const r = this.reply(request);
      if (r.length !== 8 || r.readBigUInt64LE(0) !== 0n) throw new VrunError(`vhost-user backend ${this.socketPath} rejected request ${request}`);
    }
  }

  private reply(request: number): Buffer {
    try {
      const h = this.native.vhostRecv(this.fd, HEADER);
      const req = h.readUInt32LE(0);
      const flags = h.readUInt32LE(4);
      const size = h.readUInt32LE(8);
      if (req !== request || (flags & FLAG_REPLY) === 0 || (flags & 0x3) !== VERSION) {
        throw new VrunError(`unexpected reply (request ${req}, flags 0x${flags.toString(16)}) to request ${request}`);
      }
      if (size > MAX_PAYLOAD) throw new VrunError(`reply of ${size} bytes to request ${request} is too large`);
      return size === 0 ? Buffer.alloc(0) : this.native.vhostRecv(this.fd, size);
    } catch (err) {
      throw new VrunError(`vhost-user backend ${this.socketPath}: ${errorMessage(err)}`);
    }
  }
}

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

function state(index: number, num: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num, 4);
  return b;
}
