#include <napi.h>

#include "fd_passing.h"
#include "fs_ops.h"
#include "guest_ram_napi.h"
#include "idmap.h"
#include "kvm_system.h"
#include "kvm_vm.h"
#include "netlink_snapshot.h"
#include "netns_socket.h"
#include "new_files.h"
#include "process_ops.h"
#include "tap.h"
#include "tap_attach.h"
#include "vcpu_seccomp.h"
#include "vhost_user_socket.h"
#include "vmm_seccomp.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vrun::InitKvmSystem(env, exports);
  vrun::KvmVm::Init(env, exports);
  vrun::InitGuestRam(env, exports);
  vrun::InitFsOps(env, exports);
  vrun::InitIdmap(env, exports);
  vrun::InitNewFiles(env, exports);
  vrun::InitFdPassing(env, exports);
  vrun::InitProcessOps(env, exports);
  vrun::InitVhostUserSocket(env, exports);
  vrun::InitTap(env, exports);
  vrun::InitTapAttach(env, exports);
  vrun::InitNetlinkSnapshot(env, exports);
  vrun::InitNetnsSocket(env, exports);
  vrun::InitVcpuSeccompProbe(env, exports);
  vrun::InitVmmSeccomp(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(vrun_native, Init)
