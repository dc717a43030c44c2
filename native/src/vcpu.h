#pragma once
#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vrun {

enum ExitKind : uint32_t { kExitPio = 0, kExitMmio = 1, kExitStopped = 2 };

// Why a vCPU thread ended. The numbers cross to JS as they are (src/vmm/kvm/native.ts decodes them and
// test/vmm/vm-end.test.ts checks both sides agree), so existing values never change meaning.
enum class VcpuStopReason : uint32_t {
  kStopped = 0,   // asked to stop (RequestStop)
  kHalt = 1,      // KVM_EXIT_HLT: only without an in-kernel irqchip
  kShutdown = 2,  // KVM_EXIT_SHUTDOWN: a triple fault, which resets a PC
  kReset = 3,     // KVM_SYSTEM_EVENT_RESET
  kPowerOff = 4,  // KVM_SYSTEM_EVENT_SHUTDOWN (and any other system event)
  kCrash = 5,     // KVM_SYSTEM_EVENT_CRASH
  kError = 6,     // KVM_RUN failed or an exit could not be handled; the detail says which
};
// Every reason, for the table the addon exports.
inline constexpr struct {
  VcpuStopReason reason;
  const char* name;
} kVcpuStopReasons[] = {
    {VcpuStopReason::kStopped, "stopped"}, {VcpuStopReason::kHalt, "hlt"},          {VcpuStopReason::kShutdown, "shutdown"},
    {VcpuStopReason::kReset, "reset"},     {VcpuStopReason::kPowerOff, "poweroff"}, {VcpuStopReason::kCrash, "crash"},
    {VcpuStopReason::kError, "error"},
};

// One guest access that needs the device models in JS. For writes `data` holds the bytes the guest
// wrote (little-endian); for reads JS answers with the value through Answer().
struct ExitRequest {
  uint32_t kind = 0;
  uint64_t addr = 0;
  uint32_t size = 0;
  bool write = false;
  uint64_t data = 0;
};

// A port range answered on the vCPU thread without JS: writes are dropped, reads return `read_value`
// (truncated to the access size). Only for ports with no device model behind them (see
// src/vmm/devices/legacy-ports.ts), where the round trip through JS would buy nothing.
struct FastPio {
  uint16_t base = 0;
  uint32_t size = 0;
  uint32_t read_value = 0;
};
using FastPioTable = std::vector<FastPio>;

// Counters a vCPU keeps about its exits; read from any thread.
struct ExitStats {
  std::atomic<uint64_t> pio{0};
  std::atomic<uint64_t> mmio{0};
  std::atomic<uint64_t> fast{0};
  // Exits answered while the vCPU was still spinning, i.e. without it going to sleep.
  std::atomic<uint64_t> spun{0};
  // Writes handed to JS without waiting (see PostExit).
  std::atomic<uint64_t> posted{0};
  // Nanoseconds the vCPU spent waiting for JS answers.
  std::atomic<uint64_t> wait_ns{0};
  // Whether the thread is inside KVM_RUN now, and how often it entered it: for a hang, whether the guest's
  // interrupts were KVM's to deliver (thread in KVM_RUN) or the thread was held up in this process.
  std::atomic<bool> in_run{false};
  std::atomic<uint64_t> runs{0};
};

class Vcpu;
// Hands an exit to the JS thread; returns false if it could not be queued (the VM is closing). A
// posted exit is a write the vCPU does not wait for: JS runs it later, in order with the vCPU's
// other exits, and calls PostedDone() instead of Answer().
using PostExit = std::function<bool(const std::shared_ptr<Vcpu>&, const ExitRequest&, bool posted)>;
// `detail` is for people (an error's errno, hardware reason, ...); empty unless the reason is kError.
using PostStopped = std::function<void(const std::shared_ptr<Vcpu>&, VcpuStopReason reason, const std::string& detail)>;

// A vCPU and the thread that runs it. The thread loops on KVM_RUN; I/O and MMIO exits are posted to
// the JS thread and the vCPU waits until JS answers (or the VM stops), then resumes the guest.
class Vcpu : public std::enable_shared_from_this<Vcpu> {
 public:
  static std::shared_ptr<Vcpu> Create(int vm_fd, int index, int run_size, std::string* error);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  int index() const { return index_; }
  int fd() const { return fd_; }

  struct Options {
    // Port ranges answered on the vCPU thread; fixed for the life of the thread.
    std::shared_ptr<const FastPioTable> fast_pio;
    // How long a vCPU polls for JS's answer before sleeping on the condition variable (0: at once).
    uint64_t spin_ns = 0;
    // Whether writes are posted (the vCPU goes on without waiting for JS) while few are in flight.
    bool post_writes = false;
  };
  void Start(PostExit post_exit, PostStopped post_stopped, Options options);
  // JS ran a posted write.
  void PostedDone() { posted_inflight_.fetch_sub(1, std::memory_order_relaxed); }
  const ExitStats& stats() const { return stats_; }
  // Called on the JS thread with the value for a read (ignored for writes).
  void Answer(uint64_t value);
  // Makes the thread leave KVM_RUN and end.
  void RequestStop();
  void SetPaused(bool paused);
  bool paused_now() const { return parked_.load(); }
  // Waits for the thread to end; the vCPU can then be closed.
  void Join();
  bool running() const { return thread_.joinable(); }
  // Releases the run page and the fd; only after Join().
  void Close();

 private:
  Vcpu(int index, int fd, kvm_run* run, int run_size) : index_(index), fd_(fd), run_(run), run_size_(run_size) {}
  void Loop();
  bool Dispatch(ExitRequest req, uint64_t* value);
  bool FastPath(uint16_t port, uint32_t size, bool write, uint8_t* data);
  void Kick();
  std::string HandlePio();
  std::string HandleMmio();

  const int index_;
  int fd_;
  kvm_run* run_;
  int run_size_;
  std::thread thread_;
  std::atomic<bool> thread_started_{false};
  pthread_t pthread_{};
  PostExit post_exit_;
  PostStopped post_stopped_;
  Options options_;
  ExitStats stats_;
  std::atomic<uint32_t> posted_inflight_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> pause_{false};
  std::atomic<bool> parked_{false};
  bool waiting_ = false;
  std::atomic<bool> answered_{false};
  uint64_t answer_ = 0;
};

}  // namespace vrun
