#include "kvm_vm.h"

#include "guest_ram_napi.h"
#include "kvm_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstring>

namespace vrun {
namespace {

// Where the VMX TSS and identity map go: three pages just below the BIOS area, inside the MMIO gap
// so they never collide with guest RAM (the same place Firecracker and QEMU use).
constexpr uint64_t kTssAddr = 0xfffbd000;
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;
constexpr uint32_t kMaxVcpus = 64;
constexpr uint32_t kMaxCpuidEntries = 256;
constexpr uint32_t kMaxMsrs = 256;

struct StateKind {
  const char* name;
  unsigned long get;
  unsigned long set;
  size_t size;
};

const StateKind kStates[] = {
    {"regs", KVM_GET_REGS, KVM_SET_REGS, sizeof(kvm_regs)},
    {"sregs", KVM_GET_SREGS, KVM_SET_SREGS, sizeof(kvm_sregs)},
    {"fpu", KVM_GET_FPU, KVM_SET_FPU, sizeof(kvm_fpu)},
    {"lapic", KVM_GET_LAPIC, KVM_SET_LAPIC, sizeof(kvm_lapic_state)},
    {"mpstate", KVM_GET_MP_STATE, KVM_SET_MP_STATE, sizeof(kvm_mp_state)},
};

const StateKind* FindState(const std::string& name) {
  for (const auto& k : kStates)
    if (name == k.name) return &k;
  return nullptr;
}

Napi::Value Fail(Napi::Env env, const std::string& message) {
  Napi::Error::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool SafeInteger(const Napi::Value& v, double max, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > max || std::floor(d) != d) return false;
  *out = d;
  return true;
}

constexpr uint32_t kMaxFastPio = 64;
// Upper bound for the answer spin: beyond this, sleeping is cheaper than burning the CPU.
constexpr double kMaxSpinNs = 1e6;

// [[base, size, readValue], ...] -> the table, or false with `error` set.
bool ParseFastPio(const Napi::Value& v, FastPioTable* out, std::string* error) {
  if (v.IsUndefined()) return true;
  if (!v.IsArray() || v.As<Napi::Array>().Length() > kMaxFastPio) {
    *error = "fast port table must be an array of at most " + std::to_string(kMaxFastPio) + " [base, size, readValue] entries";
    return false;
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    double base = 0, size = 0, value = 0;
    bool ok = e.IsArray() && e.As<Napi::Array>().Length() == 3;
    if (ok) {
      Napi::Array t = e.As<Napi::Array>();
      ok = SafeInteger(t.Get(0u), 0xffff, &base) && SafeInteger(t.Get(1u), 0x10000, &size) && size > 0 && base + size <= 0x10000 &&
           SafeInteger(t.Get(2u), 4294967295.0, &value);
    }
    if (!ok) {
      *error = "fast port entry " + std::to_string(i) + " is not [base, size, readValue] inside the 64 KiB port space";
      return false;
    }
    out->push_back(FastPio{static_cast<uint16_t>(base), static_cast<uint32_t>(size), static_cast<uint32_t>(value)});
  }
  return true;
}

}  // namespace

void DeliverToJs(Napi::Env env, Napi::Function fn, KvmVm* /*unused*/, VcpuMessage* msg) {
  std::unique_ptr<VcpuMessage> owned(msg);
  if (env == nullptr || msg->shared->destroyed) return;
  KvmVm* vm = msg->shared->owner;
  Vcpu& v = *msg->vcpu;
  if (msg->stopped) {
    if (--vm->running_ == 0 && vm->tsfn_live_) vm->tsfn_.Unref(env);
    fn.Call({Napi::Number::New(env, v.index()), Napi::Number::New(env, kExitStopped), Napi::Number::New(env, static_cast<uint32_t>(msg->stop_reason)),
             Napi::String::New(env, msg->stop_detail)});
    return;
  }
  const ExitRequest& r = msg->request;
  Napi::Value data = r.size == 8 ? static_cast<Napi::Value>(Napi::BigInt::New(env, r.data))
                                 : static_cast<Napi::Value>(Napi::Number::New(env, static_cast<double>(r.data)));
  Napi::Value result = fn.Call({Napi::Number::New(env, v.index()), Napi::Number::New(env, r.kind),
                                Napi::Number::New(env, static_cast<double>(r.addr)), Napi::Number::New(env, r.size),
                                Napi::Boolean::New(env, r.write), data});
  uint64_t answer = 0;
  if (!result.IsEmpty()) {
    if (result.IsBigInt()) {
      bool lossless = false;
      answer = result.As<Napi::BigInt>().Uint64Value(&lossless);
    } else if (result.IsNumber()) {
      double d = result.As<Napi::Number>().DoubleValue();
      if (std::isfinite(d) && d >= 0 && d < 18446744073709551616.0) answer = static_cast<uint64_t>(d);
    }
  }
  if (msg->posted) {
    v.PostedDone();
    return;
  }
  // Even when the handler threw, the vCPU must not hang: it reads zeros.
  v.Answer(answer);
}

void KvmVm::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "KvmVm",
                                   {
                                       InstanceMethod("memory", &KvmVm::Memory),
                                       InstanceMethod("memfd", &KvmVm::Memfd),
                                       InstanceMethod("discard", &KvmVm::Discard),
                                       InstanceMethod("createVcpu", &KvmVm::CreateVcpu),
                                       InstanceMethod("getVcpuState", &KvmVm::GetVcpuState),
                                       InstanceMethod("setVcpuState", &KvmVm::SetVcpuState),
                                       InstanceMethod("getMsrs", &KvmVm::GetMsrs),
                                       InstanceMethod("vcpuThreads", &KvmVm::VcpuThreads),
                                       InstanceMethod("tscKhz", &KvmVm::TscKhz),
                                       InstanceMethod("supportedCpuid", &KvmVm::SupportedCpuid),
                                       InstanceMethod("start", &KvmVm::Start),
                                       InstanceMethod("pause", &KvmVm::Pause),
                                       InstanceMethod("resume", &KvmVm::Resume),
                                       InstanceMethod("stop", &KvmVm::Stop),
                                       InstanceMethod("ioeventfd", &KvmVm::Ioeventfd),
                                       InstanceMethod("irqfd", &KvmVm::Irqfd),
                                       InstanceMethod("triggerIrqfd", &KvmVm::TriggerIrqfd),
                                       InstanceMethod("irqfdFd", &KvmVm::IrqfdFd),
                                       InstanceMethod("kickEventfd", &KvmVm::KickEventfd),
                                       InstanceMethod("irqLine", &KvmVm::IrqLine),
                                       InstanceMethod("destroy", &KvmVm::Destroy),
                                       InstanceMethod("mapReadonly", &KvmVm::MapReadonly),
                                       InstanceMethod("exitStats", &KvmVm::ExitStatsJs),
                                   });
  exports.Set("KvmVm", cls);
  Napi::Object reasons = Napi::Object::New(env);
  for (const auto& r : kVcpuStopReasons) reasons.Set(r.name, Napi::Number::New(env, static_cast<uint32_t>(r.reason)));
  exports.Set("vcpuStopReasons", reasons);
}

