#pragma once

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace vrun {

// Runs `body` on a thread of its own that first enters the network namespace at `netns`. Sockets and tun fds
// belong to the namespace they were made in, whoever uses them later, so only this short-lived thread ever
// runs in the namespace: no other thread of the process (vCPUs, libuv's pool) does. Returns false, with errno
// and the failing call in `*syscall`, when the namespace could not be entered; `body` then did not run.
template <typename Body>
bool RunInNetns(const std::string& netns, const char** syscall, Body body) {
  bool entered = false;
  int err = 0;
  std::thread t([&]() {
    int ns = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      err = errno;
      *syscall = "open(netns)";
      return;
    }
    int rc = setns(ns, CLONE_NEWNET);
    err = errno;
    close(ns);
    if (rc != 0) {
      *syscall = "setns";
      return;
    }
    entered = true;
    body();
  });
  t.join();
  if (!entered) errno = err;
  return entered;
}

}  // namespace vrun
