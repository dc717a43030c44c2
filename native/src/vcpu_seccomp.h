#pragma once
#include <napi.h>

#include <string>

namespace vrun {

// Confines the calling thread (only it: no TSYNC) the way a vCPU thread runs: named `name`, every signal
// but `kick_signal` blocked, no new privileges, and a seccomp-BPF allow-list of the syscalls a vCPU thread
// makes (see vcpu_seccomp.cc); any other syscall kills the process. Returns "" once confined, else why it
// could not be (the thread must then not run the guest).
std::string ConfineVcpuThread(const char* name, int kick_signal);

// Registers vcpuSeccompProbe(action), the test hook that confines a fresh thread with ConfineVcpuThread and
// makes it run `action` (test/vmm/vcpu-seccomp.test.ts runs it in a child process: a refused syscall kills).
void InitVcpuSeccompProbe(Napi::Env env, Napi::Object exports);

}  // namespace vrun
