#include "errno_error.h"

#include <string.h>

namespace vrun {
namespace {

Napi::Error Make(Napi::Env env, int err, const std::string& syscall, const std::string* path, bool with_number) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "EUNKNOWN";
  std::string message = code + ": " + strerror(err) + ", " + syscall;
  if (path != nullptr) message += " '" + *path + "'";
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  if (with_number) e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (path != nullptr) e.Set("path", Napi::String::New(env, *path));
  return e;
}

}  // namespace

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall) { return Make(env, err, syscall, nullptr, true); }

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& path) {
  return Make(env, err, syscall, &path, true);
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall) { ErrnoError(env, err, syscall).ThrowAsJavaScriptException(); }

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& path) {
  ErrnoError(env, err, syscall, path).ThrowAsJavaScriptException();
}

Napi::Error ErrnoErrorWithoutNumber(Napi::Env env, int err, const std::string& syscall) { return Make(env, err, syscall, nullptr, false); }

}  // namespace vrun
