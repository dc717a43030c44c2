#pragma once
#include <napi.h>

#include <string>

namespace vrun {
// A failed system call as a JS Error shaped like Node's own (node:fs, libuv), so callers branch on err.code
// exactly as they do there: message "<CODE>: <strerror>, <syscall>" (then " '<path>'" when there is a path),
// code (the errno's name, "EUNKNOWN" when it has none), errno (negated, as Node reports it), syscall, path.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall);
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& path);
void ThrowErrno(Napi::Env env, int err, const std::string& syscall);
void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& path);

// The same without the errno property, which fd_passing.cc's errors (fdRecvFromListener) have never carried.
Napi::Error ErrnoErrorWithoutNumber(Napi::Env env, int err, const std::string& syscall);
}  // namespace vrun
