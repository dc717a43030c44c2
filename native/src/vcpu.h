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

namespace vrun {

enum ExitKind : uint32_t { kExitPio = 0, kExitMmio = 1, kExitStopped = 2 };

// One guest access that needs the device models in JS. For writes `data` holds the bytes the guest
// wrote (little-endian); for reads JS answers with the value through Answer().
struct ExitRequest {
  uint32_t kind = 0;
  uint64_t addr = 0;
  uint32_t size = 0;
  bool write = false;
  uint64_t data = 0;
};

class Vcpu;
// Hands an exit to the JS thread; returns false if it could not be queued (the VM is closing).
using PostExit = std::function<bool(const std::shared_ptr<Vcpu>&)>;
using PostStopped = std::function<void(const std::shared_ptr<Vcpu>&, const std::string& reason)>;

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
  const ExitRequest& request() const { return request_; }

  void Start(PostExit post_exit, PostStopped post_stopped);
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

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> pause_{false};
  std::atomic<bool> parked_{false};
  bool waiting_ = false;
  bool answered_ = false;
  uint64_t answer_ = 0;
  ExitRequest request_;
};

}  // namespace vrun
