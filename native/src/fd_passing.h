#pragma once
#include <napi.h>

namespace vrun {
// Receiving a file descriptor over a unix socket (SCM_RIGHTS), which Node cannot do: the guest agent
// listens on a console socket and crun sends it the pty master of a container's terminal. Also a bounded
// wait for readability of any fd (the agent's virtio-console port), which Node has no call for.
void InitFdPassing(Napi::Env env, Napi::Object exports);
}  // namespace vrun
