#include "netns_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "errno_error.h"
#include "netns_thread.h"

namespace vrun {
namespace {

struct SocketResult {
  int fd = -1;
  int err = 0;
  const char* syscall = "";
  // The failure was entering the namespace, so the error names its path.
  bool netns = false;
};

void Fail(SocketResult* r, const char* syscall) {
  r->err = errno;
  r->syscall = syscall;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
}

// An IPv4 or IPv6 literal and a port as a sockaddr; false for anything else (no name lookups here).
bool ParseAddress(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

enum class Op { kListen, kConnect };

// A socket belongs to the network namespace it was made in, whoever uses it later. A thread of our own enters
// the namespace for the socket() call (and the bind/listen or connect), so no other thread of the process ever
// runs in it; the thread ends right after.
void SocketIn(const std::string& netns, Op op, const sockaddr_storage& addr, socklen_t len, int backlog, SocketResult* r) {
  bool entered = RunInNetns(netns, &r->syscall, [&]() {
    r->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->fd < 0) return Fail(r, "socket");
    if (op == Op::kListen) {
      if (bind(r->fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) return Fail(r, "bind");
      if (listen(r->fd, backlog) != 0) return Fail(r, "listen");
    } else {
      int c;
      do {
        c = connect(r->fd, reinterpret_cast<const sockaddr*>(&addr), len);
      } while (c != 0 && errno == EINTR);
      if (c != 0) return Fail(r, "connect");
    }
  });
  if (!entered) {
    r->netns = true;
    Fail(r, r->syscall);
  }
}

Napi::Value Socket(const Napi::CallbackInfo& info, Op op) {
  Napi::Env env = info.Env();
  const char* usage = op == Op::kListen ? "netnsListenTcp(netns: string, host: string, port: number, backlog: number)" : "netnsConnectTcp(netns: string, host: string, port: number)";
  size_t want = op == Op::kListen ? 4 : 3;
  if (info.Length() < want || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber() || (op == Op::kListen && !info[3].IsNumber())) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string netns = info[0].As<Napi::String>().Utf8Value();
  std::string host = info[1].As<Napi::String>().Utf8Value();
  int port = info[2].As<Napi::Number>().Int32Value();
  int backlog = op == Op::kListen ? info[3].As<Napi::Number>().Int32Value() : 0;
  if (netns.empty() || netns[0] != '/' || netns.find('\0') != std::string::npos) {
    Napi::RangeError::New(env, std::string(usage) + ": netns must be an absolute path").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (port < 0 || port > 65535 || (op == Op::kConnect && port == 0) || backlog < 0 || backlog > 4096) {
    Napi::RangeError::New(env, std::string(usage) + ": port or backlog out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!ParseAddress(host, port, &addr, &len)) {
    Napi::RangeError::New(env, std::string(usage) + ": " + host + " is not an IP address").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SocketResult r;
  SocketIn(netns, op, addr, len, backlog, &r);
  if (r.fd < 0) {
    ThrowErrno(env, r.err, r.syscall, r.netns ? netns : host + ":" + std::to_string(port));
    return env.Undefined();
  }
  return Napi::Number::New(env, r.fd);
}

// netnsListenTcp(netns, host, port, backlog) -> fd: a listening TCP socket (close-on-exec, blocking: Node's
// net.Server makes it nonblocking when it takes the fd) bound to host:port inside the namespace at `netns`.
Napi::Value ListenTcp(const Napi::CallbackInfo& info) { return Socket(info, Op::kListen); }

// netnsConnectTcp(netns, host, port) -> fd: a TCP socket connected to host:port from inside the namespace.
Napi::Value ConnectTcp(const Napi::CallbackInfo& info) { return Socket(info, Op::kConnect); }

// sockOriginalDst(fd) -> { address, port }: where the connection on `fd` was headed before a NAT REDIRECT
// (conntrack's SO_ORIGINAL_DST, IPv4 or IPv6 by the socket's family).
Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "sockOriginalDst(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  sockaddr_storage local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    ThrowErrno(env, errno, "getsockname");
    return env.Undefined();
  }
  sockaddr_storage dst;
  memset(&dst, 0, sizeof(dst));
  len = sizeof(dst);
  int rc = local.ss_family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
  if (rc != 0) {
    ThrowErrno(env, errno, "getsockopt(SO_ORIGINAL_DST)");
    return env.Undefined();
  }
  char text[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (dst.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&dst);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    port = ntohs(v4->sin_port);
  } else if (dst.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&dst);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    port = ntohs(v6->sin6_port);
  } else {
    ThrowErrno(env, EAFNOSUPPORT, "getsockopt(SO_ORIGINAL_DST)");
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", Napi::String::New(env, text));
  out.Set("port", Napi::Number::New(env, port));
  return out;
}

}  // namespace

void InitNetnsSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsListenTcp", Napi::Function::New(env, ListenTcp, "netnsListenTcp"));
  exports.Set("netnsConnectTcp", Napi::Function::New(env, ConnectTcp, "netnsConnectTcp"));
  exports.Set("sockOriginalDst", Napi::Function::New(env, OriginalDst, "sockOriginalDst"));
}

}  // namespace vrun
