#include "fd_passing.h"

#include "errno_error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <string>

namespace vrun {
namespace {

long long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Waits until fd is readable or the deadline passes; false with err set on timeout/failure.
bool WaitReadable(int fd, long long deadline, int* err) {
  for (;;) {
    long long left = deadline - NowMs();
    if (left <= 0) {
      *err = ETIMEDOUT;
      return false;
    }
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) {
      *err = errno;
      return false;
    }
  }
}

// Accepts one connection on a listening unix socket and receives exactly one fd from it, all off the
// JS thread. The received fd is close-on-exec; the peer's socket is closed.
class RecvFdWorker : public Napi::AsyncWorker {
 public:
  RecvFdWorker(Napi::Env env, int listen_fd, int timeout_ms)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), listen_fd_(listen_fd), timeout_ms_(timeout_ms) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    long long deadline = NowMs() + timeout_ms_;
    int err = 0;
    if (!WaitReadable(listen_fd_, deadline, &err)) return Fail(err, "poll(accept)");
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return Fail(errno, "accept4");
    if (!WaitReadable(conn, deadline, &err)) {
      close(conn);
      return Fail(err, "poll(recvmsg)");
    }
    char data[256];
    struct iovec iov = {data, sizeof(data)};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
      n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(conn);
    if (n < 0) return Fail(saved, "recvmsg");
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int fds[4];
      memcpy(fds, CMSG_DATA(c), count * sizeof(int));
      // Keep the first fd; any extra ones a hostile sender attached are closed, never leaked.
      for (size_t i = 0; i < count; i++) {
        if (fd_ < 0) fd_ = fds[i];
        else close(fds[i]);
      }
    }
    if (fd_ < 0) return Fail(EBADMSG, "recvmsg (no SCM_RIGHTS fd)");
  }

  void OnOK() override {
    if (error_ != 0) {
      deferred_.Reject(ErrnoErrorWithoutNumber(Env(), error_, syscall_).Value());
      return;
    }
    deferred_.Resolve(Napi::Number::New(Env(), fd_));
  }

 private:
  void Fail(int err, const char* syscall) {
    error_ = err;
    syscall_ = syscall;
  }

  Napi::Promise::Deferred deferred_;
  int listen_fd_;
  int timeout_ms_;
  int fd_ = -1;
  int error_ = 0;
  std::string syscall_;
};

// Waits up to timeout_ms for an fd to be readable, in libuv's pool. Bounded waits matter: libuv joins its
// pool threads at process exit, so a thread parked in a blocking read of a device would hang the exit.
class WaitReadableWorker : public Napi::AsyncWorker {
 public:
  WaitReadableWorker(Napi::Env env, int fd, int timeout_ms)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), timeout_ms_(timeout_ms) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct pollfd p = {fd_, POLLIN, 0};
    int r;
    do {
      r = poll(&p, 1, timeout_ms_);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      err_ = errno;
      return;
    }
    if (r == 0) result_ = "timeout";
    else if (p.revents & POLLIN) result_ = "readable";
    else if (p.revents & POLLHUP) result_ = "hup";
    else result_ = "error";
  }

  void OnOK() override {
    if (err_ != 0) {
      deferred_.Reject(Napi::Error::New(Env(), std::string("poll: ") + strerror(err_)).Value());
      return;
    }
    deferred_.Resolve(Napi::String::New(Env(), result_));
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  int timeout_ms_;
  int err_ = 0;
  std::string result_;
};

// fdWaitReadable(fd, timeoutMs): Promise<'readable' | 'hup' | 'timeout' | 'error'>.
Napi::Value WaitReadableJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "fdWaitReadable(fd: number, timeoutMs: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new WaitReadableWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// fdListenUnix(path): a listening, close-on-exec unix stream socket bound at path; returns its fd.
Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "fdListenUnix(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    Napi::RangeError::New(env, "fdListenUnix: socket path too long: " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    Napi::Error::New(env, std::string("fdListenUnix ") + path + ": " + strerror(err)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// fdRecvFromListener(listenFd, timeoutMs): Promise<fd> of the first fd sent by the first peer.
Napi::Value RecvFromListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "fdRecvFromListener(listenFd: number, timeoutMs: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new RecvFdWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// fdClose(fd): closes a raw fd this module handed out (the listener).
Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "fdClose(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

void InitFdPassing(Napi::Env env, Napi::Object exports) {
  exports.Set("fdListenUnix", Napi::Function::New(env, ListenUnix));
  exports.Set("fdRecvFromListener", Napi::Function::New(env, RecvFromListener));
  exports.Set("fdClose", Napi::Function::New(env, Close));
  exports.Set("fdWaitReadable", Napi::Function::New(env, WaitReadableJs));
}

}  // namespace vrun
