#pragma once
// Pieces of the classic-BPF seccomp filters the VMM installs (vcpu_seccomp.cc; vmm_seccomp.cc can share them).
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>

#include <cstdint>
#include <vector>

namespace vrun::bpf {

inline sock_filter Stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
inline sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; }

// The filter's first instructions: syscall numbers mean something else on another ABI, so any but x86-64's
// (i386 through int 0x80, x32: same arch value, bit 30 in the number) gets `refuse`; then the number is loaded.
inline void StartX8664(std::vector<sock_filter>* f, uint32_t refuse) {
  f->push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f->push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f->push_back(Stmt(BPF_RET | BPF_K, refuse));
  f->push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  f->push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1));
  f->push_back(Stmt(BPF_RET | BPF_K, refuse));
}

}  // namespace vrun::bpf
