#pragma once
#include <napi.h>

namespace vrun {
// Filesystem calls Node has no binding for. The image store's: mknod (overlay whiteouts, fifos), extended
// attributes on a path without following symlinks, flock on an open fd. The guest agent's: mount.
void InitFsOps(Napi::Env env, Napi::Object exports);
}  // namespace vrun
