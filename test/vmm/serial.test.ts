import { describe, expect, it } from 'vitest';
import { Serial } from '../../src/vmm/devices/serial.js';

const RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function uart(opts: { max?: number; input?: number } = {}) {
  const out: Buffer[] = [];
  const irq: boolean[] = [];
  const s = new Serial({ sink: (b) => out.push(b), irq: (l) => irq.push(l), maxOutputBytes: opts.max, inputCapacity: opts.input });
  const inb = (o: number): number => s.read(o, 1);
  const outb = (o: number, v: number): void => s.write(o, 1, v);
  return { s, out, irq, inb, outb, text: () => Buffer.concat(out).toString('latin1') };
}

describe('8250/16550A UART', () => {
  it('passes the probes of Linux autoconfig and is identified as a 16550A', () => {
    const { inb, outb } = uart();
    // existence test: IER reads back what was written, upper nibble zero
    outb(IER, 0);
    expect(inb(IER) & 0x0f).toBe(0);
    outb(IER, 0x0f);
    expect(inb(IER) & 0x0f).toBe(0x0f);
    outb(IER, 0xff);
    expect(inb(IER)).toBe(0x0f);
    outb(IER, 0);
    // scratch register
    for (const v of [0xa5, 0x5a, 0x00]) {
      outb(SCR, v);
      expect(inb(SCR)).toBe(v);
    }
    // FIFO detection: IIR bits 7:6 = 11 once the FIFO is enabled
    outb(FCR, 0);
    expect(inb(IIR) >> 6).toBe(0);
    outb(FCR, 0x01);
    expect(inb(IIR) >> 6).toBe(3);
    // no EFR behind LCR=0xBF / 0x80, no 64-byte FIFO bit (not a 16650/16750)
    outb(LCR, 0xbf);
    expect(inb(2)).not.toBe(0);
    outb(LCR, 0x80);
    expect(inb(2)).not.toBe(0);
    outb(FCR, 0x21);
    expect(inb(IIR) >> 5).toBe(6);
    outb(LCR, 0);
    // loopback test: MCR = LOOP|OUT2|RTS reads back as DCD|CTS in MSR
    const saveMcr = inb(MCR);
    outb(MCR, 0x1a);
    expect(inb(MSR) & 0xf0).toBe(0x90);
    outb(MCR, 0x1f);
    expect(inb(MSR) & 0xf0).toBe(0xf0);
    outb(MCR, saveMcr);
    // LSR: transmitter empty, no data
    expect(inb(LSR) & 0x61).toBe(0x60);
    expect(inb(IIR) & 0x01).toBe(1);
  });

  it('latches the divisor behind DLAB without disturbing IER or the data path', () => {
    const { inb, outb, text, s } = uart();
    outb(IER, 0x05);
    outb(LCR, 0x83);
    outb(DLL, 0x0c);
    outb(DLM, 0x01);
    expect([inb(DLL), inb(DLM)]).toEqual([0x0c, 0x01]);
    outb(LCR, 0x03);
    expect(inb(IER)).toBe(0x05);
    expect(inb(LCR)).toBe(0x03);
    outb(THR, 0x41);
    s.flush();
    expect(text()).toBe('A');
  });

  it('raises THRE when enabled with the transmitter empty (the UART_BUG_TXEN probe) and acknowledges it on IIR read', () => {
    const { inb, outb, irq } = uart();
    outb(IER, 0x02);
    expect(irq).toEqual([true]);
    expect(inb(LSR) & 0x40).toBe(0x40);
    expect(inb(IIR) & 0x0f).toBe(0x02);
    expect(irq).toEqual([true, false]);
    expect(inb(IIR) & 0x01).toBe(1);
    // each transmitted byte leaves at once and owes a new THRE
    outb(THR, 0x42);
    expect(irq).toEqual([true, false, true]);
    expect(inb(IIR) & 0x0f).toBe(0x02);
    outb(IER, 0);
    expect(irq.at(-1)).toBe(false);
  });

  it('delivers host input with RDI priority over THRE, LSR.DR and a bounded FIFO', () => {
    const { s, inb, outb, irq } = uart({ input: 4 });
    outb(IER, 0x03);
    expect(inb(IIR) & 0x0f).toBe(0x02); // THRE first, nothing received
    expect(s.enqueueInput(Buffer.from('hello'))).toBe(4);
    expect(s.droppedInput).toBe(1);
    expect(irq.at(-1)).toBe(true);
    expect(inb(IIR) & 0x0f).toBe(0x04);
    let got = '';
    while (inb(LSR) & 0x01) got += String.fromCharCode(inb(RBR));
    expect(got).toBe('hell');
    expect(inb(IIR) & 0x01).toBe(1);
    expect(irq.at(-1)).toBe(false);
    s.enqueueInput(Buffer.from('xy'));
    outb(FCR, 0x03); // clear the receive FIFO
    expect(inb(LSR) & 0x01).toBe(0);
  });

  it('loops transmitted bytes back to the receiver in loopback mode, none reach the sink', () => {
    const { s, inb, outb, out } = uart();
    outb(MCR, 0x10);
    outb(THR, 0x55);
    outb(THR, 0xaa);
    expect(inb(LSR) & 0x01).toBe(1);
    expect([inb(RBR), inb(RBR)]).toEqual([0x55, 0xaa]);
    s.flush();
    expect(out).toHaveLength(0);
  });

  it('batches output by line and stops at the output bound, counting the rest', () => {
    const { s, outb, out } = uart({ max: 10 });
    for (const c of Buffer.from('line1\nline2-and-more\n')) outb(THR, c);
    s.flush();
    expect(out[0]!.toString()).toBe('line1\n');
    expect(Buffer.concat(out).toString()).toBe('line1\nline');
    expect(s.droppedOutput).toBe('line1\nline2-and-more\n'.length - 10);
  });

  it('reports modem status changes as MSI and clears the deltas on read', () => {
    const { inb, outb } = uart();
    outb(MCR, 0x10); // loopback, all lines low
    inb(MSR);
    outb(IER, 0x08);
    expect(inb(IIR) & 0x01).toBe(1);
    outb(MCR, 0x10 | 0x02); // RTS: CTS appears
    expect(inb(IIR) & 0x0f).toBe(0x00);
    const msr = inb(MSR);
    expect(msr & 0x10).toBe(0x10);
    expect(msr & 0x01).toBe(0x01);
    expect(inb(MSR) & 0x0f).toBe(0);
    expect(inb(IIR) & 0x01).toBe(1);
  });
});
