#pragma once
#include <napi.h>

namespace vrun {
// Id-mapped mounts for a pod's share (virtiofsd runs in a user namespace; see src/vmm/jail/idmap.ts): a user
// namespace to describe the mapping, id-mapped bind mounts, and overlayfs mounts over id-mapped layers.
void InitIdmap(Napi::Env env, Napi::Object exports);
}  // namespace vrun
