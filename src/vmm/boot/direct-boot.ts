import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { VrunError, errorMessage } from '../../common/errors.js';
import { PAGE_SIZE, alignUp, assertMemorySize, initrdPlacement, lowRamEnd, MIN_FREE_RAM, type GuestRange } from '../layout.js';
import { loadElfKernel, openFileSource, parseElfKernel, type ElfKernel } from './elf.js';
import { writeMpTable } from './mptable.js';
import { chooseProtocol, writeBootStructures, type BootCpuState, type BootProtocol } from './params.js';

/**
 * Everything that happens in guest memory before vCPU 0 runs: kernel segments, initrd, MP table,
 * command line and the boot protocol's structures. `ram` is the guest's low RAM (guest-physical 0
 * at index 0, up to the MMIO gap); the result is the register state for vCPU 0.
 */

export interface DirectBootOptions {
  kernel: string;
  initrd?: string;
  /** NUL-terminated command line (KernelCmdline.toBytes()). */
  cmdline: Uint8Array;
  vcpus: number;
  memBytes: number;
  protocol?: BootProtocol;
  /** A persistent-memory range the memory map declares (the caller maps something there). */
  pmem?: GuestRange;
}

export interface DirectBootResult {
  cpu: BootCpuState;
  kernel: ElfKernel;
  initrd: { addr: number; size: number } | undefined;
}

export function directBoot(ram: Uint8Array, opts: DirectBootOptions): DirectBootResult {
  assertMemorySize(opts.memBytes);
  const lowEnd = lowRamEnd(opts.memBytes);
  if (ram.length < lowEnd) throw new VrunError(`guest RAM view of ${ram.length} bytes is smaller than the ${lowEnd} bytes of low memory`);
  const src = openFileSource(opts.kernel);
  let kernel: ElfKernel;
  try {
    kernel = parseElfKernel(src, lowEnd);
    if (!opts.initrd && alignUp(kernel.end, PAGE_SIZE) + MIN_FREE_RAM > lowEnd) {
      throw new VrunError(`guest memory of ${Math.floor(opts.memBytes / 1048576)} MiB is too small for the kernel ${opts.kernel}, which ends at ${kernel.end} bytes`);
    }
    loadElfKernel(kernel, src, ram);
  } finally {
    src.close();
  }
  const initrd = opts.initrd ? loadInitrd(ram, opts.initrd, opts.memBytes, kernel.end) : undefined;
  writeMpTable(ram, opts.vcpus);
  const protocol = chooseProtocol(kernel, opts.protocol);
  const cpu = writeBootStructures(ram, { protocol, kernel, memBytes: opts.memBytes, cmdline: opts.cmdline, ...(initrd ? { initrd } : {}), ...(opts.pmem ? { pmem: opts.pmem } : {}) });
  return { cpu, kernel, initrd };
}

function loadInitrd(ram: Uint8Array, file: string, memBytes: number, kernelEnd: number): { addr: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new VrunError(`initrd ${file} cannot be opened: ${errorMessage(err)}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new VrunError(`initrd ${file} is not a regular file`);
    if (st.size === 0) throw new VrunError(`initrd ${file} is empty`);
    const size = st.size;
    const addr = initrdPlacement(memBytes, kernelEnd, size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, ram, addr + done, Math.min(size - done, 1 << 30), done);
      if (n <= 0) throw new VrunError(`initrd ${file} shrank while it was being loaded`);
      done += n;
    }
    return { addr, size };
  } finally {
    closeSync(fd);
  }
}
