#pragma once
#include <napi.h>

namespace vrun {
// TCP sockets in a network namespace the process is not in (a CRI pod's), for the shim's port-forward
// listener and for tests that reach a server living there; and the original destination of a connection
// an iptables REDIRECT rule sent to such a listener (SO_ORIGINAL_DST), which Node has no binding for.
void InitNetnsSocket(Napi::Env env, Napi::Object exports);
}  // namespace vrun