// new KvmVm(path, memBytes, regions: [guestAddr, size, fileOffset][])
KvmVm::KvmVm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmVm>(info) {
  shared_ = std::make_shared<VmShared>();
  shared_->owner = this;
  if (!Setup(info.Env(), info)) Teardown();
}

bool KvmVm::Setup(Napi::Env env, const Napi::CallbackInfo& info) {
  double mem = 0;
  if (info.Length() < 3 || !info[0].IsString() || !SafeInteger(info[1], 1ull << 46, &mem) || mem == 0 || !info[2].IsArray()) {
    Fail(env, "new KvmVm(devicePath: string, memBytes: number, regions: [guestAddr, size, fileOffset][])");
    return false;
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  kvm_fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (kvm_fd_ < 0) {
    Fail(env, "cannot open " + path + ": " + strerror(errno));
    return false;
  }
  vm_fd_ = ioctl(kvm_fd_, KVM_CREATE_VM, 0);
  if (vm_fd_ < 0) {
    Fail(env, std::string("KVM_CREATE_VM failed: ") + strerror(errno));
    return false;
  }
  run_size_ = ioctl(kvm_fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size_ <= 0) {
    Fail(env, std::string("KVM_GET_VCPU_MMAP_SIZE failed: ") + strerror(errno));
    return false;
  }
  // Intel needs the TSS/identity-map pages; AMD ignores them. Both ioctls succeed on either.
  if (ioctl(vm_fd_, KVM_SET_TSS_ADDR, kTssAddr) < 0) {
    Fail(env, std::string("KVM_SET_TSS_ADDR failed: ") + strerror(errno));
    return false;
  }
  uint64_t identity = kIdentityMapAddr;
  ioctl(vm_fd_, KVM_SET_IDENTITY_MAP_ADDR, &identity);
  if (ioctl(vm_fd_, KVM_CREATE_IRQCHIP, 0) < 0) {
    Fail(env, std::string("KVM_CREATE_IRQCHIP failed: ") + strerror(errno));
    return false;
  }
  kvm_pit_config pit;
  memset(&pit, 0, sizeof pit);
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (ioctl(vm_fd_, KVM_CREATE_PIT2, &pit) < 0) {
    Fail(env, std::string("KVM_CREATE_PIT2 failed: ") + strerror(errno));
    return false;
  }

  std::string error;
  ram_ = GuestRam::Create(static_cast<size_t>(mem), &error);
  if (!ram_) {
    Fail(env, error);
    return false;
  }
  Napi::Array regions = info[2].As<Napi::Array>();
  if (regions.Length() == 0 || regions.Length() > 8) {
    Fail(env, "between 1 and 8 guest RAM regions are needed");
    return false;
  }
  for (uint32_t i = 0; i < regions.Length(); i++) {
    Napi::Value rv = regions.Get(i);
    double ga = 0, sz = 0, off = 0;
    bool ok = rv.IsArray();
    if (ok) {
      Napi::Array r = rv.As<Napi::Array>();
      ok = r.Length() == 3 && SafeInteger(r.Get(0u), 1ull << 52, &ga) && SafeInteger(r.Get(1u), mem, &sz) &&
           SafeInteger(r.Get(2u), mem, &off);
    }
    if (!ok || sz == 0 || off + sz > mem || std::fmod(ga, 4096) != 0 || std::fmod(sz, 4096) != 0 || std::fmod(off, 4096) != 0) {
      Fail(env, "guest RAM region " + std::to_string(i) + " is not page-aligned [guestAddr, size, fileOffset] inside the RAM file");
      return false;
    }
    kvm_userspace_memory_region region;
    memset(&region, 0, sizeof region);
    region.slot = i;
    region.guest_phys_addr = static_cast<uint64_t>(ga);
    region.memory_size = static_cast<uint64_t>(sz);
    region.userspace_addr = reinterpret_cast<uint64_t>(ram_->data() + static_cast<size_t>(off));
    if (ioctl(vm_fd_, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
      Fail(env, "KVM_SET_USER_MEMORY_REGION for region " + std::to_string(i) + " failed: " + strerror(errno));
      return false;
    }
  }
  // JS sees guest RAM through one external ArrayBuffer; it keeps the mapping alive on its own.
  auto* hold = new std::shared_ptr<GuestRam>(ram_);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, ram_->data(), ram_->size(), [](Napi::Env, void*, std::shared_ptr<GuestRam>* h) { delete h; }, hold);
  memory_ = Napi::Persistent(ab);
  return true;
}

KvmVm::~KvmVm() { Teardown(); }

bool KvmVm::Alive(Napi::Env env) {
  if (destroyed_ || vm_fd_ < 0) {
    Fail(env, "the VM was destroyed");
    return false;
  }
  return true;
}

void KvmVm::Teardown() {
  if (destroyed_) return;
  destroyed_ = true;
  for (auto& v : vcpus_) v->RequestStop();
  for (auto& v : vcpus_) v->Join();
  for (auto& v : vcpus_) v->Close();
  for (auto& v : vcpus_) {
    const ExitStats& st = v->stats();
    final_stats_.push_back({st.pio.load(), st.mmio.load(), st.fast.load(), st.spun.load(), st.wait_ns.load(), st.posted.load()});
  }
  shared_->destroyed = true;
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
  for (EventfdWatch* w : watches_) w->Close();
  watches_.clear();
  for (auto& [id, fd] : irqfds_) close(fd);
  irqfds_.clear();
  for (int fd : kick_fds_) close(fd);
  kick_fds_.clear();
  vcpus_.clear();
  if (vm_fd_ >= 0) close(vm_fd_);
  if (kvm_fd_ >= 0) close(kvm_fd_);
  vm_fd_ = kvm_fd_ = -1;
  for (auto& [addr, len] : rom_maps_) munmap(addr, len);
  rom_maps_.clear();
  if (ram_) ram_->CloseMemfd();
  ram_.reset();
  if (!memory_.IsEmpty()) memory_.Reset();
}

// Guest RAM takes slots 0..7 (Setup); read-only mappings take the ones after.
constexpr uint32_t kFirstRomSlot = 8;
constexpr size_t kMaxRomSlots = 4;

// mapReadonly(fd, guestAddr, size): maps `size` bytes of file `fd` from offset 0, PROT_READ and shared, at
// guest-physical `guestAddr` as a KVM_MEM_READONLY slot. Guest reads come from the host's page cache of the
// file; guest writes never reach it (KVM exits with KVM_EXIT_MMIO instead). The fd may be closed afterwards.
Napi::Value KvmVm::MapReadonly(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double fd = 0, ga = 0, sz = 0;
  if (info.Length() < 3 || !SafeInteger(info[0], 2147483647.0, &fd) || !SafeInteger(info[1], 1ull << 52, &ga) ||
      !SafeInteger(info[2], 1ull << 40, &sz) || sz == 0 || std::fmod(ga, 4096) != 0 || std::fmod(sz, 4096) != 0) {
    Fail(env, "mapReadonly(fd: number, guestAddr: number, size: number): page-aligned address and a non-zero page-multiple size");
    return env.Undefined();
  }
  if (rom_maps_.size() >= kMaxRomSlots) {
    Fail(env, "mapReadonly: at most " + std::to_string(kMaxRomSlots) + " read-only mappings per VM");
    return env.Undefined();
  }
  if (ioctl(kvm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
    Fail(env, "this host's KVM has no read-only memory slots (KVM_CAP_READONLY_MEM)");
    return env.Undefined();
  }
  size_t len = static_cast<size_t>(sz);
  void* addr = mmap(nullptr, len, PROT_READ, MAP_SHARED, static_cast<int>(fd), 0);
  if (addr == MAP_FAILED) {
    Fail(env, std::string("mapReadonly: mmap failed: ") + strerror(errno));
    return env.Undefined();
  }
  kvm_userspace_memory_region region;
  memset(&region, 0, sizeof region);
  region.slot = kFirstRomSlot + static_cast<uint32_t>(rom_maps_.size());
  region.flags = KVM_MEM_READONLY;
  region.guest_phys_addr = static_cast<uint64_t>(ga);
  region.memory_size = len;
  region.userspace_addr = reinterpret_cast<uint64_t>(addr);
  if (ioctl(vm_fd_, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    int err = errno;
    munmap(addr, len);
    Fail(env, std::string("mapReadonly: KVM_SET_USER_MEMORY_REGION failed: ") + strerror(err));
    return env.Undefined();
  }
  rom_maps_.emplace_back(addr, len);
  return env.Undefined();
}

Napi::Value KvmVm::Memory(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  return memory_.Value();
}

Napi::Value KvmVm::Memfd(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), ram_->memfd());
}

Napi::Value KvmVm::Discard(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  return DiscardGuestRam(info, ram_);
}

Napi::Value KvmVm::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  if (tsfn_live_) return Fail(env, "vCPUs must be created before start()");
  double index = 0;
  if (info.Length() < 1 || !SafeInteger(info[0], kMaxVcpus - 1, &index) || index != vcpus_.size()) {
    return Fail(env, "createVcpu(index): indices go 0, 1, 2... up to " + std::to_string(kMaxVcpus - 1));
  }
  int max = ioctl(kvm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = ioctl(kvm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
  if (max > 0 && index >= max) return Fail(env, "this host's KVM allows at most " + std::to_string(max) + " vCPUs per VM");
  std::string error;
  auto v = Vcpu::Create(vm_fd_, static_cast<int>(index), run_size_, &error);
  if (!v) return Fail(env, error);
  vcpus_.push_back(v);
  return env.Undefined();
}

Vcpu* KvmVm::VcpuArg(const Napi::CallbackInfo& info, size_t arg, bool must_be_idle) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return nullptr;
  double index = 0;
  if (info.Length() <= arg || !SafeInteger(info[arg], 1e9, &index) || index >= vcpus_.size()) {
    Fail(env, "no such vCPU");
    return nullptr;
  }
  Vcpu* v = vcpus_[static_cast<size_t>(index)].get();
  if (must_be_idle && v->running() && !v->paused_now()) {
    Fail(env, "vCPU " + std::to_string(v->index()) + " is running: pause it first");
    return nullptr;
  }
  return v;
}

// getVcpuState(index, kind) -> Buffer holding the raw KVM struct.
Napi::Value KvmVm::GetVcpuState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = VcpuArg(info, 0, true);
  if (!v) return env.Undefined();
  const StateKind* k = info.Length() > 1 && info[1].IsString() ? FindState(info[1].As<Napi::String>().Utf8Value()) : nullptr;
  if (!k) return Fail(env, "getVcpuState(index, 'regs' | 'sregs' | 'fpu' | 'lapic' | 'mpstate')");
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, k->size);
  memset(buf.Data(), 0, k->size);
  if (ioctl(v->fd(), k->get, buf.Data()) < 0) return Fail(env, std::string("get ") + k->name + " failed: " + strerror(errno));
  return buf;
}

