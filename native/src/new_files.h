#pragma once
#include <napi.h>

namespace vrun {
// Batched creation of new regular files (data, owner, mode, xattrs, mtime) off the JS thread, for layer unpack.
void InitNewFiles(Napi::Env env, Napi::Object exports);
}  // namespace vrun
