#pragma once
#include <napi.h>

namespace vrun {
// A blocking unix stream socket for the vhost-user control channel: Node's net module cannot attach
// file descriptors (SCM_RIGHTS) to a message, which vhost-user needs for guest RAM and the eventfds.
// Messages are small and answered at once, so the calls block with a timeout instead of going async.
void InitVhostUserSocket(Napi::Env env, Napi::Object exports);
}  // namespace vrun