// getMsrs(index, buffer) -> Buffer: `buffer` holds 16-byte kvm_msr_entry records with the indices to read; the
// answer is a copy with their values filled in. An MSR KVM does not know fails the call, naming how many it read.
Napi::Value KvmVm::GetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = VcpuArg(info, 0, true);
  if (!v) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBuffer()) return Fail(env, "getMsrs(index, buffer)");
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  const size_t n = buf.Length() / sizeof(kvm_msr_entry);
  if (n == 0 || buf.Length() % sizeof(kvm_msr_entry) != 0 || n > kMaxMsrs) return Fail(env, "msrs buffer has a bad length");
  std::vector<uint8_t> raw(sizeof(MsrsHeader) + buf.Length(), 0);
  reinterpret_cast<MsrsHeader*>(raw.data())->nmsrs = static_cast<uint32_t>(n);
  memcpy(raw.data() + sizeof(MsrsHeader), buf.Data(), buf.Length());
  int r = ioctl(v->fd(), kKvmGetMsrs, raw.data());
  if (r < 0 || static_cast<size_t>(r) != n) {
    return Fail(env, std::string("get msrs failed: ") + (r < 0 ? strerror(errno) : "only " + std::to_string(r) + " of " + std::to_string(n) + " read"));
  }
  return Napi::Buffer<uint8_t>::Copy(env, raw.data() + sizeof(MsrsHeader), buf.Length());
}

