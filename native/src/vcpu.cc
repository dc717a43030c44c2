#include "vcpu.h"

#include "vcpu_seccomp.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>

namespace vrun {
namespace {

// The signal that knocks a vCPU thread out of KVM_RUN. A real-time signal nobody else in Node uses;
// its handler does nothing, the point is the EINTR.
int KickSignal() { return SIGRTMIN + 3; }

// Posted writes a vCPU may have queued for JS before it waits (see Dispatch).
constexpr uint32_t kMaxPostedWrites = 256;

void NoopHandler(int) {}

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = NoopHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

// strerrordesc_np, not strerror: no locale's message catalog to open, which the vCPU thread's filter refuses.
std::string Errno(const char* what) {
  const char* desc = strerrordesc_np(errno);
  return std::string(what) + ": " + (desc != nullptr ? desc : "errno " + std::to_string(errno));
}

}  // namespace

std::shared_ptr<Vcpu> Vcpu::Create(int vm_fd, int index, int run_size, std::string* error) {
  int fd = ioctl(vm_fd, KVM_CREATE_VCPU, index);
  if (fd < 0) {
    *error = "KVM_CREATE_VCPU " + std::to_string(index) + " failed: " + strerror(errno);
    return nullptr;
  }
  void* run = mmap(nullptr, static_cast<size_t>(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) {
    *error = Errno("cannot map the vCPU run structure");
    close(fd);
    return nullptr;
  }
  InstallKickHandler();
  return std::shared_ptr<Vcpu>(new Vcpu(index, fd, static_cast<kvm_run*>(run), run_size));
}

Vcpu::~Vcpu() {
  RequestStop();
  Join();
  Close();
}

void Vcpu::Close() {
  if (thread_.joinable()) return;
  if (run_ != nullptr) munmap(run_, static_cast<size_t>(run_size_));
  run_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Vcpu::Start(PostExit post_exit, PostStopped post_stopped, Options options) {
  if (run_ == nullptr || thread_.joinable()) return;
  post_exit_ = std::move(post_exit);
  post_stopped_ = std::move(post_stopped);
  options_ = std::move(options);
  thread_ = std::thread([this] { Loop(); });
}

void Vcpu::Answer(uint64_t value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!waiting_) return;
  answer_ = value;
  answered_.store(true, std::memory_order_release);
  cv_.notify_all();
}

void Vcpu::Kick() {
  if (run_ == nullptr) return;
  run_->immediate_exit = 1;
  if (thread_started_.load()) pthread_kill(pthread_, KickSignal());
}

void Vcpu::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    cv_.notify_all();
  }
  if (thread_.joinable()) Kick();
}

void Vcpu::SetPaused(bool paused) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pause_.store(paused);
    cv_.notify_all();
  }
  if (paused && thread_.joinable()) Kick();
}

void Vcpu::Join() {
  if (thread_.joinable()) thread_.join();
}

