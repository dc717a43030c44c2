import { VrunError } from '../../common/errors.js';

/**
 * Per-vCPU CPUID from what KVM_GET_SUPPORTED_CPUID offers. KVM reports what it *can* virtualize;
 * the guest must also see a consistent topology (its own APIC id, how many CPUs share the package)
 * and must not see features no one emulates for it (nested VMX/SVM, MONITOR/MWAIT, the PMU,
 * thermal and power management). The KVM signature leaves (0x4000_0000..) pass through unchanged
 * so the kernel finds kvmclock and paravirt features.
 *
 * Topology: one thread per core, `vcpuCount` cores in one package, APIC id = vCPU index.
 */

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export type CpuVendor = 'intel' | 'amd' | 'other';

const LEAF1_ECX_MONITOR = 1 << 3;
const LEAF1_ECX_VMX = 1 << 5;
const LEAF1_ECX_TSC_DEADLINE = 1 << 24;
const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_EDX_HTT = 1 << 28;
const EXT1_ECX_SVM = 1 << 2;
const EXT1_ECX_CMP_LEGACY = 1 << 1;
/** Leaf 0xB/0x1F level types in ECX[15:8]. */
const LEVEL_SMT = 1;
const LEVEL_CORE = 2;

export function cpuVendor(entries: readonly CpuidEntry[]): CpuVendor {
  const leaf0 = entries.find((e) => e.function === 0);
  if (!leaf0) return 'other';
  const id = Buffer.alloc(12);
  id.writeUInt32LE(leaf0.ebx >>> 0, 0);
  id.writeUInt32LE(leaf0.edx >>> 0, 4);
  id.writeUInt32LE(leaf0.ecx >>> 0, 8);
  const s = id.toString('latin1');
  if (s === 'GenuineIntel') return 'intel';
  if (s === 'AuthenticAMD' || s === 'HygonGenuine') return 'amd';
  return 'other';
}

/** Bits needed to number `count` items: ceil(log2(count)). */
function bitsFor(count: number): number {
  let bits = 0;
  while (1 << bits < count) bits++;
  return bits;
}

const u32 = (v: number): number => v >>> 0;

/** Returns a new array; the input (KVM's list, shared by every vCPU) is left untouched. */
export function vcpuCpuid(supported: readonly CpuidEntry[], vcpuIndex: number, vcpuCount: number): CpuidEntry[] {
  if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > 255) throw new VrunError(`vCPU count ${vcpuCount} is out of range (1..255)`);
  if (!Number.isInteger(vcpuIndex) || vcpuIndex < 0 || vcpuIndex >= vcpuCount) throw new VrunError(`vCPU index ${vcpuIndex} is out of range for ${vcpuCount} vCPUs`);
  const vendor = cpuVendor(supported);
  const apicId = vcpuIndex;
  const coreBits = bitsFor(vcpuCount);
  const out: CpuidEntry[] = [];
  for (const src of supported) {
    const e = { ...src };
    switch (e.function) {
      case 0x1:
        // EBX: [31:24] initial APIC id, [23:16] logical processors per package, [15:8] CLFLUSH size in qwords.
        e.ebx = u32((apicId << 24) | ((vcpuCount & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff));
        e.ecx = u32((e.ecx | LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE) & ~(LEAF1_ECX_VMX | LEAF1_ECX_MONITOR));
        e.edx = u32(vcpuCount > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT);
        break;
      case 0x4:
        // Intel deterministic cache parameters: EAX[31:26] = cores per package - 1, [25:14] = threads sharing - 1.
        if (vendor === 'intel') {
          const cacheLevel = (e.eax >>> 5) & 0x7;
          const sharing = cacheLevel >= 3 ? vcpuCount - 1 : 0;
          e.eax = u32((e.eax & 0x3fff) | ((vcpuCount - 1) << 26) | (sharing << 14));
        }
        break;
      case 0x5: // MONITOR/MWAIT parameters: hidden with the feature bit.
      case 0x6: // thermal and power management
      case 0xa: // architectural PMU: no vPMU is configured
        e.eax = 0;
        e.ebx = 0;
        e.ecx = 0;
        e.edx = 0;
        break;
      case 0xb:
      case 0x1f:
        topologyLeaf(e, apicId, vcpuCount, coreBits);
        break;
      case 0x8000_0001:
        e.ecx = u32(e.ecx & ~EXT1_ECX_SVM);
        if (vendor === 'amd') e.ecx = u32(vcpuCount > 1 ? e.ecx | EXT1_ECX_CMP_LEGACY : e.ecx & ~EXT1_ECX_CMP_LEGACY);
        break;
      case 0x8000_0008:
        // AMD: ECX[7:0] = cores - 1, [15:12] = APIC id bits for the core number.
        if (vendor === 'amd') e.ecx = u32((e.ecx & ~0xf0ff) | (coreBits << 12) | (vcpuCount - 1));
        break;
      case 0x8000_001e:
        // AMD extended APIC id, compute unit (core) id with one thread each, node 0.
        if (vendor === 'amd') {
          e.eax = u32(apicId);
          e.ebx = apicId & 0xff;
          e.ecx = 0;
        }
        break;
      default:
        break;
    }
    out.push(e);
  }
  return out;
}

/**
 * Extended topology: subleaf 0 is the SMT level (1 thread per core, shift 0), subleaf 1 the core
 * level (all vCPUs, shift = bits for the count), later subleaves are invalid. EDX always carries
 * the x2APIC id.
 */
function topologyLeaf(e: CpuidEntry, apicId: number, vcpuCount: number, coreBits: number): void {
  e.edx = u32(apicId);
  if (e.index === 0) {
    e.eax = 0;
    e.ebx = 1;
    e.ecx = (LEVEL_SMT << 8) | 0;
  } else if (e.index === 1) {
    e.eax = coreBits;
    e.ebx = vcpuCount;
    e.ecx = (LEVEL_CORE << 8) | 1;
  } else {
    e.eax = 0;
    e.ebx = 0;
    e.ecx = e.index & 0xff;
  }
}
