#pragma once
#include <napi.h>
#include <uv.h>

namespace vrun {

// `new TapPoll(fd, onReadable(status))`: watches a tap fd on the libuv loop and calls onReadable while it has
// frames (level-triggered: a pass that leaves frames behind is called again on the next loop turn, so the
// device can bound each pass). pause() stops watching (backpressure: the kernel queues, then drops), resume()
// starts again; a status below 0 (a uv error, e.g. the tap was deleted) stops the watch for good. close()
// releases the watch; the fd stays the caller's. Paused or closed, it does not keep the loop alive.
class TapPoll : public Napi::ObjectWrap<TapPoll> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit TapPoll(const Napi::CallbackInfo& info);
  ~TapPoll() override;

 private:
  struct Watch;
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Release();

  Watch* watch_ = nullptr;
};

}  // namespace vrun
