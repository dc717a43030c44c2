#include <napi.h>

#include "fs_ops.h"
#include "kvm_system.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vrun::InitKvmSystem(env, exports);
  vrun::InitFsOps(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(vrun_native, Init)
