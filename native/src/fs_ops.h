#pragma once
#include <napi.h>

namespace vrun {
// Filesystem calls Node has no binding for, used by the image store: mknod (overlay whiteouts, fifos),
// extended attributes on a path without following symlinks, and flock on an open fd.
void InitFsOps(Napi::Env env, Napi::Object exports);
}  // namespace vrun