bool Vcpu::Dispatch(ExitRequest req, uint64_t* value) {
  if (stop_.load()) return false;
  // A write needs no answer, and JS runs the exits of this vCPU in the order they were queued, so a
  // later read still sees the write's effect. The bound keeps a guest that only writes from queueing
  // without limit: past it a write waits for its answer like a read (and so for all queued before it).
  if (req.write && options_.post_writes && posted_inflight_.load(std::memory_order_relaxed) < kMaxPostedWrites) {
    posted_inflight_.fetch_add(1, std::memory_order_relaxed);
    if (!post_exit_(shared_from_this(), req, true)) {
      posted_inflight_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    stats_.posted.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return false;
    answered_.store(false);
    waiting_ = true;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (!post_exit_(shared_from_this(), req, false)) {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_ = false;
    return false;
  }
  // Polling a little before sleeping saves the wake-up on the way back when JS answers quickly:
  // under nested virtualization each sleep/wake pair costs more than a short device model call.
  bool spun = false;
  if (options_.spin_ns > 0) {
    const auto deadline = t0 + std::chrono::nanoseconds(options_.spin_ns);
    for (uint32_t i = 1;; i++) {
      if (answered_.load(std::memory_order_acquire)) {
        spun = true;
        break;
      }
      if (stop_.load(std::memory_order_relaxed)) break;
      if ((i & 31) == 0 && std::chrono::steady_clock::now() >= deadline) break;
      __builtin_ia32_pause();
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!spun) cv_.wait(lock, [this] { return answered_.load() || stop_.load(); });
  waiting_ = false;
  const uint64_t waited = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  stats_.wait_ns.fetch_add(waited, std::memory_order_relaxed);
  if (!answered_.load()) return false;
  if (spun) stats_.spun.fetch_add(1, std::memory_order_relaxed);
  *value = answer_;
  return true;
}

bool Vcpu::FastPath(uint16_t port, uint32_t size, bool write, uint8_t* data) {
  if (!options_.fast_pio) return false;
  for (const FastPio& f : *options_.fast_pio) {
    if (port < f.base || static_cast<uint32_t>(port) + size > static_cast<uint32_t>(f.base) + f.size) continue;
    if (!write) memcpy(data, &f.read_value, size);  // little-endian: the low `size` bytes
    stats_.fast.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

std::string Vcpu::HandlePio() {
  auto& io = run_->io;
  // KVM only produces 1, 2 or 4 byte accesses; string I/O comes as `count` of them in a row.
  if (io.size != 1 && io.size != 2 && io.size != 4) return "port I/O exit with size " + std::to_string(io.size);
  uint8_t* base = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
  if (io.data_offset + static_cast<uint64_t>(io.size) * io.count > static_cast<uint64_t>(run_size_)) return "port I/O data outside the run page";
  for (uint32_t i = 0; i < io.count; i++) {
    uint8_t* p = base + static_cast<size_t>(i) * io.size;
    if (FastPath(io.port, io.size, io.direction == KVM_EXIT_IO_OUT, p)) continue;
    stats_.pio.fetch_add(1, std::memory_order_relaxed);
    ExitRequest req;
    req.kind = kExitPio;
    req.addr = io.port;
    req.size = io.size;
    req.write = io.direction == KVM_EXIT_IO_OUT;
    if (req.write) memcpy(&req.data, p, io.size);
    uint64_t value = 0;
    if (!Dispatch(req, &value)) return "";
    if (!req.write) memcpy(p, &value, io.size);
  }
  return "";
}

std::string Vcpu::HandleMmio() {
  auto& m = run_->mmio;
  if (m.len == 0 || m.len > 8) return "MMIO exit with length " + std::to_string(m.len);
  stats_.mmio.fetch_add(1, std::memory_order_relaxed);
  ExitRequest req;
  req.kind = kExitMmio;
  req.addr = m.phys_addr;
  req.size = m.len;
  req.write = m.is_write != 0;
  if (req.write) memcpy(&req.data, m.data, m.len);
  uint64_t value = 0;
  if (!Dispatch(req, &value)) return "";
  if (!req.write) memcpy(m.data, &value, m.len);
  return "";
}

void Vcpu::Loop() {
  pthread_ = pthread_self();
  // Before the first KVM_RUN: from here on this thread may only make the syscalls vcpu_seccomp.cc allows.
  // A thread that could not be confined does not run the guest; the VM ends with the reason.
  std::string detail = ConfineVcpuThread(("vcpu " + std::to_string(index_)).c_str(), KickSignal());
  const bool confined = detail.empty();
  thread_started_.store(true);

  VcpuStopReason reason = confined ? VcpuStopReason::kStopped : VcpuStopReason::kError;
  while (confined && !stop_.load()) {
    if (pause_.load()) {
      std::unique_lock<std::mutex> lock(mu_);
      parked_.store(true);
      cv_.wait(lock, [this] { return !pause_.load() || stop_.load(); });
      parked_.store(false);
      continue;
    }
    stats_.runs.fetch_add(1, std::memory_order_relaxed);
    stats_.in_run.store(true, std::memory_order_relaxed);
    int r = ioctl(fd_, KVM_RUN, 0);
    stats_.in_run.store(false, std::memory_order_relaxed);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        run_->immediate_exit = 0;
        continue;
      }
      reason = VcpuStopReason::kError;
      detail = Errno("KVM_RUN failed");
      break;
    }
    std::string err;
    switch (run_->exit_reason) {
      case KVM_EXIT_IO:
        err = HandlePio();
        break;
      case KVM_EXIT_MMIO:
        err = HandleMmio();
        break;
      case KVM_EXIT_INTR:
        continue;
      case KVM_EXIT_HLT:
        reason = VcpuStopReason::kHalt;
        break;
      case KVM_EXIT_SHUTDOWN:
        // A triple fault; on a PC that resets the machine.
        reason = VcpuStopReason::kShutdown;
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        reason = run_->system_event.type == KVM_SYSTEM_EVENT_RESET   ? VcpuStopReason::kReset
                 : run_->system_event.type == KVM_SYSTEM_EVENT_CRASH ? VcpuStopReason::kCrash
                                                                     : VcpuStopReason::kPowerOff;
        break;
      case KVM_EXIT_FAIL_ENTRY:
        reason = VcpuStopReason::kError;
        detail = "entry failed, hardware reason " + std::to_string(run_->fail_entry.hardware_entry_failure_reason);
        break;
      case KVM_EXIT_INTERNAL_ERROR:
        reason = VcpuStopReason::kError;
        detail = "KVM internal error, suberror " + std::to_string(run_->internal.suberror);
        break;
      default:
        reason = VcpuStopReason::kError;
        detail = "unhandled exit reason " + std::to_string(run_->exit_reason);
        break;
    }
    if (!err.empty()) {
      reason = VcpuStopReason::kError;
      detail = err;
      break;
    }
    if (run_->exit_reason != KVM_EXIT_IO && run_->exit_reason != KVM_EXIT_MMIO) break;
  }
  thread_started_.store(false);
  if (post_stopped_) post_stopped_(shared_from_this(), reason, detail);
}

}  // namespace vrun
