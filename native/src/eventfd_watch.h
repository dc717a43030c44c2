#pragma once
#include <napi.h>
#include <uv.h>

#include <cstdint>

namespace vrun {

// An eventfd watched on the libuv loop: each time it becomes readable its counter is drained and the
// JS callback gets the count. Used for ioeventfds, so a guest's queue notification reaches the device
// model without a vCPU exit through JS. Close() stops the watch; the fd and the handle are released
// in libuv's close callback.
class EventfdWatch {
 public:
  static EventfdWatch* Start(Napi::Env env, int fd, Napi::Function callback, std::string* error);
  void Close();
  int fd() const { return fd_; }

 private:
  EventfdWatch(Napi::Env env, int fd, Napi::Function callback);
  ~EventfdWatch();
  static void OnReadable(uv_poll_t* handle, int status, int events);
  static void OnClosed(uv_handle_t* handle);

  Napi::Env env_;
  int fd_;
  uv_poll_t poll_;
  Napi::FunctionReference callback_;
  Napi::AsyncContext context_;
  bool closing_ = false;
};

// A fresh non-blocking, close-on-exec eventfd, or -1 with errno set.
int NewEventfd();

}  // namespace vrun