// setVcpuState(index, kind, buffer): kinds as above, plus 'msrs' (16-byte entries: index, 0, u64
// data) and 'cpuid' (40-byte kvm_cpuid_entry2 records).
Napi::Value KvmVm::SetVcpuState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = VcpuArg(info, 0, true);
  if (!v) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsString() || !info[2].IsBuffer()) return Fail(env, "setVcpuState(index, kind, buffer)");
  std::string kind = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> buf = info[2].As<Napi::Buffer<uint8_t>>();
  if (kind == "msrs" || kind == "cpuid") {
    const bool msrs = kind == "msrs";
    const size_t entry = msrs ? sizeof(kvm_msr_entry) : sizeof(kvm_cpuid_entry2);
    const size_t header = msrs ? sizeof(MsrsHeader) : sizeof(CpuidHeader);
    const size_t n = buf.Length() / entry;
    if (buf.Length() % entry != 0 || n > (msrs ? kMaxMsrs : kMaxCpuidEntries)) return Fail(env, kind + " buffer has a bad length");
    std::vector<uint8_t> raw(header + buf.Length(), 0);
    if (msrs)
      reinterpret_cast<MsrsHeader*>(raw.data())->nmsrs = static_cast<uint32_t>(n);
    else
      reinterpret_cast<CpuidHeader*>(raw.data())->nent = static_cast<uint32_t>(n);
    memcpy(raw.data() + header, buf.Data(), buf.Length());
    int r = ioctl(v->fd(), msrs ? kKvmSetMsrs : kKvmSetCpuid2, raw.data());
    if (r < 0 || (msrs && static_cast<size_t>(r) != n)) {
      return Fail(env, "set " + kind + " failed: " + (r < 0 ? strerror(errno) : "only " + std::to_string(r) + " MSRs accepted"));
    }
    return env.Undefined();
  }
  const StateKind* k = FindState(kind);
  if (!k) return Fail(env, "unknown vCPU state kind " + kind);
  if (buf.Length() != k->size) return Fail(env, kind + " must be " + std::to_string(k->size) + " bytes");
  if (ioctl(v->fd(), k->set, buf.Data()) < 0) return Fail(env, "set " + kind + " failed: " + strerror(errno));
  return env.Undefined();
}

