import type { BusDevice } from './bus.js';

/**
 * A 16550A UART, as much of it as Linux's 8250 driver uses for a console: its autoconfig probe
 * (IER read-back, FIFO bits in IIR, scratch register, loopback through MSR), THRE and receive
 * interrupts, and the divisor latch (stored, since there is no real baud rate). Transmitted bytes
 * go to a sink in batches; the guest decides how much it writes, so the total is bounded and the
 * overflow is counted, not buffered. Received bytes come from the host through a bounded FIFO.
 */

export const SERIAL_PORT_BASE = 0x3f8;
export const SERIAL_PORT_SIZE = 8;

const DATA = 0;
const IER = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;
const IER_MASK = 0x0f;

const IIR_NO_INT = 0x01;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_FIFO_ENABLED = 0xc0;

const FCR_ENABLE_FIFO = 0x01;
const FCR_CLEAR_RCVR = 0x02;

const LCR_DLAB = 0x80;

const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const MCR_MASK = 0x1f;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

const MSR_DCTS = 0x01;
const MSR_DDSR = 0x02;
const MSR_TERI = 0x04;
const MSR_DDCD = 0x08;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
const MSR_DELTA_MASK = 0x0f;

/** 115200 baud from the 1.8432 MHz clock: what firmware leaves in the latch. */
const DEFAULT_DIVISOR = 1;

export interface SerialOptions {
  /** Receives transmitted bytes in batches (on newline, when the batch fills, or on flush()). */
  sink?: (bytes: Buffer) => void;
  /** Called with the interrupt line's new level whenever it changes. */
  irq?: (level: boolean) => void;
  /** Bytes the sink may receive in total; the rest is dropped and counted in `droppedOutput`. */
  maxOutputBytes?: number;
  /** Host-to-guest bytes held until the guest reads them. */
  inputCapacity?: number;
}

const BATCH = 256;

export class Serial implements BusDevice {
  readonly name = 'serial';
  private ier = 0;
  private lcr = 0x03; // 8N1
  private mcr = MCR_OUT2;
  private lsrErrors = 0;
  private msr = MSR_DCD | MSR_DSR | MSR_CTS;
  private scr = 0;
  private fcr = 0;
  private divisor = DEFAULT_DIVISOR;
  /** The transmitter is always empty (bytes leave at once); this tracks whether THRE is still owed as an interrupt. */
  private thrInterruptPending = false;
  private irqLevel = false;
  private readonly rx: number[] = [];
  private rxHead = 0;
  private readonly batch = Buffer.alloc(BATCH);
  private batchLength = 0;
  private outputBudget: number;
  droppedOutput = 0;
  droppedInput = 0;
  readonly inputCapacity: number;

  constructor(private readonly opts: SerialOptions = {}) {
    this.outputBudget = opts.maxOutputBytes ?? Number.POSITIVE_INFINITY;
    this.inputCapacity = opts.inputCapacity ?? 4096;
  }

  /** Queues host input for the guest; returns how many bytes were accepted (the rest is dropped). */
  enqueueInput(bytes: Uint8Array): number {
    const room = Math.max(0, this.inputCapacity - this.rxLength());
    const n = Math.min(room, bytes.length);
    for (let i = 0; i < n; i++) this.rx.push(bytes[i]!);
    if (n < bytes.length) this.droppedInput += bytes.length - n;
    this.updateIrq();
    return n;
  }

  /** Sends any batched output to the sink. */
  flush(): void {
    if (this.batchLength === 0) return;
    const out = Buffer.from(this.batch.subarray(0, this.batchLength));
    this.batchLength = 0;
    this.opts.sink?.(out);
  }

  /** The interrupt-relevant registers, for a report on a guest that stopped making progress. */
  debugState(): Record<string, number | boolean> {
    return { ier: this.ier, iir: this.interruptId(), thrInterruptPending: this.thrInterruptPending, irqLevel: this.irqLevel, rxPending: this.rxLength(), lcr: this.lcr, mcr: this.mcr };
  }

  private rxLength(): number {
    return this.rx.length - this.rxHead;
  }

  private popRx(): number {
    if (this.rxLength() === 0) return 0;
    const b = this.rx[this.rxHead++]!;
    if (this.rxHead > 1024 && this.rxHead * 2 > this.rx.length) {
      this.rx.splice(0, this.rxHead);
      this.rxHead = 0;
    }
    return b;
  }

  private clearRx(): void {
    this.rx.length = 0;
    this.rxHead = 0;
  }

