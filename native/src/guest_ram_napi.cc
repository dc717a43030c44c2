#include "guest_ram_napi.h"

#include <cmath>
#include <string>

#include "errno_error.h"

namespace vrun {
namespace {

bool ByteCount(const Napi::Value& v, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 9007199254740991.0 || std::floor(d) != d) return false;
  *out = d;
  return true;
}

class GuestRamJs : public Napi::ObjectWrap<GuestRamJs> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "GuestRam",
                                     {
                                         InstanceMethod("memory", &GuestRamJs::Memory),
                                         InstanceMethod("memfd", &GuestRamJs::Memfd),
                                         InstanceMethod("discard", &GuestRamJs::Discard),
                                     });
    exports.Set("GuestRam", cls);
  }

  explicit GuestRamJs(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GuestRamJs>(info) {
    Napi::Env env = info.Env();
    double size = 0;
    if (info.Length() != 1 || !ByteCount(info[0], &size) || size == 0 || size > static_cast<double>(1ull << 46)) {
      Napi::TypeError::New(env, "new GuestRam(bytes: a positive integer)").ThrowAsJavaScriptException();
      return;
    }
    std::string error;
    ram_ = GuestRam::Create(static_cast<size_t>(size), &error);
    if (!ram_) {
      Napi::Error::New(env, error).ThrowAsJavaScriptException();
      return;
    }
    auto* hold = new std::shared_ptr<GuestRam>(ram_);
    memory_ = Napi::Persistent(Napi::ArrayBuffer::New(
        env, ram_->data(), ram_->size(), [](Napi::Env, void*, std::shared_ptr<GuestRam>* h) { delete h; }, hold));
  }

 private:
  Napi::Value Memory(const Napi::CallbackInfo& info) { return ram_ ? memory_.Value() : info.Env().Undefined(); }
  Napi::Value Memfd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ram_ ? ram_->memfd() : -1); }
  Napi::Value Discard(const Napi::CallbackInfo& info) { return DiscardGuestRam(info, ram_); }

  std::shared_ptr<GuestRam> ram_;
  Napi::Reference<Napi::ArrayBuffer> memory_;
};

}  // namespace

Napi::Value DiscardGuestRam(const Napi::CallbackInfo& info, const std::shared_ptr<GuestRam>& ram) {
  Napi::Env env = info.Env();
  double offset = 0, length = 0;
  if (info.Length() != 2 || !ByteCount(info[0], &offset) || !ByteCount(info[1], &length)) {
    Napi::TypeError::New(env, "discard(offset: number, length: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!ram) {
    Napi::Error::New(env, "guest RAM is gone").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int err = ram->Discard(static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  if (err != 0) ThrowErrno(env, err, "madvise(MADV_REMOVE)");
  return env.Undefined();
}

void InitGuestRam(Napi::Env env, Napi::Object exports) { GuestRamJs::Init(env, exports); }

}  // namespace vrun