Napi::Value KvmVm::SupportedCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  std::vector<uint8_t> raw(sizeof(CpuidHeader) + kMaxCpuidEntries * sizeof(kvm_cpuid_entry2), 0);
  auto* c = reinterpret_cast<CpuidHeader*>(raw.data());
  c->nent = kMaxCpuidEntries;
  if (ioctl(kvm_fd_, kKvmGetSupportedCpuid, c) < 0) return Fail(env, std::string("KVM_GET_SUPPORTED_CPUID failed: ") + strerror(errno));
  if (c->nent > kMaxCpuidEntries) return Fail(env, "KVM_GET_SUPPORTED_CPUID returned more entries than asked for");
  return Napi::Buffer<uint8_t>::Copy(env, raw.data() + sizeof(CpuidHeader), c->nent * sizeof(kvm_cpuid_entry2));
}

// start(onEvent, fastPio?, spinNs?, postWrites?): onEvent(vcpu, kind, addr, size, isWrite, data) answers reads
// with their value; kind 2 means the vCPU stopped: onEvent(vcpu, 2, VcpuStopReason, detail). `fastPio`
// lists port ranges the vCPU threads answer themselves; `spinNs` how long a vCPU polls for an answer
// before sleeping; `postWrites` lets vCPUs go on after a write without waiting for onEvent to run it.
Napi::Value KvmVm::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  if (tsfn_live_) return Fail(env, "the VM was already started");
  if (vcpus_.empty()) return Fail(env, "the VM has no vCPUs");
  if (info.Length() < 1 || !info[0].IsFunction()) return Fail(env, "start(onEvent: function, fastPio?, spinNs?)");
  auto fast = std::make_shared<FastPioTable>();
  std::string error;
  if (info.Length() > 1 && !ParseFastPio(info[1], fast.get(), &error)) return Fail(env, error);
  double spin = 0;
  if (info.Length() > 2 && !info[2].IsUndefined() && !SafeInteger(info[2], kMaxSpinNs, &spin)) {
    return Fail(env, "spinNs must be an integer between 0 and " + std::to_string(static_cast<int>(kMaxSpinNs)));
  }
  std::shared_ptr<const FastPioTable> fast_pio = fast;
  const bool post_writes = info.Length() > 3 && info[3].ToBoolean().Value();
  tsfn_ = ExitTsfn::New(env, info[0].As<Napi::Function>(), "vrun.vcpu", 0, 1, nullptr);
  tsfn_live_ = true;
  running_ = static_cast<int>(vcpus_.size());
  ExitTsfn tsfn = tsfn_;
  std::shared_ptr<VmShared> shared = shared_;
  for (auto& v : vcpus_) {
    v->Start(
        [tsfn, shared](const std::shared_ptr<Vcpu>& vcpu, const ExitRequest& req, bool posted) mutable {
          auto* m = new VcpuMessage{shared, vcpu, false, VcpuStopReason::kStopped, "", req, posted};
          if (tsfn.BlockingCall(m) != napi_ok) {
            delete m;
            return false;
          }
          return true;
        },
        [tsfn, shared](const std::shared_ptr<Vcpu>& vcpu, VcpuStopReason reason, const std::string& detail) mutable {
          auto* m = new VcpuMessage{shared, vcpu, true, reason, detail, ExitRequest{}, false};
          if (tsfn.BlockingCall(m) != napi_ok) delete m;
        },
        Vcpu::Options{fast_pio, static_cast<uint64_t>(spin), post_writes});
  }
  return env.Undefined();
}

