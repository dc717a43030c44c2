#pragma once

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace vrun {

// A NETLINK_ROUTE socket in the calling thread's network namespace, and the one request/reply loop both of its
// users need: tap_attach.cc (requests answered by an acknowledgement) and netlink_snapshot.cc (dumps).
class RtnlSocket {
 public:
  RtnlSocket() = default;
  RtnlSocket(const RtnlSocket&) = delete;
  RtnlSocket& operator=(const RtnlSocket&) = delete;
  ~RtnlSocket() {
    if (fd_ >= 0) close(fd_);
  }

  // false with errno and the failing call in *call.
  bool Open(const char** call) {
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) return *call = "socket(NETLINK_ROUTE)", false;
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return *call = "bind(netlink)", false;
    return true;
  }

  // Sends `msg` (its length set, a fresh sequence number given) and hands every reply of it other than the
  // end to `each`. The end is the acknowledgement (NLMSG_ERROR, for a request with NLM_F_ACK) or NLMSG_DONE (a
  // dump). Returns 0, the kernel's errno (positive), or -1 with errno and the failing call in *call.
  template <typename Each>
  int Exchange(nlmsghdr* msg, Each each, const char** call) {
    msg->nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd_, msg, msg->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return *call = "sendto", -1;
    std::vector<uint8_t> buf(32768);
    for (;;) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return *call = "recv", -1;
      }
      for (auto* m = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(m, static_cast<unsigned>(n)); m = NLMSG_NEXT(m, n)) {
        if (m->nlmsg_seq != seq_) continue;
        if (m->nlmsg_type == NLMSG_DONE) return 0;
        if (m->nlmsg_type == NLMSG_ERROR) return -static_cast<const nlmsgerr*>(NLMSG_DATA(m))->error;
        each(m);
      }
    }
  }

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
};

}  // namespace vrun
