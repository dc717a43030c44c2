#pragma once
#include <napi.h>

namespace vrun {
// A network namespace's links, addresses, routes and permanent neighbours, read with rtnetlink dumps from a
// thread inside it (what `ip -j link/addr/route/neigh show` print, without a process each). See
// netlink_snapshot.cc.
void InitNetlinkSnapshot(Napi::Env env, Napi::Object exports);
}  // namespace vrun