Napi::Value KvmVm::Pause(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  for (auto& v : vcpus_) v->SetPaused(true);
  return info.Env().Undefined();
}

Napi::Value KvmVm::Resume(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  for (auto& v : vcpus_) v->SetPaused(false);
  return info.Env().Undefined();
}

Napi::Value KvmVm::Stop(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  for (auto& v : vcpus_) v->RequestStop();
  return info.Env().Undefined();
}

// ioeventfd(addr, length, isPio, datamatch | -1, onNotify(count)) -> undefined
Napi::Value KvmVm::Ioeventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double addr = 0, len = 0, match = 0;
  bool has_match = info.Length() > 3 && info[3].IsNumber() && info[3].As<Napi::Number>().DoubleValue() >= 0;
  if (info.Length() < 5 || !SafeInteger(info[0], 1ull << 52, &addr) || !SafeInteger(info[1], 8, &len) || !info[2].IsBoolean() ||
      (has_match && !SafeInteger(info[3], 4294967295.0, &match)) || !info[4].IsFunction()) {
    return Fail(env, "ioeventfd(addr, length 0|1|2|4|8, isPio, datamatch or -1, onNotify)");
  }
  int fd = NewEventfd();
  if (fd < 0) return Fail(env, std::string("eventfd failed: ") + strerror(errno));
  kvm_ioeventfd io;
  memset(&io, 0, sizeof io);
  io.addr = static_cast<uint64_t>(addr);
  io.len = static_cast<uint32_t>(len);
  io.fd = fd;
  io.datamatch = static_cast<uint64_t>(match);
  io.flags = (info[2].As<Napi::Boolean>().Value() ? KVM_IOEVENTFD_FLAG_PIO : 0) | (has_match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
  if (ioctl(vm_fd_, KVM_IOEVENTFD, &io) < 0) {
    int err = errno;
    close(fd);
    return Fail(env, std::string("KVM_IOEVENTFD failed: ") + strerror(err));
  }
  std::string error;
  EventfdWatch* w = EventfdWatch::Start(env, fd, info[4].As<Napi::Function>(), &error);
  if (!w) {
    close(fd);
    return Fail(env, "cannot watch the ioeventfd: " + error);
  }
  watches_.push_back(w);
  return env.Undefined();
}

