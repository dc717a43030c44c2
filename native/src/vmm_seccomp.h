#pragma once
#include <napi.h>

namespace vrun {
// A seccomp deny-list for the whole native VMM process (every thread, Node's own included): what a VMM never
// needs and an attacker who took it over would want. See vmm_seccomp.cc.
void InitVmmSeccomp(Napi::Env env, Napi::Object exports);
}  // namespace vrun
