#include "vcpu_seccomp.h"

#include "seccomp_bpf.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

namespace vrun {
namespace {

// What a refused syscall gets. Firecracker's choice: the process dies. A vCPU thread only makes a refused
// syscall if a guest subverted the VMM (or our allow-list missed a path, which the lab boots catch): an
// exploit that got EPERM would get another try with the next syscall, and glibc code whose futex or mmap
// failed would run on in a state nobody tested. A dead process is loud (SIGSYS, an audit line in the
// kernel log) and, with the VMM in its own jailed process, takes down this one VM and nothing else.
// KILL_PROCESS, not KILL_THREAD: a VM with one vCPU silently gone would hang instead of ending.
constexpr uint32_t kRefuse = SECCOMP_RET_KILL_PROCESS;

// Syscalls a vCPU thread makes, with any argument (the ones checked on their arguments come below).
constexpr int kAllowed[] = {
    __NR_futex,          // std::mutex / condition_variable (Dispatch waits for JS), the threadsafe function's queue lock
    __NR_write,          // uv_async_send: the threadsafe function wakes the JS loop through an eventfd
    __NR_clock_gettime,  // steady_clock, when the clocksource has no vDSO path (nested virtualization)
    __NR_rt_sigreturn,   // return from the kick signal's handler
    __NR_rt_sigprocmask, // glibc blocks signals on the way out of a thread
    __NR_madvise,        // glibc drops the thread's stack (MADV_DONTNEED) at exit; malloc trims its heaps
    __NR_munmap,         // malloc/free of exit messages and strings (large blocks, arena heaps)
    __NR_brk,            // malloc falls back to the main arena when every arena is taken
    __NR_exit,           // the thread ends
};

// The low 32 bits of argument `i` (x86-64 is little-endian). The arguments checked here are ints in the
// kernel (ioctl's request, mmap/mprotect's prot): the kernel ignores the high half, so may the filter.
constexpr uint32_t ArgLow(int i) { return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * i); }

std::vector<sock_filter> BuildFilter() {
  using bpf::Jump;
  using bpf::Stmt;
  std::vector<sock_filter> f;
  bpf::StartX8664(&f, kRefuse);
  for (int nr : kAllowed) {
    f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  }
  // ioctl: only KVM_RUN. The vCPU's register ioctls (getVcpuState/setVcpuState) run on the JS thread while
  // the vCPU is idle; a subverted vCPU thread must not reach the VM fd's or /dev/kvm's other requests.
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4));
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(1)));
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, KVM_RUN, 0, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(Stmt(BPF_RET | BPF_K, kRefuse));
  // mmap/mprotect: malloc maps and grows its heaps, but never executable: no new code on this thread.
  for (int nr : {__NR_mmap, __NR_mprotect}) {
    f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 4));
    f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(2)));
    f.push_back(Jump(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 1, 0));
    f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    f.push_back(Stmt(BPF_RET | BPF_K, kRefuse));
  }
  f.push_back(Stmt(BPF_RET | BPF_K, kRefuse));
  return f;
}

std::string Failed(const char* what) { return std::string("cannot confine the vCPU thread: ") + what + ": " + strerror(errno); }

}  // namespace

std::string ConfineVcpuThread(const char* name, int kick_signal) {
  pthread_setname_np(pthread_self(), name);  // best effort: only for people reading /proc
  // Only the kick reaches this thread. Process-directed signals (SIGCHLD, SIGTERM...) go to Node's threads,
  // whose handlers (libuv's read and write a pipe) would make syscalls this filter refuses.
  sigset_t mask;
  sigfillset(&mask);
  sigdelset(&mask, kick_signal);
  if (int e = pthread_sigmask(SIG_SETMASK, &mask, nullptr); e != 0) {
    errno = e;
    return Failed("pthread_sigmask");
  }
  uint32_t action = kRefuse;
  if (syscall(__NR_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) != 0) return Failed("seccomp(SECCOMP_GET_ACTION_AVAIL, KILL_PROCESS)");
  // Required to install a filter without CAP_SYS_ADMIN; it is per thread, and the vCPU thread execs nothing.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Failed("PR_SET_NO_NEW_PRIVS");
  std::vector<sock_filter> filter = BuildFilter();
  sock_fprog prog{static_cast<unsigned short>(filter.size()), filter.data()};
  // No SECCOMP_FILTER_FLAG_TSYNC: the filter is this thread's alone; Node's threads need far more.
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return Failed("seccomp(SECCOMP_SET_MODE_FILTER)");
  return "";
}

