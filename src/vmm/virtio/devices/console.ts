import { VrunError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';
import type { Virtqueue } from '../queue.js';
import { ConsoleControl } from './console-control.js';
import { ConsolePort, HOST_TX_CAP, type ConsolePortStats } from './console-port.js';

/**
 * virtio-console (device id 3) with VIRTIO_CONSOLE_F_MULTIPORT: named ports the guest sees as
 * /dev/vport0pN (and /sys/class/virtio-ports/.../name), e.g. `vrun.agent`. Queue layout: port 0
 * rx/tx are queues 0/1, the control queues 2/3, port N >= 1 uses 2N+2 / 2N+3.
 *
 * The device routes notifications to the control protocol (console-control.ts) and to each port's data
 * path (console-port.ts), bounds the work one notification may do, and stops everything when a queue
 * breaks.
 */

export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1n;

const QUEUE_SIZE = 256;
const CTRL_RX = 2;
const CTRL_TX = 3;
/** Port names are short identifiers; the guest copies them into sysfs. */
const MAX_NAME = 64;
/**
 * What one notification may make the device do before it yields to the event loop: vCPUs run in
 * parallel with us, so a guest that posts as fast as we take would otherwise hold the loop for ever.
 */
const PASS_BYTES = HOST_TX_CAP;
const PASS_CHAINS = QUEUE_SIZE;

export interface ConsolePortSpec {
  name: string;
  /** The port the kernel uses as hvc0. */
  console?: boolean;
}

export class VirtioConsole implements VirtioDevice {
  readonly name = 'console';
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly features = 1n << VIRTIO_CONSOLE_F_MULTIPORT;
  readonly queueMaxSizes: number[];
  readonly configSize = 12;
  readonly ports: ConsolePort[];
  private readonly control: ConsoleControl;
  private ctx: ActivateContext | undefined;
  /** Work left over from a pass that hit its budget, waiting for setImmediate (keys: port id, or 'ctrl'). */
  private readonly scheduled = new Set<number | 'ctrl'>();

  constructor(
    specs: ConsolePortSpec[],
    private readonly logger?: Logger,
  ) {
    if (specs.length === 0 || specs.length > 31) throw new VrunError(`virtio-console needs 1 to 31 ports, not ${specs.length}`);
    const names = new Set<string>();
    for (const s of specs) {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(s.name) || s.name.length > MAX_NAME) throw new VrunError(`console port name ${JSON.stringify(s.name)} is not 1-64 of [A-Za-z0-9._-]`);
      if (names.has(s.name)) throw new VrunError(`console port name ${s.name} is used twice`);
      names.add(s.name);
    }
    if (specs.filter((s) => s.console).length > 1) throw new VrunError('only one console port can be the console');
    this.ports = specs.map(
      (s, i) => new ConsolePort(i, s.name, s.console === true, { kick: () => this.flush(), hostChanged: (p) => this.hostChanged(p), txReady: (p) => this.dataIn(p) }),
    );
    this.control = new ConsoleControl(this.ports, logger);
    this.queueMaxSizes = Array.from({ length: 2 * specs.length + 2 }, () => QUEUE_SIZE);
  }

  port(name: string): ConsolePort | undefined {
    return this.ports.find((p) => p.name === name);
  }

  readConfig(offset: number, size: number): number {
    const cfg = Buffer.alloc(this.configSize);
    cfg.writeUInt32LE(this.ports.length, 4); // max_nr_ports; cols/rows stay 0
    return cfg.readUIntLE(offset, size);
  }

  writeConfig(): void {
    // emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered: ignore.
  }

  activate(ctx: ActivateContext): void {
    this.ctx = ctx;
  }

  reset(): void {
    this.ctx = undefined;
    this.control.reset();
    for (const p of this.ports) p.reset();
  }

  /** Per port: what went each way and what waits where. */
  stats(): Record<string, ConsolePortStats> {
    return Object.fromEntries(this.ports.map((p) => [p.name, p.stats]));
  }

  debugState(): Record<string, unknown> {
    return { ports: this.ports.map((p) => p.debugState()), controlMessagesWaiting: this.control.waiting };
  }

  private rxQueue(port: number): number {
    return port === 0 ? 0 : 2 * port + 2;
  }

  private txQueue(port: number): number {
    return port === 0 ? 1 : 2 * port + 3;
  }

  notify(index: number): void {
    if (!this.ctx) return;
    if (index === CTRL_TX) this.controlIn();
    else if (index === CTRL_RX || this.isRx(index)) this.flush();
    else {
      const port = this.portOfTx(index);
      if (port) this.dataIn(port);
    }
  }

  private isRx(index: number): boolean {
    return index === 0 || (index >= 4 && index % 2 === 0);
  }

  private portOfTx(index: number): ConsolePort | undefined {
    return index === 1 ? this.ports[0] : this.ports[(index - 3) / 2];
  }

  private dataIn(port: ConsolePort): void {
    const q = this.ctx?.queues[this.txQueue(port.id)];
    if (!this.ctx || !q) return;
    if (port.forwardTx(q, PASS_BYTES, PASS_CHAINS)) this.later(port.id, () => this.dataIn(port));
    this.finish(q);
  }

  private controlIn(): void {
    const q = this.ctx?.queues[CTRL_TX];
    if (!this.ctx || !q) return;
    if (this.control.receive(q, PASS_CHAINS)) this.later('ctrl', () => this.controlIn());
    this.finish(q);
    this.flush();
  }

  /** Runs `fn` on a later turn of the event loop, once per key, if the device was not reset meanwhile. */
  private later(key: number | 'ctrl', fn: () => void): void {
    if (this.scheduled.has(key)) return;
    this.scheduled.add(key);
    const ctx = this.ctx;
    setImmediate(() => {
      this.scheduled.delete(key);
      if (this.ctx && this.ctx === ctx) fn();
    });
  }

  private hostChanged(p: ConsolePort): void {
    if (!this.ctx) return;
    // A host that went takes nothing: what the guest holds in flight or waiting is dropped now.
    this.dataIn(p);
    if (this.ctx && this.control.announceHost(p)) this.flush();
  }

  /** Delivers pending control messages and port data into the guest's receive buffers. */
  private flush(): void {
    if (!this.ctx) return;
    const ctrl = this.ctx.queues[CTRL_RX];
    if (ctrl) {
      this.control.deliver(ctrl);
      this.finish(ctrl);
    }
    // Only into open ports: Linux discards what arrives on a port no process has open, so bytes the
    // host sent early wait here until the guest opens the port (PORT_OPEN), as QEMU's virtio-serial does.
    for (const p of this.ports) {
      const rx = this.ctx?.queues[this.rxQueue(p.id)];
      if (rx && p.guestOpen && p.pendingBytes > 0 && p.fill(rx)) this.finish(rx);
    }
  }

  private finish(q: Virtqueue): void {
    if (!this.ctx) return;
    if (q.error) {
      // The transport stops the device (DEVICE_NEEDS_RESET); nothing here may touch its queues until the
      // driver resets it, not even host data or a 'drain' arriving later.
      const ctx = this.ctx;
      this.ctx = undefined;
      for (const p of this.ports) p.abandonTx();
      ctx.fail(q.error.message);
    } else if (q.needsInterrupt()) this.ctx.signalUsed();
  }
}
