#include "process_ops.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <string>

namespace vrun {
namespace {

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "EUNKNOWN";
  Napi::Error e = Napi::Error::New(env, code + ": " + strerror(err) + ", " + syscall);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

// procSetChildSubreaper(): orphaned descendants are reparented to this process instead of PID 1.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) ThrowErrno(env, errno, "prctl(PR_SET_CHILD_SUBREAPER)");
  return env.Undefined();
}

// procWaitPid(pid): null while the child runs; { code, signal } once it exited (and is reaped).
// Throws ECHILD when pid is not (or no longer) a child.
Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "procWaitPid(pid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  if (pid <= 0) {
    Napi::RangeError::New(env, "procWaitPid: pid must be positive").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    ThrowErrno(env, errno, "waitpid");
    return env.Undefined();
  }
  if (r == 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  if (WIFEXITED(status)) {
    out.Set("code", Napi::Number::New(env, WEXITSTATUS(status)));
    out.Set("signal", Napi::Number::New(env, 0));
  } else if (WIFSIGNALED(status)) {
    out.Set("code", Napi::Number::New(env, 128 + WTERMSIG(status)));
    out.Set("signal", Napi::Number::New(env, WTERMSIG(status)));
  } else {
    return env.Null();
  }
  return out;
}

// ttySetWinsize(fd, rows, cols): TIOCSWINSZ on a pty master; the foreground process group gets SIGWINCH.
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "ttySetWinsize(fd: number, rows: number, cols: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t rows = info[1].As<Napi::Number>().Uint32Value();
  uint32_t cols = info[2].As<Napi::Number>().Uint32Value();
  if (rows > 0xffff || cols > 0xffff) {
    Napi::RangeError::New(env, "ttySetWinsize: rows and cols must fit in 16 bits").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct winsize ws = {};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) != 0) ThrowErrno(env, errno, "ioctl(TIOCSWINSZ)");
  return env.Undefined();
}

// procPipe(sizeBytes): [readFd, writeFd], both close-on-exec. Real pipes for container stdio: a socketpair
// (what Node's spawn gives) breaks programs that open /dev/stdout. A larger pipe lets a fast writer get
// ahead of the reader, so the reader's reads are larger and fewer. The size is best effort.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ThrowErrno(env, errno, "pipe2");
    return env.Undefined();
  }
  if (info.Length() > 0 && info[0].IsNumber()) {
    int size = info[0].As<Napi::Number>().Int32Value();
    if (size > 0) (void)fcntl(fds[1], F_SETPIPE_SZ, size);
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(uint32_t{0}, Napi::Number::New(env, fds[0]));
  out.Set(uint32_t{1}, Napi::Number::New(env, fds[1]));
  return out;
}

}  // namespace

void InitProcessOps(Napi::Env env, Napi::Object exports) {
  exports.Set("procSetChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("procWaitPid", Napi::Function::New(env, WaitPid));
  exports.Set("ttySetWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("procPipe", Napi::Function::New(env, Pipe));
}

}  // namespace vrun
