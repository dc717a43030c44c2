import { VrunError } from '../../common/errors.js';
import { EBDA_END, IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR, MPTABLE_START } from '../layout.js';

/**
 * Intel MultiProcessor Specification 1.4 tables: how a kernel built with CONFIG_X86_MPPARSE and
 * no ACPI learns how many CPUs there are, their local APIC ids, and how the 24 IOAPIC pins map to
 * ISA IRQs. Linux finds the floating pointer by scanning the last KiB of base memory (0x9fc00),
 * follows it to the configuration table placed right behind it, and brings up the APs with
 * INIT/SIPI through the in-kernel LAPIC, so APs need no register state from us.
 */

export const MP_FLOATING_SIZE = 16;
export const MP_HEADER_SIZE = 44;
export const MP_CPU_ENTRY_SIZE = 20;
export const MP_ENTRY_SIZE = 8;
/** What fits between the MP table start and the end of the EBDA; see mpTableSize(). */
export const MAX_VCPUS = 32;

const ENTRY_CPU = 0;
const ENTRY_BUS = 1;
const ENTRY_IOAPIC = 2;
const ENTRY_INTSRC = 3;
const ENTRY_LINTSRC = 4;
const CPU_ENABLED = 1;
const CPU_BOOTPROCESSOR = 2;
/** The versions KVM's in-kernel LAPIC and IOAPIC report. */
const LAPIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
const MPC_APIC_USABLE = 1;
const MP_INT = 0;
const MP_NMI = 1;
const MP_EXTINT = 3;
/** Family 6 signature and the FPU + APIC feature bits, as a real MP BIOS would write them. */
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = 0x201;
const MP_SPEC_REV = 4;
const ISA_BUS_ID = 0;

export function mpTableSize(vcpus: number): number {
  return MP_FLOATING_SIZE + MP_HEADER_SIZE + vcpus * MP_CPU_ENTRY_SIZE + MP_ENTRY_SIZE * (2 + IOAPIC_PINS + 2);
}

/** The IOAPIC takes the first APIC id after the CPUs. */
export function ioapicId(vcpus: number): number {
  return vcpus;
}

function checksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum = (sum + buf[i]!) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** The floating pointer followed by the configuration table, to be placed at MPTABLE_START. */
export function buildMpTable(vcpus: number): Buffer {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new VrunError(`${vcpus} vCPUs requested: the MP table supports 1 to ${MAX_VCPUS}`);
  }
  const size = mpTableSize(vcpus);
  if (MPTABLE_START + size > EBDA_END) throw new VrunError(`MP table for ${vcpus} vCPUs does not fit below ${EBDA_END}`);
  const buf = Buffer.alloc(size);
  const tableAddr = MPTABLE_START + MP_FLOATING_SIZE;

  buf.write('_MP_', 0, 'latin1');
  buf.writeUInt32LE(tableAddr, 4);
  buf[8] = 1; // length in 16-byte paragraphs
  buf[9] = MP_SPEC_REV;
  // feature1 = 0: a configuration table is present; feature2 bit 7 clear: virtual wire mode, no IMCR.

  let off = MP_FLOATING_SIZE + MP_HEADER_SIZE;
  let entries = 0;
  const ioapic = ioapicId(vcpus);
  for (let cpu = 0; cpu < vcpus; cpu++) {
    buf[off] = ENTRY_CPU;
    buf[off + 1] = cpu;
    buf[off + 2] = LAPIC_VERSION;
    buf[off + 3] = CPU_ENABLED | (cpu === 0 ? CPU_BOOTPROCESSOR : 0);
    buf.writeUInt32LE(CPU_SIGNATURE, off + 4);
    buf.writeUInt32LE(CPU_FEATURES, off + 8);
    off += MP_CPU_ENTRY_SIZE;
    entries++;
  }
  buf[off] = ENTRY_BUS;
  buf[off + 1] = ISA_BUS_ID;
  buf.write('ISA   ', off + 2, 'latin1');
  off += MP_ENTRY_SIZE;
  entries++;
  buf[off] = ENTRY_IOAPIC;
  buf[off + 1] = ioapic;
  buf[off + 2] = IOAPIC_VERSION;
  buf[off + 3] = MPC_APIC_USABLE;
  buf.writeUInt32LE(IOAPIC_ADDR, off + 4);
  off += MP_ENTRY_SIZE;
  entries++;
  for (let irq = 0; irq < IOAPIC_PINS; irq++) {
    // irqflag 0 = "conforms to the bus": ISA means active high, edge triggered.
    writeInterrupt(buf, off, ENTRY_INTSRC, MP_INT, irq, ioapic, irq);
    off += MP_ENTRY_SIZE;
    entries++;
  }
  writeInterrupt(buf, off, ENTRY_LINTSRC, MP_EXTINT, 0, 0, 0);
  off += MP_ENTRY_SIZE;
  entries++;
  writeInterrupt(buf, off, ENTRY_LINTSRC, MP_NMI, 0, 0xff, 1);
  off += MP_ENTRY_SIZE;
  entries++;

  const h = MP_FLOATING_SIZE;
  buf.write('PCMP', h, 'latin1');
  buf.writeUInt16LE(size - MP_FLOATING_SIZE, h + 4);
  buf[h + 6] = MP_SPEC_REV;
  buf.write('VRUN    ', h + 8, 'latin1');
  buf.write('VRUN VMM    ', h + 16, 'latin1');
  buf.writeUInt16LE(entries, h + 34);
  buf.writeUInt32LE(LAPIC_ADDR, h + 36);
  buf[h + 7] = checksum(buf, h, size);
  buf[10] = checksum(buf, 0, MP_FLOATING_SIZE);
  return buf;
}

function writeInterrupt(buf: Buffer, off: number, entry: number, irqType: number, srcIrq: number, dstApic: number, dstPin: number): void {
  buf[off] = entry;
  buf[off + 1] = irqType;
  buf.writeUInt16LE(0, off + 2);
  buf[off + 4] = ISA_BUS_ID;
  buf[off + 5] = srcIrq;
  buf[off + 6] = dstApic;
  buf[off + 7] = dstPin;
}

export function writeMpTable(ram: Uint8Array, vcpus: number): void {
  const table = buildMpTable(vcpus);
  if (MPTABLE_START + table.length > ram.length) throw new VrunError('guest RAM too small for the MP table');
  ram.set(table, MPTABLE_START);
}
