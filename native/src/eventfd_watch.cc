#include "eventfd_watch.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace vrun {

int NewEventfd() { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

EventfdWatch::EventfdWatch(Napi::Env env, int fd, Napi::Function callback)
    : env_(env), fd_(fd), callback_(Napi::Persistent(callback)), context_(env, "vrun.eventfd") {}

EventfdWatch::~EventfdWatch() {
  if (fd_ >= 0) close(fd_);
}

EventfdWatch* EventfdWatch::Start(Napi::Env env, int fd, Napi::Function callback, std::string* error) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    *error = "no libuv loop";
    return nullptr;
  }
  auto* w = new EventfdWatch(env, fd, callback);
  int r = uv_poll_init(loop, &w->poll_, fd);
  if (r != 0) {
    *error = std::string("uv_poll_init: ") + uv_strerror(r);
    w->fd_ = -1;  // the caller still owns the fd
    delete w;
    return nullptr;
  }
  w->poll_.data = w;
  r = uv_poll_start(&w->poll_, UV_READABLE, OnReadable);
  if (r != 0) {
    *error = std::string("uv_poll_start: ") + uv_strerror(r);
    w->fd_ = -1;
    w->Close();
    return nullptr;
  }
  return w;
}

void EventfdWatch::OnReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* w = static_cast<EventfdWatch*>(handle->data);
  if (w->closing_ || status < 0) return;
  uint64_t count = 0;
  if (read(w->fd_, &count, sizeof count) != sizeof count) return;  // EAGAIN: someone drained it first
  Napi::HandleScope scope(w->env_);
  w->callback_.MakeCallback(w->env_.Global(), {Napi::Number::New(w->env_, static_cast<double>(count))}, w->context_);
}

void EventfdWatch::Close() {
  if (closing_) return;
  closing_ = true;
  callback_.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
}

void EventfdWatch::OnClosed(uv_handle_t* handle) { delete static_cast<EventfdWatch*>(handle->data); }

}  // namespace vrun
