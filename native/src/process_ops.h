#pragma once
#include <napi.h>

namespace vrun {
// Process and terminal calls the guest agent needs and Node has no binding for: becoming a child
// subreaper (so container inits crun leaves behind stay our children), a non-blocking waitpid on one pid
// (libuv only reaps the children it spawned itself), real pipes, spawning without a fork of the agent's
// address space, and setting a pty's window size.
void InitProcessOps(Napi::Env env, Napi::Object exports);
}  // namespace vrun
