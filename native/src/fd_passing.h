#pragma once
#include <napi.h>

namespace vrun {
// Receiving a file descriptor over a unix socket (SCM_RIGHTS), which Node cannot do: the guest agent
// listens on a console socket and crun sends it the pty master of a container's terminal.
void InitFdPassing(Napi::Env env, Napi::Object exports);
}  // namespace vrun