// irqfd(gsi) -> id; triggerIrqfd(id) raises an edge on that GSI without a vCPU exit.
Napi::Value KvmVm::Irqfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double gsi = 0;
  if (info.Length() < 1 || !SafeInteger(info[0], 23, &gsi)) return Fail(env, "irqfd(gsi 0..23)");
  int fd = NewEventfd();
  if (fd < 0) return Fail(env, std::string("eventfd failed: ") + strerror(errno));
  kvm_irqfd req;
  memset(&req, 0, sizeof req);
  req.fd = static_cast<uint32_t>(fd);
  req.gsi = static_cast<uint32_t>(gsi);
  if (ioctl(vm_fd_, KVM_IRQFD, &req) < 0) {
    int err = errno;
    close(fd);
    return Fail(env, std::string("KVM_IRQFD failed: ") + strerror(err));
  }
  int id = next_irqfd_++;
  irqfds_[id] = fd;
  return Napi::Number::New(env, id);
}

Napi::Value KvmVm::TriggerIrqfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double id = 0;
  auto it = info.Length() > 0 && SafeInteger(info[0], 1e9, &id) ? irqfds_.find(static_cast<int>(id)) : irqfds_.end();
  if (it == irqfds_.end()) return Fail(env, "no such irqfd");
  uint64_t one = 1;
  if (write(it->second, &one, sizeof one) != sizeof one) return Fail(env, std::string("irqfd write failed: ") + strerror(errno));
  return env.Undefined();
}

// irqfdFd(id) -> the eventfd behind an irqfd, for a vhost-user backend to signal the guest directly.
Napi::Value KvmVm::IrqfdFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double id = 0;
  auto it = info.Length() > 0 && SafeInteger(info[0], 1e9, &id) ? irqfds_.find(static_cast<int>(id)) : irqfds_.end();
  if (it == irqfds_.end()) return Fail(env, "no such irqfd");
  return Napi::Number::New(env, it->second);
}

