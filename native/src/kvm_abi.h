#pragma once
#include <linux/kvm.h>

#include <cstdint>

namespace vrun {

// Debian 12's uapi headers (linux-libc-dev 6.1) declare the flexible arrays of kvm_cpuid2 and
// kvm_msrs with __DECLARE_FLEX_ARRAY, whose empty struct member takes one byte in C++: there
// sizeof(kvm_cpuid2) is 12 and sizeof(kvm_msrs) 16 instead of 8, so the ioctl numbers derived from
// them (the size is part of the number) are ones the kernel does not know (KVM answers EINVAL), and
// the entries would sit at the wrong offset. These headers have the C layout the kernel uses.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8, "KVM array headers are 8 bytes");
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16, "KVM array entries");

constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
static_assert(kKvmGetSupportedCpuid == 0xc008ae05, "KVM_GET_SUPPORTED_CPUID as the kernel numbers it");
static_assert(kKvmSetCpuid2 == 0x4008ae90, "KVM_SET_CPUID2 as the kernel numbers it");
static_assert(kKvmSetMsrs == 0x4008ae89, "KVM_SET_MSRS as the kernel numbers it");
static_assert(kKvmGetMsrs == 0xc008ae88, "KVM_GET_MSRS as the kernel numbers it");

}  // namespace vrun
