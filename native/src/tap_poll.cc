#include "tap_poll.h"

#include <string>

namespace vrun {

// Outlives the JS object when needed: libuv owns the handle until its close callback, which frees this.
struct TapPoll::Watch {
  Watch(Napi::Env env, Napi::Function cb) : env(env), callback(Napi::Persistent(cb)), context(env, "vrun.tap") {}
  Napi::Env env;
  uv_poll_t poll;
  Napi::FunctionReference callback;
  Napi::AsyncContext context;
  bool watching = false;
  bool failed = false;
  bool closing = false;

  static void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
    auto* w = static_cast<Watch*>(handle->data);
    if (w->closing) return;
    if (status < 0) {
      // libuv already stopped the handle; resuming a broken fd would only spin.
      w->failed = true;
      w->watching = false;
      uv_poll_stop(&w->poll);
    }
    Napi::HandleScope scope(w->env);
    w->callback.MakeCallback(w->env.Global(), {Napi::Number::New(w->env, status)}, w->context);
  }

  static void OnClosed(uv_handle_t* handle) { delete static_cast<Watch*>(handle->data); }
};

void TapPoll::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "TapPoll",
                                   {InstanceMethod("resume", &TapPoll::Resume), InstanceMethod("pause", &TapPoll::Pause),
                                    InstanceMethod("close", &TapPoll::Close)});
  exports.Set("TapPoll", cls);
}

TapPoll::TapPoll(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapPoll>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "new TapPoll(fd: number, onReadable: (status: number) => void)").ThrowAsJavaScriptException();
    return;
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "TapPoll: no libuv loop").ThrowAsJavaScriptException();
    return;
  }
  auto* w = new Watch(env, info[1].As<Napi::Function>());
  int r = uv_poll_init(loop, &w->poll, info[0].As<Napi::Number>().Int32Value());
  if (r != 0) {
    delete w;  // never reached libuv
    Napi::Error::New(env, std::string("TapPoll: uv_poll_init: ") + uv_strerror(r)).ThrowAsJavaScriptException();
    return;
  }
  w->poll.data = w;
  watch_ = w;
}

// A JS object collected without close() still releases the handle; the fd is not ours to close.
TapPoll::~TapPoll() { Release(); }

void TapPoll::Release() {
  if (watch_ == nullptr) return;
  watch_->closing = true;
  watch_->callback.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&watch_->poll), Watch::OnClosed);
  watch_ = nullptr;
}

// resume() -> false when the watch is closed or failed, so the caller knows no readiness will come.
Napi::Value TapPoll::Resume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (watch_ == nullptr || watch_->failed) return Napi::Boolean::New(env, false);
  if (!watch_->watching) {
    int r = uv_poll_start(&watch_->poll, UV_READABLE, Watch::OnReadable);
    if (r != 0) {
      watch_->failed = true;
      return Napi::Boolean::New(env, false);
    }
    watch_->watching = true;
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value TapPoll::Pause(const Napi::CallbackInfo& info) {
  if (watch_ != nullptr && watch_->watching) {
    uv_poll_stop(&watch_->poll);
    watch_->watching = false;
  }
  return info.Env().Undefined();
}

Napi::Value TapPoll::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

}  // namespace vrun
