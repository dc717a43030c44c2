#include "vhost_user_socket.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

namespace vrun {
namespace {

constexpr size_t kMaxFds = 16;
constexpr size_t kMaxMessage = 4096;

Napi::Value Throw(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool FdArg(const Napi::Value& v, int* fd) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 1 << 30 || std::floor(d) != d) return false;
  *fd = static_cast<int>(d);
  return true;
}

// vhostConnect(path, timeoutMs) -> fd
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) return Throw(env, "vhostConnect(path, timeoutMs)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Throw(env, "vhost-user socket path is too long: " + path);
  memcpy(addr.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Throw(env, std::string("socket: ") + strerror(errno));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    return Throw(env, "cannot connect to vhost-user socket " + path + ": " + strerror(err));
  }
  int ms = info[1].As<Napi::Number>().Int32Value();
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return Napi::Number::New(env, fd);
}

// vhostSend(fd, data: Buffer, fds: number[])
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 3 || !FdArg(info[0], &fd) || !info[1].IsBuffer() || !info[2].IsArray()) return Throw(env, "vhostSend(fd, data, fds)");
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() > kMaxFds || data.Length() == 0 || data.Length() > kMaxMessage) return Throw(env, "vhost-user message or fd list too large");
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    int f = -1;
    if (!FdArg(arr.Get(i), &f)) return Throw(env, "vhostSend: fds must be file descriptor numbers");
    fds.push_back(f);
  }
  iovec iov{data.Data(), data.Length()};
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds), 0);
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Throw(env, std::string("vhost-user send failed: ") + strerror(errno));
  if (static_cast<size_t>(n) != data.Length()) return Throw(env, "vhost-user send was short");
  return env.Undefined();
}

// vhostRecv(fd, length) -> Buffer of exactly `length` bytes (any fds the backend sends are closed:
// a frontend never needs them for the messages vrun uses).
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (info.Length() < 2 || !FdArg(info[0], &fd) || !info[1].IsNumber()) return Throw(env, "vhostRecv(fd, length)");
  int64_t want = info[1].As<Napi::Number>().Int64Value();
  if (want <= 0 || want > static_cast<int64_t>(kMaxMessage)) return Throw(env, "vhostRecv: bad length");
  std::vector<uint8_t> buf(static_cast<size_t>(want));
  size_t got = 0;
  while (got < buf.size()) {
    iovec iov{buf.data() + got, buf.size() - got};
    msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Throw(env, std::string("vhost-user receive failed: ") + (errno == EAGAIN ? "timed out" : strerror(errno)));
    if (n == 0) return Throw(env, "vhost-user backend closed the connection");
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int f;
          memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
          close(f);
        }
      }
    }
    got += static_cast<size_t>(n);
  }
  return Napi::Buffer<uint8_t>::Copy(env, buf.data(), buf.size());
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = -1;
  if (info.Length() >= 1 && FdArg(info[0], &fd)) close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitVhostUserSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("vhostConnect", Napi::Function::New(env, Connect));
  exports.Set("vhostSend", Napi::Function::New(env, Send));
  exports.Set("vhostRecv", Napi::Function::New(env, Recv));
  exports.Set("vhostClose", Napi::Function::New(env, Close));
}

}  // namespace vrun
