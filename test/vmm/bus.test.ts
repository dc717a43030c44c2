import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Bus, type BusDevice } from '../../src/vmm/devices/bus.js';
import { ExitPort } from '../../src/vmm/devices/exit-port.js';
import { I8042 } from '../../src/vmm/devices/i8042.js';
import { attachSilentPorts } from '../../src/vmm/devices/legacy-ports.js';
import { SERIAL_PORT_BASE, SERIAL_PORT_SIZE, Serial } from '../../src/vmm/devices/serial.js';

/** A device that records every access and answers reads with offset-derived values. */
class Recorder implements BusDevice {
  readonly log: string[] = [];
  constructor(readonly name: string) {}
  read(offset: number, size: number): number {
    this.log.push(`r${offset}/${size}`);
    return (0x11223344 + offset) >>> 0;
  }
  write(offset: number, size: number, value: number): void {
    this.log.push(`w${offset}/${size}=${value.toString(16)}`);
  }
}

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('I/O buses', () => {
  it('routes accesses to the device covering them, with the offset inside it', () => {
    const bus = new Bus('mmio');
    const a = new Recorder('a');
    const b = new Recorder('b');
    bus.insert(0xd000_0000, 0x1000, a);
    bus.insert(0xd000_1000, 0x1000, b);
    expect(bus.read(0xd000_0004, 4)).toBe(0x11223348);
    bus.write(0xd000_1ffc, 4, 0xdeadbeef);
    bus.write(0xd000_1000, 1, 0x1ff);
    expect(a.log).toEqual(['r4/4']);
    expect(b.log).toEqual(['w4092/4=deadbeef', 'w0/1=ff']);
  });

  it('rejects overlapping, empty and out-of-range mappings', () => {
    const pio = new Bus('pio');
    pio.insert(0x3f8, 8, new Recorder('serial'));
    expect(() => pio.insert(0x3ff, 1, new Recorder('x'))).toThrow(/overlaps serial/);
    expect(() => pio.insert(0x3f0, 9, new Recorder('x'))).toThrow(/overlaps/);
    expect(() => pio.insert(0x3f0, 0, new Recorder('x'))).toThrow(/invalid/);
    expect(() => pio.insert(0xfffe, 4, new Recorder('x'))).toThrow(/invalid/);
    expect(() => pio.insert(-1, 1, new Recorder('x'))).toThrow(/invalid/);
    pio.insert(0x3f0, 8, new Recorder('adjacent'));
    pio.insert(0x400, 1, new Recorder('after'));
    expect(pio.find(0x3f7)?.device.name).toBe('adjacent');
    expect(pio.find(0x3f8)?.device.name).toBe('serial');
    expect(pio.find(0x400)?.device.name).toBe('after');
    expect(pio.remove(0x3f8)).toBe(true);
    expect(pio.find(0x3f8)).toBeUndefined();
  });

  it('reads unknown and straddling accesses as all-ones and logs them at a bounded rate', () => {
    const { logger, lines } = captureLogger();
    let now = 0;
    const bus = new Bus('pio', logger, () => now);
    const dev = new Recorder('dev');
    bus.insert(0x100, 4, dev);
    expect(bus.read(0x200, 1)).toBe(0xff);
    expect(bus.read(0x200, 2)).toBe(0xffff);
    expect(bus.read(0x200, 4)).toBe(0xffff_ffff);
    expect(bus.read(0x102, 4)).toBe(0xffff_ffff); // runs past the device's end
    expect(bus.read(0x100, 3)).toBe(0xffff_ffff); // not an access size
    expect(dev.log).toEqual([]);
    for (let i = 0; i < 1000; i++) bus.write(0x300 + (i % 7), 1, i);
    expect(bus.unhandled).toBe(1005);
    const debug = lines.filter((l) => l.msg === 'guest access to no device');
    expect(debug.length).toBe(20);
    now = 20_000;
    bus.read(0x200, 1);
    const summary = lines.find((l) => l.msg === 'unhandled guest accesses not logged');
    expect(summary?.suppressed).toBe(985);
    expect(lines.filter((l) => l.msg === 'guest access to no device').length).toBe(21);
  });

  it('moves exit data buffers of 1, 2, 4 and 8 bytes little-endian, splitting 8 into two dwords', () => {
    const bus = new Bus('mmio');
    const dev = new Recorder('dev');
    bus.insert(0x1000, 0x100, dev);
    const d8 = new Uint8Array(8);
    bus.readInto(0x1010, d8);
    expect(Buffer.from(d8).readUInt32LE(0)).toBe(0x11223354);
    expect(Buffer.from(d8).readUInt32LE(4)).toBe(0x11223358);
    bus.writeFrom(0x1020, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    const d2 = new Uint8Array(2);
    bus.readInto(0x1000, d2);
    expect(Array.from(d2)).toEqual([0x44, 0x33]);
    expect(dev.log).toEqual(['r16/4', 'r20/4', 'w32/4=4030201', 'w36/4=8070605', 'r0/2']);
    const odd = new Uint8Array(3);
    bus.readInto(0x1000, odd);
    expect(Array.from(odd)).toEqual([0xff, 0xff, 0xff]);
  });
});

describe('legacy devices on the port bus', () => {
  function machine() {
    const pio = new Bus('pio');
    const events: string[] = [];
    const serial = new Serial({ sink: () => undefined });
    pio.insert(SERIAL_PORT_BASE, SERIAL_PORT_SIZE, serial);
    const i8042 = new I8042({ onReset: () => events.push('reset') });
    pio.insert(0x60, 5, i8042);
    const exit = new ExitPort((s) => events.push(`exit ${s}`));
    pio.insert(0x501, 1, exit);
    // The VM answers these on its vCPU threads and keeps them on the bus too; the bus half is what is visible here.
    attachSilentPorts({ answerPortsNatively: (base, size, value, name) => pio.insert(base, size, { name, read: () => value, write: () => {} }) });
    return { pio, events, exit };
  }

  it('turns the i8042 reset command and a cleared reset line into reboot requests', () => {
    const { pio, events } = machine();
    expect(pio.read(0x64, 1) & 0x02).toBe(0); // input buffer empty, as kb_wait() expects
    pio.write(0x64, 1, 0xfe);
    expect(events).toEqual(['reset']);
    pio.write(0x64, 1, 0xd1);
    pio.write(0x60, 1, 0x02); // output port with bit 0 (reset line) low
    expect(events).toEqual(['reset', 'reset']);
  });

  it('answers the i8042 driver probe without timeouts', () => {
    const { pio } = machine();
    const command = (cmd: number): number => {
      pio.write(0x64, 1, cmd);
      expect(pio.read(0x64, 1) & 0x01).toBe(1);
      return pio.read(0x60, 1);
    };
    expect(command(0xaa)).toBe(0x55);
    const ctr = command(0x20);
    expect(command(0x20)).toBe(ctr);
    pio.write(0x64, 1, 0x60);
    pio.write(0x60, 1, (ctr | 0x10) & ~0x01);
    expect(command(0x20)).toBe((ctr | 0x10) & ~0x01);
    expect(pio.read(0x64, 1) & 0x01).toBe(0);
    // a byte for the (absent) keyboard: timeout status and 0xff
    pio.write(0x60, 1, 0xf2);
    expect(pio.read(0x64, 1) & 0x40).toBe(0x40);
    expect(pio.read(0x60, 1)).toBe(0xff);
  });

  it('reports the first status byte written to the exit port and ignores later ones', () => {
    const { pio, events, exit } = machine();
    pio.write(0x501, 1, 0x2a);
    pio.write(0x501, 1, 0x00);
    pio.write(0x501, 4, 0x1234_5601);
    expect(events).toEqual(['exit 42']);
    expect(exit.status).toBe(42);
  });

  it('answers CMOS and the delay port silently, absent ports as all-ones', () => {
    const { pio } = machine();
    pio.write(0x80, 1, 0);
    pio.write(0x70, 1, 0x0a);
    expect(pio.read(0x71, 1)).toBe(0xff);
    expect(pio.read(0x2f8 + 5, 1)).toBe(0xff); // COM2 LSR: no UART there
    expect(pio.unhandled).toBe(1);
  });
});
