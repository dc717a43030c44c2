#pragma once
#include <napi.h>

namespace vrun {
// The host side of a pod NIC over rtnetlink, in one call per direction: a persistent tap next to the CNI
// interface with tc mirred redirects both ways (tapAttach), and its removal (tapDetach). See tap_attach.cc.
void InitTapAttach(Napi::Env env, Napi::Object exports);
}  // namespace vrun
