import type { BusDevice } from './bus.js';

/**
 * The PS/2 controller at 0x60/0x64, reduced to what a guest uses it for here: the reset line.
 * Linux's `reboot=k` writes 0xFE to the command port; that (or clearing the reset bit through
 * "write output port") becomes a reboot request for the VMM. The rest answers the driver's probe
 * (self-test, command byte read/write) promptly so boot does not wait on timeouts, and reports
 * "no keyboard" (timeout status + 0xFF) for bytes sent to a device, so atkbd gives up at once.
 *
 * Registered as one device covering 0x60..0x64; offsets 1-3 (0x61 belongs to the in-kernel PIT's
 * speaker port, never reaching here when the PIT is in the kernel) read as 0xFF.
 */

export const I8042_PORT_BASE = 0x60;
export const I8042_PORT_SIZE = 5;
export const I8042_KBD_IRQ = 1;

const DATA = 0;
const STATUS_CMD = 4;

const STR_OBF = 0x01;
const STR_SYSFLAG = 0x04;
const STR_CMDDAT = 0x08;
const STR_KEYLOCK = 0x10; // set = keyboard not locked
const STR_TIMEOUT = 0x40;

const CTR_KBDINT = 0x01;
const CTR_KBDDIS = 0x10;
const CTR_AUXDIS = 0x20;
const CTR_XLATE = 0x40;

const CMD_READ_CTR = 0x20;
const CMD_WRITE_CTR = 0x60;
const CMD_AUX_DISABLE = 0xa7;
const CMD_AUX_ENABLE = 0xa8;
const CMD_AUX_TEST = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_KBD_TEST = 0xab;
const CMD_KBD_DISABLE = 0xad;
const CMD_KBD_ENABLE = 0xae;
const CMD_READ_OUTPORT = 0xd0;
const CMD_WRITE_OUTPORT = 0xd1;
const CMD_KBD_LOOP = 0xd2;
const CMD_PULSE_RESET = 0xfe;

const SELF_TEST_OK = 0x55;
/** Output port: bit 0 high = CPU not held in reset, bit 1 = A20 enabled. */
const OUTPORT_DEFAULT = 0x03;
const OUTPORT_RESET_LINE = 0x01;

export interface I8042Options {
  /** The guest asked for a system reset. */
  onReset: () => void;
  /** IRQ 1 level, raised while output is waiting and the keyboard interrupt is enabled. */
  irq?: (level: boolean) => void;
}

export class I8042 implements BusDevice {
  readonly name = 'i8042';
  private ctr = CTR_KBDINT | CTR_XLATE | CTR_AUXDIS;
  private outport = OUTPORT_DEFAULT;
  private output: number | undefined;
  private timeoutFlag = false;
  private cmdWasLast = false;
  /** A command that takes a data byte, waiting for it. */
  private pendingCommand: number | undefined;
  private irqLevel = false;
  resets = 0;

  constructor(private readonly opts: I8042Options) {}

  read(offset: number, _size: number): number {
    if (offset === STATUS_CMD) {
      return (
        (this.output !== undefined ? STR_OBF : 0) |
        STR_SYSFLAG |
        STR_KEYLOCK |
        (this.cmdWasLast ? STR_CMDDAT : 0) |
        (this.timeoutFlag ? STR_TIMEOUT : 0)
      );
    }
    if (offset === DATA) {
      const v = this.output ?? 0;
      this.output = undefined;
      this.timeoutFlag = false;
      this.updateIrq();
      return v;
    }
    return 0xff;
  }

  write(offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    if (offset === STATUS_CMD) {
      this.cmdWasLast = true;
      this.command(v);
    } else if (offset === DATA) {
      this.cmdWasLast = false;
      this.data(v);
    }
  }

  private command(cmd: number): void {
    this.pendingCommand = undefined;
    switch (cmd) {
      case CMD_READ_CTR:
        this.respond(this.ctr);
        return;
      case CMD_WRITE_CTR:
      case CMD_WRITE_OUTPORT:
      case CMD_KBD_LOOP:
        this.pendingCommand = cmd;
        return;
      case CMD_AUX_DISABLE:
        this.ctr |= CTR_AUXDIS;
        return;
      case CMD_AUX_ENABLE:
        this.ctr &= ~CTR_AUXDIS;
        return;
      case CMD_AUX_TEST:
      case CMD_KBD_TEST:
        this.respond(0x00);
        return;
      case CMD_SELF_TEST:
        this.respond(SELF_TEST_OK);
        return;
      case CMD_KBD_DISABLE:
        this.ctr |= CTR_KBDDIS;
        return;
      case CMD_KBD_ENABLE:
        this.ctr &= ~CTR_KBDDIS;
        return;
      case CMD_READ_OUTPORT:
        this.respond(this.outport);
        return;
      default:
        // 0xF0-0xFF pulse output port lines low for a moment; bit 0 low pulses the CPU reset line.
        if (cmd === CMD_PULSE_RESET || (cmd >= 0xf0 && (cmd & 0x01) === 0)) this.reset();
        return;
    }
  }

  private data(v: number): void {
    const pending = this.pendingCommand;
    this.pendingCommand = undefined;
    switch (pending) {
      case CMD_WRITE_CTR:
        this.ctr = v;
        this.updateIrq();
        return;
      case CMD_WRITE_OUTPORT:
        this.outport = v;
        if ((v & OUTPORT_RESET_LINE) === 0) this.reset();
        return;
      case CMD_KBD_LOOP:
        this.respond(v);
        return;
      default:
        // A byte for the keyboard, and there is none: the controller times out.
        this.timeoutFlag = true;
        this.respond(0xff);
        return;
    }
  }

  private respond(byte: number): void {
    this.output = byte & 0xff;
    this.updateIrq();
  }

  private reset(): void {
    this.resets++;
    this.opts.onReset();
  }

  private updateIrq(): void {
    const level = this.output !== undefined && (this.ctr & CTR_KBDINT) !== 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.opts.irq?.(level);
  }
}
