#pragma once
#include <napi.h>

namespace vrun {
// The native VMM's side of a persistent tap (virtio-net): attaching to it by name, optionally from inside a
// network namespace the process itself is not in (a pod's), its vnet-header and offload settings, nonblocking
// reads and writes of whole frames, and a libuv poll JS can pause and resume so the device stops reading
// while the guest has no receive buffers.
void InitTap(Napi::Env env, Napi::Object exports);
}  // namespace vrun
