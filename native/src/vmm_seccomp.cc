#include "vmm_seccomp.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "errno_error.h"
#include "seccomp_bpf.h"

// The native VMM's process runs Node (a JIT, a libuv thread pool, V8's platform threads), whose syscalls are too
// many and too version-dependent for an allow-list on every thread; the vCPU threads, whose loop is ours, get an
// allow-list of their own (vcpu_seccomp.cc). This filter is the process-wide floor, Docker's default profile in
// spirit: it refuses what a VMM never does and what a subverted one would use to leave its jail or attack the
// kernel — starting programs or processes, mounts and namespaces, loading kernel code, debugging other processes,
// and the large kernel interfaces (bpf, io_uring, userfaultfd, perf, keyrings) that have carried most local
// kernel exploits. Installed with TSYNC, so the threads Node already started get it too.
namespace vrun {
namespace {

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t kDeny = SECCOMP_RET_ERRNO | EPERM;
// libuv and glibc fall back when these say "not implemented" (clone3 -> clone, io_uring -> the thread pool).
constexpr uint32_t kAbsent = SECCOMP_RET_ERRNO | ENOSYS;
// No VMM ever runs another program or debugs a process: an attempt means it is no longer ours.
constexpr uint32_t kKill = SECCOMP_RET_KILL_PROCESS;

struct Rule {
  long nr;
  uint32_t action;
};

const Rule kRules[] = {
    {SYS_execve, kKill},
    {SYS_execveat, kKill},
    {SYS_fork, kKill},
    {SYS_vfork, kKill},
    {SYS_ptrace, kKill},
    {SYS_process_vm_readv, kDeny},
    {SYS_process_vm_writev, kDeny},
    {SYS_kcmp, kDeny},
    {SYS_clone3, kAbsent},
    {SYS_io_uring_setup, kAbsent},
    {SYS_io_uring_enter, kAbsent},
    {SYS_io_uring_register, kAbsent},
    {SYS_mount, kDeny},
    {SYS_umount2, kDeny},
    {SYS_pivot_root, kDeny},
    {SYS_chroot, kDeny},
    {SYS_unshare, kDeny},
    {SYS_setns, kDeny},
    {SYS_fsopen, kDeny},
    {SYS_fsconfig, kDeny},
    {SYS_fsmount, kDeny},
    {SYS_fspick, kDeny},
    {SYS_open_tree, kDeny},
    {SYS_move_mount, kDeny},
    {SYS_mount_setattr, kDeny},
    {SYS_open_by_handle_at, kDeny},
    {SYS_name_to_handle_at, kDeny},
    {SYS_mknod, kDeny},
    {SYS_mknodat, kDeny},
    {SYS_kexec_load, kDeny},
    {SYS_kexec_file_load, kDeny},
    {SYS_init_module, kDeny},
    {SYS_finit_module, kDeny},
    {SYS_delete_module, kDeny},
    {SYS_bpf, kDeny},
    {SYS_perf_event_open, kDeny},
    {SYS_userfaultfd, kDeny},
    {SYS_keyctl, kDeny},
    {SYS_add_key, kDeny},
    {SYS_request_key, kDeny},
    {SYS_fanotify_init, kDeny},
    {SYS_quotactl, kDeny},
    {SYS_acct, kDeny},
    {SYS_swapon, kDeny},
    {SYS_swapoff, kDeny},
    {SYS_reboot, kDeny},
    {SYS_syslog, kDeny},
    {SYS_settimeofday, kDeny},
    {SYS_clock_settime, kDeny},
    {SYS_clock_adjtime, kDeny},
    {SYS_adjtimex, kDeny},
    {SYS_sethostname, kDeny},
    {SYS_setdomainname, kDeny},
    {SYS_iopl, kDeny},
    {SYS_ioperm, kDeny},
    {SYS_vhangup, kDeny},
    {SYS_uselib, kDeny},
    {SYS_personality, kDeny},
};

using bpf::Jump;
using bpf::Stmt;

std::vector<sock_filter> Program() {
  std::vector<sock_filter> p;
  bpf::StartX8664(&p, kKill);
  for (const Rule& r : kRules) {
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(r.nr), 0, 1));
    p.push_back(Stmt(BPF_RET | BPF_K, r.action));
  }
  // clone: threads (CLONE_THREAD, in the low word of the flags) only; a new process is refused.
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])));
  p.push_back(Jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0));
  p.push_back(Stmt(BPF_RET | BPF_K, kDeny));
  p.push_back(Stmt(BPF_RET | BPF_K, kAllow));
  return p;
}

// seccompConfineVmmProcess(): installs the filter on every thread of the process; throws if it cannot (the
// caller must then not run the guest).
Napi::Value Confine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 0) {
    Napi::TypeError::New(env, "seccompConfineVmmProcess()").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ThrowErrno(env, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
    return env.Undefined();
  }
  std::vector<sock_filter> p = Program();
  sock_fprog prog{static_cast<unsigned short>(p.size()), p.data()};
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (rc < 0) {
    ThrowErrno(env, errno, "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)");
  } else if (rc > 0) {
    Napi::Error::New(env, "seccomp: thread " + std::to_string(rc) + " could not take the filter (it has one of its own that conflicts)")
        .ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

void InitVmmSeccomp(Napi::Env env, Napi::Object exports) { exports.Set("seccompConfineVmmProcess", Napi::Function::New(env, Confine)); }

}  // namespace vrun