  read(offset: number, _size: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case DATA: {
        if (dlab) return this.divisor & 0xff;
        const b = this.popRx();
        this.updateIrq();
        return b;
      }
      case IER:
        return dlab ? (this.divisor >> 8) & 0xff : this.ier;
      case IIR_FCR: {
        const iir = this.interruptId();
        // Reading IIR acknowledges a THRE interrupt (the 16550's documented behaviour).
        if (iir === IIR_THRI) this.thrInterruptPending = false;
        this.updateIrq();
        return iir | ((this.fcr & FCR_ENABLE_FIFO) !== 0 ? IIR_FIFO_ENABLED : 0);
      }
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR: {
        const lsr = LSR_THRE | LSR_TEMT | (this.rxLength() > 0 ? LSR_DR : 0) | this.lsrErrors;
        this.lsrErrors = 0;
        this.updateIrq();
        return lsr;
      }
      case MSR: {
        const v = this.modemStatus();
        this.msr &= ~MSR_DELTA_MASK;
        this.updateIrq();
        return v;
      }
      case SCR:
        return this.scr;
      default:
        return 0xff;
    }
  }

  write(offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case DATA:
        if (dlab) {
          this.divisor = (this.divisor & 0xff00) | v;
          return;
        }
        if ((this.mcr & MCR_LOOP) !== 0) {
          if (this.rxLength() < this.inputCapacity) this.rx.push(v);
          else this.lsrErrors |= LSR_OE;
        } else {
          this.transmit(v);
        }
        // The byte is gone at once, so the holding register is empty again and THRE is owed.
        this.thrInterruptPending = true;
        this.updateIrq();
        return;
      case IER: {
        if (dlab) {
          this.divisor = (this.divisor & 0x00ff) | (v << 8);
          return;
        }
        const enablingThri = (v & IER_THRI) !== 0 && (this.ier & IER_THRI) === 0;
        this.ier = v & IER_MASK;
        // Enabling THRI while the holding register is empty raises it immediately; Linux's
        // startup probe (UART_BUG_TXEN) relies on this.
        if (enablingThri) this.thrInterruptPending = true;
        this.updateIrq();
        return;
      }
      case IIR_FCR:
        this.fcr = v;
        if ((v & FCR_CLEAR_RCVR) !== 0) this.clearRx();
        this.updateIrq();
        return;
      case LCR:
        this.lcr = v;
        return;
      case MCR: {
        const before = this.modemStatus() & 0xf0;
        this.mcr = v & MCR_MASK;
        const after = this.modemStatus() & 0xf0;
        this.msr |= deltaBits(before, after);
        this.updateIrq();
        return;
      }
      case SCR:
        this.scr = v;
        return;
      default:
        return; // LSR and MSR are read-only
    }
  }

  private modemStatus(): number {
    if ((this.mcr & MCR_LOOP) === 0) return this.msr;
    // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
    const m = this.mcr;
    const lines =
      ((m & MCR_RTS) !== 0 ? MSR_CTS : 0) |
      ((m & MCR_DTR) !== 0 ? MSR_DSR : 0) |
      ((m & MCR_OUT1) !== 0 ? MSR_RI : 0) |
      ((m & MCR_OUT2) !== 0 ? MSR_DCD : 0);
    return lines | (this.msr & MSR_DELTA_MASK);
  }

  private interruptId(): number {
    if ((this.ier & IER_RLSI) !== 0 && this.lsrErrors !== 0) return IIR_RLSI;
    if ((this.ier & IER_RDI) !== 0 && this.rxLength() > 0) return IIR_RDI;
    if ((this.ier & IER_THRI) !== 0 && this.thrInterruptPending) return IIR_THRI;
    if ((this.ier & IER_MSI) !== 0 && (this.msr & MSR_DELTA_MASK) !== 0) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    const level = this.interruptId() !== IIR_NO_INT;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.opts.irq?.(level);
  }

  private transmit(byte: number): void {
    if (this.outputBudget <= 0) {
      this.droppedOutput++;
      return;
    }
    this.outputBudget--;
    this.batch[this.batchLength++] = byte;
    if (byte === 0x0a || this.batchLength === BATCH) this.flush();
  }
}

function deltaBits(before: number, after: number): number {
  const changed = before ^ after;
  return (
    ((changed & MSR_CTS) !== 0 ? MSR_DCTS : 0) |
    ((changed & MSR_DSR) !== 0 ? MSR_DDSR : 0) |
    // TERI reports only the trailing edge of RI.
    ((before & MSR_RI) !== 0 && (after & MSR_RI) === 0 ? MSR_TERI : 0) |
    ((changed & MSR_DCD) !== 0 ? MSR_DDCD : 0)
  );
}
