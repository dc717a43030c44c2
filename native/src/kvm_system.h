#pragma once
#include <napi.h>

namespace vrun {
// System-level KVM queries that need no VM (API version, capability checks).
void InitKvmSystem(Napi::Env env, Napi::Object exports);
}  // namespace vrun
