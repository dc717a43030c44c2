import { VirtioNet, type NetSpec } from '../../../src/vmm/virtio/devices/net.js';
import { EAGAIN, type TapIo } from '../../../src/vmm/virtio/devices/net-tap.js';
import { REG, STATUS, VirtioMmio } from '../../../src/vmm/virtio/mmio.js';
import { GuardedRam, setUpQueues, type SimDriver } from './virtq-driver.js';

/**
 * A virtio-net device brought up the way Linux's driver does it, over a real tap or a FakeTap, with the
 * driver's side simulated (test/vmm/helpers/virtq-driver.ts), and frames built by hand.
 */

/** A tap in memory: frames queued for the device to read, frames it wrote, and a watch driven by pump(). */
export class FakeTap implements TapIo {
  inbox: Buffer[] = [];
  written: Buffer[] = [];
  offloadsSet: number[] = [];
  watching = false;
  closed = false;
  failed = false;
  writeResult: number | undefined;
  private onReadable: ((status: number) => void) | undefined;

  constructor(readonly offloads = 0) {}

  setOffloads(flags: number): number {
    this.offloadsSet.push(flags);
    return flags & this.offloads;
  }
  read(buf: Buffer): number {
    const f = this.inbox.shift();
    if (!f) return -EAGAIN;
    return f.copy(buf);
  }
  write(buf: Buffer, len: number): number {
    this.written.push(Buffer.from(buf.subarray(0, len)));
    return this.writeResult ?? len;
  }
  watch(cb: (status: number) => void): void {
    this.onReadable = cb;
  }
  resume(): boolean {
    if (this.failed || this.closed) return false;
    this.watching = true;
    return true;
  }
  pause(): void {
    this.watching = false;
  }
  close(): void {
    this.closed = true;
    this.watching = false;
  }
  /** What libuv does: calls the watch while it is on and frames wait (bounded, as one loop turn each). */
  pump(turns = 64): void {
    for (let i = 0; i < turns && this.watching && this.inbox.length > 0; i++) this.onReadable?.(0);
  }
  fail(status: number): void {
    this.onReadable?.(status);
  }
}

export const RAM_SIZE = 1024 * 1024;
export const DATA = 0x20000;
export const QSIZE = 16;

export function featureWords(features: bigint): [number, number] {
  return [Number(features & 0xffff_ffffn), Number(features >> 32n)];
}

/** A driver's feature handshake up to FEATURES_OK (the caller sets up queues and DRIVER_OK). */
export function negotiateFeatures(mmio: VirtioMmio, features: bigint): void {
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  const [lo, hi] = featureWords(features);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  w(REG.DRIVER_FEATURES_SEL, 0);
  w(REG.DRIVER_FEATURES, lo);
  w(REG.DRIVER_FEATURES_SEL, 1);
  w(REG.DRIVER_FEATURES, hi);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
}

export interface NetRig {
  dev: VirtioNet;
  mmio: VirtioMmio;
  ram: GuardedRam;
  rxq: SimDriver;
  txq: SimDriver;
  irqs: () => number;
  notify: (q: number) => void;
  /** Sends one frame (a zero header unless given) from the guest; returns the chain's head. */
  send: (frame: Buffer, hdr?: Buffer) => number;
  /** Posts `n` receive chains of `len` bytes each and notifies. */
  post: (n: number, len?: number) => void;
  /** Frames the device put into posted chains since the last call: [header, frame, used length]. */
  received: () => { hdr: Buffer; frame: Buffer; len: number }[];
}

export function netRig(tap: TapIo, features: bigint, spec: NetSpec = { mac: '52:54:00:00:00:02' }): NetRig {
  const dev = new VirtioNet(tap, spec);
  const ram = new GuardedRam(RAM_SIZE);
  let irqs = 0;
  const mmio = new VirtioMmio(dev, ram.memory, (level) => (irqs += level ? 1 : 0));
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  negotiateFeatures(mmio, features);
  const [rxq, txq] = setUpQueues(mmio, ram, 2, QSIZE, 0x1000, 0x4000) as [SimDriver, SimDriver];
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  if (!(mmio.deviceStatus & STATUS.DRIVER_OK)) throw new Error(`features 0x${features.toString(16)} were refused: not offered`);
  const notify = (q: number) => w(REG.QUEUE_NOTIFY, q);
  // Transmit buffers live in the first half of the data area, receive buffers in the second; each ring slot
  // has its own, so a buffer is never reused while the device may hold it.
  let txSlot = 0;
  const rxBufs = new Map<number, number>();
  let rxSlot = 0;
  const TX_AREA = DATA;
  const RX_AREA = DATA + 0x60000;
  return {
    dev,
    mmio,
    ram,
    rxq,
    txq,
    irqs: () => irqs,
    notify,
    send(frame, hdr = Buffer.alloc(12)) {
      const at = TX_AREA + (txSlot++ % QSIZE) * 0x4000;
      hdr.copy(ram.ram, at);
      frame.copy(ram.ram, at + hdr.length);
      const head = txq.addChain([{ addr: at, len: hdr.length + frame.length }]);
      notify(1);
      return head;
    },
    post(n, len = 2048) {
      for (let i = 0; i < n; i++) {
        const at = RX_AREA + (rxSlot++ % QSIZE) * 0x2000;
        rxBufs.set(rxq.addChain([{ addr: at, len, write: true }]), at);
      }
      notify(0);
    },
    received() {
      return rxq.takeUsed().map((u) => {
        const at = rxBufs.get(u.id)!;
        const bytes = Buffer.from(ram.ram.subarray(at, at + u.len));
        return { hdr: bytes.subarray(0, 12), frame: bytes.subarray(12), len: u.len };
      });
    },
  };
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.replaceAll(':', ''), 'hex');
}

export function ipBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

export function eth(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  dst.copy(h, 0);
  src.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

export function arpRequest(srcMac: Buffer, srcIp: Buffer, targetIp: Buffer): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  srcMac.copy(a, 8);
  srcIp.copy(a, 14);
  targetIp.copy(a, 24);
  return eth(Buffer.alloc(6, 0xff), srcMac, 0x0806, a);
}

export function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function icmpEcho(dstMac: Buffer, srcMac: Buffer, src: Buffer, dst: Buffer, id: number, seq: number, payload: Buffer): Buffer {
  const icmp = Buffer.alloc(8 + payload.length);
  icmp[0] = 8;
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  payload.copy(icmp, 8);
  icmp.writeUInt16BE(inetChecksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt16BE(seq, 4);
  ip[8] = 64;
  ip[9] = 1;
  src.copy(ip, 12);
  dst.copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  return eth(dstMac, srcMac, 0x0800, Buffer.concat([ip, icmp]));
}

/** An ICMP echo reply in `frame`, as [id, seq, payload], or undefined for any other frame. */
export function echoReply(frame: Buffer): { id: number; seq: number; payload: Buffer } | undefined {
  if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 1) return undefined;
  const ihl = (frame[14]! & 0xf) * 4;
  const icmp = frame.subarray(14 + ihl, 14 + frame.readUInt16BE(16));
  if (icmp[0] !== 0) return undefined;
  return { id: icmp.readUInt16BE(4), seq: icmp.readUInt16BE(6), payload: icmp.subarray(8) };
}

/** The sender's MAC of an ARP reply in `frame`, if it is one. */
export function arpReplySender(frame: Buffer): Buffer | undefined {
  if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0806 || frame.readUInt16BE(20) !== 2) return undefined;
  return frame.subarray(22, 28);
}
