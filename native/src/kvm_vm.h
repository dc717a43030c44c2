#pragma once
#include <napi.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eventfd_watch.h"
#include "guest_ram.h"
#include "vcpu.h"

namespace vrun {

class KvmVm;
// What queued messages may look at once the VM object itself is gone.
struct VmShared {
  KvmVm* owner = nullptr;
  bool destroyed = false;
};

struct VcpuMessage {
  std::shared_ptr<VmShared> shared;
  std::shared_ptr<Vcpu> vcpu;
  bool stopped = false;
  VcpuStopReason stop_reason = VcpuStopReason::kStopped;
  std::string stop_detail;
  ExitRequest request;
  // A write the vCPU did not wait for: nobody to answer.
  bool posted = false;
};

void DeliverToJs(Napi::Env env, Napi::Function fn, KvmVm* vm, VcpuMessage* msg);
using ExitTsfn = Napi::TypedThreadSafeFunction<KvmVm, VcpuMessage, DeliverToJs>;

// A KVM virtual machine as a JS object: guest RAM, in-kernel irqchip and PIT, vCPUs and their
// threads, ioeventfds and irqfds. Everything it opens is closed by destroy() (or, as a last resort,
// when the object is collected); the guest RAM mapping stays valid for as long as JS holds the
// ArrayBuffer over it.
class KvmVm : public Napi::ObjectWrap<KvmVm> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit KvmVm(const Napi::CallbackInfo& info);
  ~KvmVm() override;

 private:
  friend void DeliverToJs(Napi::Env env, Napi::Function fn, KvmVm* vm, VcpuMessage* msg);

  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Memfd(const Napi::CallbackInfo& info);
  Napi::Value Discard(const Napi::CallbackInfo& info);
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value GetVcpuState(const Napi::CallbackInfo& info);
  Napi::Value SetVcpuState(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value VcpuThreads(const Napi::CallbackInfo& info);
  Napi::Value TscKhz(const Napi::CallbackInfo& info);
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value IrqfdFd(const Napi::CallbackInfo& info);
  Napi::Value KickEventfd(const Napi::CallbackInfo& info);
  Napi::Value TriggerIrqfd(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value MapReadonly(const Napi::CallbackInfo& info);
  Napi::Value ExitStatsJs(const Napi::CallbackInfo& info);

  bool Setup(Napi::Env env, const Napi::CallbackInfo& info);
  Vcpu* VcpuArg(const Napi::CallbackInfo& info, size_t arg, bool must_be_idle);
  bool Alive(Napi::Env env);
  void Teardown();

  int kvm_fd_ = -1;
  int vm_fd_ = -1;
  int run_size_ = 0;
  bool destroyed_ = false;
  std::shared_ptr<GuestRam> ram_;
  std::shared_ptr<VmShared> shared_;
  Napi::Reference<Napi::ArrayBuffer> memory_;
  std::vector<std::shared_ptr<Vcpu>> vcpus_;
  ExitTsfn tsfn_;
  bool tsfn_live_ = false;
  int running_ = 0;
  std::vector<EventfdWatch*> watches_;
  std::map<int, int> irqfds_;  // id -> eventfd
  std::vector<int> kick_fds_;  // ioeventfds handed to vhost-user backends
  int next_irqfd_ = 1;
  // Read-only file mappings behind KVM_MEM_READONLY slots (address, length), unmapped after the VM is gone.
  std::vector<std::pair<void*, size_t>> rom_maps_;
  // Each vCPU's exit counters as they were when teardown closed it.
  std::vector<std::array<uint64_t, 6>> final_stats_;
};

}  // namespace vrun