// kickEventfd(addr, length, datamatch) -> fd: an MMIO ioeventfd nobody here watches; a vhost-user
// backend gets it as its queue's kick fd, so guest notifications go straight to the backend.
Napi::Value KvmVm::KickEventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double addr = 0, len = 0, match = 0;
  if (info.Length() < 3 || !SafeInteger(info[0], 1ull << 52, &addr) || !SafeInteger(info[1], 8, &len) || !SafeInteger(info[2], 4294967295.0, &match)) {
    return Fail(env, "kickEventfd(addr, length, datamatch)");
  }
  int fd = NewEventfd();
  if (fd < 0) return Fail(env, std::string("eventfd failed: ") + strerror(errno));
  kvm_ioeventfd io;
  memset(&io, 0, sizeof io);
  io.addr = static_cast<uint64_t>(addr);
  io.len = static_cast<uint32_t>(len);
  io.fd = fd;
  io.datamatch = static_cast<uint64_t>(match);
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (ioctl(vm_fd_, KVM_IOEVENTFD, &io) < 0) {
    int err = errno;
    close(fd);
    return Fail(env, std::string("KVM_IOEVENTFD failed: ") + strerror(err));
  }
  kick_fds_.push_back(fd);
  return Napi::Number::New(env, fd);
}

Napi::Value KvmVm::IrqLine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  double gsi = 0;
  if (info.Length() < 2 || !SafeInteger(info[0], 23, &gsi) || !info[1].IsBoolean()) return Fail(env, "irqLine(gsi 0..23, level)");
  kvm_irq_level l;
  memset(&l, 0, sizeof l);
  l.irq = static_cast<uint32_t>(gsi);
  l.level = info[1].As<Napi::Boolean>().Value() ? 1 : 0;
  if (ioctl(vm_fd_, KVM_IRQ_LINE, &l) < 0) return Fail(env, std::string("KVM_IRQ_LINE failed: ") + strerror(errno));
  return env.Undefined();
}

// exitStats() -> per vCPU [portExitsToJs, mmioExitsToJs, portExitsAnsweredNatively, answersWhileSpinning, nsWaitingForJs, postedWrites]
Napi::Value KvmVm::ExitStatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::array<uint64_t, 6>> rows = final_stats_;
  if (!destroyed_) {
    for (auto& v : vcpus_) {
      const ExitStats& s = v->stats();
      rows.push_back({s.pio.load(), s.mmio.load(), s.fast.load(), s.spun.load(), s.wait_ns.load(), s.posted.load()});
    }
  }
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); i++) {
    Napi::Array row = Napi::Array::New(env, 6);
    for (uint32_t k = 0; k < 6; k++) row.Set(k, Napi::Number::New(env, static_cast<double>(rows[i][k])));
    out.Set(static_cast<uint32_t>(i), row);
  }
  return out;
}

// vcpuThreads() -> per vCPU [inKvmRunNow (0 or 1), kvmRunEntries, parked by pause() (0 or 1), thread running (0 or 1)]
Napi::Value KvmVm::VcpuThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, destroyed_ ? 0 : vcpus_.size());
  if (destroyed_) return out;
  for (size_t i = 0; i < vcpus_.size(); i++) {
    const ExitStats& s = vcpus_[i]->stats();
    Napi::Array row = Napi::Array::New(env, 4);
    row.Set(0u, Napi::Number::New(env, s.in_run.load() ? 1 : 0));
    row.Set(1u, Napi::Number::New(env, static_cast<double>(s.runs.load())));
    row.Set(2u, Napi::Number::New(env, vcpus_[i]->paused_now() ? 1 : 0));
    row.Set(3u, Napi::Number::New(env, vcpus_[i]->running() ? 1 : 0));
    out.Set(static_cast<uint32_t>(i), row);
  }
  return out;
}

// tscKhz(index) -> the vCPU's TSC frequency in kHz (KVM_GET_TSC_KHZ), to turn TSC ticks into time. Paused vCPUs
// only: every vCPU ioctl takes the vCPU's mutex, which KVM_RUN holds, so asking a running vCPU would block this
// thread for as long as the guest stays inside KVM (a halted vCPU: indefinitely).
Napi::Value KvmVm::TscKhz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vcpu* v = VcpuArg(info, 0, true);
  if (!v) return env.Undefined();
  int r = ioctl(v->fd(), KVM_GET_TSC_KHZ, 0);
  if (r < 0) return Fail(env, std::string("KVM_GET_TSC_KHZ failed: ") + strerror(errno));
  return Napi::Number::New(env, r);
}

Napi::Value KvmVm::Destroy(const Napi::CallbackInfo& info) {
  Teardown();
  return info.Env().Undefined();
}

}  // namespace vrun
