#include "process_ops.h"

#include "errno_error.h"

#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace vrun {
namespace {

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

// What the spawned child reads from the parent's memory (CLONE_VM): nothing in it may be allocated by the child.
struct SpawnArgs {
  const char* file;
  char* const* argv;
  int stdio[3];
  int err;           // set by the child when a step before the program runs fails
  const char* step;  // which one: the parent names it in its error
};

// The kernel's struct sigaction, for raw rt_sigaction calls: glibc's sigaction refuses its two internal
// signals (32, 33), which must be reset too or the program (and the container after it) starts with them ignored.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

// Runs in the child, on its own stack, sharing the parent's memory until exec: system calls only.
int SpawnChild(void* p) {
  auto* a = static_cast<SpawnArgs*>(p);
  KernelSigaction dfl = {SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig <= 64; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(uint64_t));
  }
  // Every step before exec must succeed: a program started with the agent's fds as its stdio could write
  // into the agent's own channels. A failing step ends the child with 127, and the parent reports the step.
  auto fail = [a](const char* step) {
    a->err = errno;
    a->step = step;
    _exit(127);
  };
  // A source fd below 3 could be overwritten by an earlier dup2: move those out of the way first.
  for (int i = 0; i < 3; i++) {
    if (a->stdio[i] >= 0 && a->stdio[i] < 3 && a->stdio[i] != i) {
      a->stdio[i] = fcntl(a->stdio[i], F_DUPFD_CLOEXEC, 3);
      if (a->stdio[i] < 0) fail("fcntl");
    }
  }
  for (int i = 0; i < 3; i++) {
    int fd = a->stdio[i];
    if (fd < 0) {
      fd = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (fd < 0) fail("open /dev/null");
    }
    if (fd == i ? fcntl(fd, F_SETFD, 0) != 0 : dup2(fd, i) < 0) fail("dup2");
  }
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof(none));
  execvp(a->file, a->argv);
  fail("execvp");
  return 127;
}

// procSpawn(file, argv, stdio): pid. For crun, which the agent runs several times per container. Node's spawn
// forks the whole agent: its page tables are copied, and the cost grows with the heap (measured: 6.5-10 ms per
// /bin/true from Node, 2 ms without a fork of a large process; far more under TCG, where every copied page
// table entry is emulated). clone(CLONE_VM|CLONE_VFORK) copies nothing. Not posix_spawn: glibc's leaves its
// internal signals 32 and 33 ignored in the child, and that survives exec. The child gets stdio[i] as fd i
// (-1: /dev/null), default dispositions for every signal and an empty mask; every other fd of the agent is
// close-on-exec already (libuv and Node open them so). PATH is searched. The caller reaps the child (Reaper).
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "procSpawn(file: string, argv: string[], stdio: [number, number, number])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string file = info[0].As<Napi::String>().Utf8Value();
  Napi::Array argvIn = info[1].As<Napi::Array>();
  Napi::Array stdioIn = info[2].As<Napi::Array>();
  if (file.empty() || file.find('\0') != std::string::npos || argvIn.Length() == 0 || argvIn.Length() > 4096 || stdioIn.Length() != 3) {
    Napi::RangeError::New(env, "procSpawn: a file name, 1 to 4096 arguments and three stdio fds are needed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<std::string> args;
  for (uint32_t i = 0; i < argvIn.Length(); i++) {
    Napi::Value v = argvIn.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "procSpawn: every argument must be a string").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    args.push_back(v.As<Napi::String>().Utf8Value());
    if (args.back().find('\0') != std::string::npos) {
      Napi::RangeError::New(env, "procSpawn: an argument contains a NUL byte").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  SpawnArgs a{};
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value v = stdioIn.Get(i);
    a.stdio[i] = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -2;
    if (a.stdio[i] < -1) {
      Napi::RangeError::New(env, "procSpawn: stdio entries must be fds or -1").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  a.file = file.c_str();
  a.argv = argv.data();

  constexpr size_t kStack = 256 * 1024;  // execvp's PATH search builds names on the stack
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap");
    return env.Undefined();
  }
  // Every signal blocked (the internal ones too, hence the raw call) until the child has reset its
  // dispositions: a handler of ours must never run in the child, which shares our memory.
  uint64_t all = ~uint64_t{0};
  uint64_t old = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(all));
  pid_t pid = clone(SpawnChild, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  int cloneErr = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof(old));
  munmap(stack, kStack);
  if (pid < 0) {
    ThrowErrno(env, cloneErr, "clone");
    return env.Undefined();
  }
  if (a.err != 0) {
    // The child failed before its program ran and has exited with 127; collect it here, it is nobody else's.
    waitpid(pid, nullptr, 0);
    ThrowErrno(env, a.err, a.step);
    return env.Undefined();
  }
  return Napi::Number::New(env, pid);
}

}  // namespace

void InitProcessOps(Napi::Env env, Napi::Object exports) {
  exports.Set("procSetChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("procWaitPid", Napi::Function::New(env, WaitPid));
  exports.Set("ttySetWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("procPipe", Napi::Function::New(env, Pipe));
  exports.Set("procSpawn", Napi::Function::New(env, Spawn));
}

}  // namespace vrun