namespace {

// A numeric field of /proc/self/task/<tid>/status ("Seccomp:": 0 none, 1 strict, 2 filter), or -1.
int StatusField(pid_t tid, const std::string& field) {
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return atoi(line.c_str() + field.size());
  }
  return -1;
}

std::atomic<int> g_probe_signals{0};
void CountSignal(int) { g_probe_signals.fetch_add(1); }

// The syscalls a vCPU thread makes, made for real under the filter (bar KVM_RUN: no /dev/kvm needed).
void RunAllowed(int efd, std::mutex* mu, std::condition_variable* cv) {
  // futex waits with a timeout, until the signal sent to this thread has run its handler (rt_sigreturn).
  for (int i = 0; i < 10000 && g_probe_signals.load() == 0; i++) {
    std::unique_lock<std::mutex> lock(*mu);
    cv->wait_for(lock, std::chrono::milliseconds(1));
  }
  uint64_t one = 1;
  if (write(efd, &one, sizeof one) != sizeof one) abort();
  timespec ts;
  if (syscall(__NR_clock_gettime, CLOCK_MONOTONIC, &ts) != 0) abort();
  std::vector<char> big(64 << 20, 1);  // mmap + munmap through malloc
  void* p = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || madvise(p, 1 << 20, MADV_DONTNEED) != 0 || munmap(p, 1 << 20) != 0) abort();
}

// Each of these must be refused; with kRefuse the process does not see them return.
long RunRefused(const std::string& action) {
  if (action == "socket") return socket(AF_UNIX, SOCK_STREAM, 0);
  if (action == "mmap-exec") return reinterpret_cast<long>(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (action == "ioctl") return ioctl(0, FIONREAD, nullptr);
  if (action == "open") return open("/proc/self/status", O_RDONLY);
  return 0;
}

// vcpuSeccompProbe(action): 'allowed' runs RunAllowed on a confined fresh thread (the calling thread sends it
// a signal first) and returns { seccomp, filters, mainSeccomp, mainFilters, signals, eventfd } (the status
// fields of the probe thread and the calling one); 'socket' | 'mmap-exec' | 'ioctl' | 'open' make that refused
// syscall there (and return, with `result`, only if it was not refused).
Napi::Value VcpuSeccompProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "vcpuSeccompProbe(action: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string action = info[0].As<Napi::String>().Utf8Value();
  if (action != "allowed" && action != "socket" && action != "mmap-exec" && action != "ioctl" && action != "open") {
    Napi::TypeError::New(env, "vcpuSeccompProbe: unknown action " + action).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int sig = SIGRTMIN + 4;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = CountSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
  g_probe_signals.store(0);
  const int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::mutex mu;
  std::condition_variable cv;
  pid_t tid = 0;
  bool confined = false, go = false;
  std::string error;
  long result = 0;
  std::thread t([&] {
    const pid_t self = static_cast<pid_t>(syscall(__NR_gettid));
    std::string err = ConfineVcpuThread("vcpu probe", sig);
    {
      std::unique_lock<std::mutex> lock(mu);
      tid = self;
      error = err;
      confined = true;
      cv.notify_all();
      cv.wait(lock, [&] { return go; });
    }
    if (!err.empty()) return;
    if (action == "allowed") RunAllowed(efd, &mu, &cv);
    else result = RunRefused(action);
  });
  int mode = -1, filters = -1;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return confined; });
    mode = StatusField(tid, "Seccomp:");
    filters = StatusField(tid, "Seccomp_filters:");
    go = true;
    cv.notify_all();
  }
  if (action == "allowed") pthread_kill(t.native_handle(), sig);
  t.join();
  uint64_t count = 0;
  if (read(efd, &count, sizeof count) != sizeof count) count = 0;
  close(efd);
  if (!error.empty()) {
    Napi::Error::New(env, error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("seccomp", mode);
  const pid_t self = static_cast<pid_t>(syscall(__NR_gettid));
  out.Set("filters", filters);
  out.Set("mainSeccomp", StatusField(self, "Seccomp:"));
  out.Set("mainFilters", StatusField(self, "Seccomp_filters:"));
  out.Set("signals", g_probe_signals.load());
  out.Set("eventfd", static_cast<double>(count));
  out.Set("result", static_cast<double>(result));
  return out;
}

}  // namespace

void InitVcpuSeccompProbe(Napi::Env env, Napi::Object exports) { exports.Set("vcpuSeccompProbe", Napi::Function::New(env, VcpuSeccompProbe)); }

}  // namespace vrun
