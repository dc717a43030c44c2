#include "fs_ops.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <string>
#include <vector>

namespace vrun {
namespace {

// Throws an Error shaped like Node's own fs errors (code, errno, syscall, path), so callers can
// branch on err.code exactly as they do for node:fs.
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "EUNKNOWN";
  Napi::Error e = Napi::Error::New(env, code + ": " + strerror(err) + ", " + syscall + " '" + path + "'");
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("path", Napi::String::New(env, path));
  e.ThrowAsJavaScriptException();
}

bool ArgsOk(const Napi::CallbackInfo& info, const char* usage, std::initializer_list<napi_valuetype> types) {
  size_t i = 0;
  for (napi_valuetype t : types) {
    if (info.Length() <= i || info[i].Type() != t) {
      Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
      return false;
    }
    i++;
  }
  return true;
}

// fsMknod(path, mode, major, minor): mode carries the file type bits (S_IFCHR, S_IFIFO, ...).
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsMknod(path: string, mode: number, major: number, minor: number)",
              {napi_string, napi_number, napi_number, napi_number})) {
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (mknod(path.c_str(), mode, dev) != 0) ThrowErrno(env, errno, "mknod", path);
  return env.Undefined();
}

// fsLsetxattr(path, name, value): never follows a final symlink.
Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLsetxattr(path: string, name: string, value: Buffer)", {napi_string, napi_string}) ||
      info.Length() < 3 || !info[2].IsBuffer()) {
    if (!env.IsExceptionPending()) {
      Napi::TypeError::New(env, "fsLsetxattr(path: string, name: string, value: Buffer)").ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  if (lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) {
    ThrowErrno(env, errno, "lsetxattr", path);
  }
  return env.Undefined();
}

// fsLgetxattr(path, name): the value, or null when the attribute is absent.
Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLgetxattr(path: string, name: string)", {napi_string, napi_string})) return env.Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENODATA) return env.Null();
      ThrowErrno(env, errno, "lgetxattr", path);
      return env.Undefined();
    }
    std::vector<uint8_t> buf(static_cast<size_t>(size));
    ssize_t got = lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (got >= 0) return Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(got));
    if (errno != ERANGE) {
      ThrowErrno(env, errno, "lgetxattr", path);
      return env.Undefined();
    }
  }
  ThrowErrno(env, ERANGE, "lgetxattr", path);
  return env.Undefined();
}

// fsLlistxattr(path): attribute names.
Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLlistxattr(path: string)", {napi_string})) return env.Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) {
      ThrowErrno(env, errno, "llistxattr", path);
      return env.Undefined();
    }
    std::vector<char> buf(static_cast<size_t>(size));
    ssize_t got = llistxattr(path.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) {
      ThrowErrno(env, errno, "llistxattr", path);
      return env.Undefined();
    }
    Napi::Array names = Napi::Array::New(env);
    uint32_t n = 0;
    for (ssize_t i = 0; i < got;) {
      std::string one(buf.data() + i);
      i += static_cast<ssize_t>(one.size()) + 1;
      if (!one.empty()) names.Set(n++, Napi::String::New(env, one));
    }
    return names;
  }
  ThrowErrno(env, ERANGE, "llistxattr", path);
  return env.Undefined();
}

// fsFlock(fd, exclusive, wait): never blocks the event loop unless asked to; returns false when
// the lock is held elsewhere and wait is false. The kernel drops the lock when the process dies,
// which is what makes it safe against killed commands.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsFlock(fd: number, exclusive: boolean, wait: boolean)", {napi_number, napi_boolean, napi_boolean})) {
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH;
  if (!info[2].As<Napi::Boolean>().Value()) op |= LOCK_NB;
  while (flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "flock", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// fsFunlock(fd)
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsFunlock(fd: number)", {napi_number})) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (flock(fd, LOCK_UN) != 0) ThrowErrno(env, errno, "flock", "fd " + std::to_string(fd));
  return env.Undefined();
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("fsMknod", Napi::Function::New(env, Mknod));
  exports.Set("fsLsetxattr", Napi::Function::New(env, Lsetxattr));
  exports.Set("fsLgetxattr", Napi::Function::New(env, Lgetxattr));
  exports.Set("fsLlistxattr", Napi::Function::New(env, Llistxattr));
  exports.Set("fsFlock", Napi::Function::New(env, Flock));
  exports.Set("fsFunlock", Napi::Function::New(env, Funlock));
}

}  // namespace vrun
