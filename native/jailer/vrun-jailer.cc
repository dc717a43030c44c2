// vrun-jailer: starts one program (QEMU) confined the way Firecracker's jailer confines its VMM.
//
//   vrun-jailer [options] -- PROGRAM [ARGS...]
//
//   --uid N --gid N         credentials to run PROGRAM with (both required, non-zero, unless --userns-fd)
//   --userns-fd N           instead of --uid/--gid: run PROGRAM as uid/gid 0 of the user namespace open on fd N
//                           (which must map neither uid nor gid 0 to host id 0): a non-root host uid with
//                           capabilities only inside that namespace (virtiofsd). The jail's mounts then are
//                           slaves of the host's (mounts made later under a bound path show in the jail) and
//                           the bounding set is left to PROGRAM, whose capabilities reach no further than the
//                           namespace
//   --idmap-bind PATH       (with --userns-fd) bind PATH and the mounts under it id-mapped with that namespace's
//                           mapping, nosuid,nodev, at the same path in the jail: files host uid N owns are N
//                           to PROGRAM. Every filesystem under PATH must support id-mapped mounts
//   --listen FD:PATH        create a unix stream socket listening at PATH (0600, owned by the caller; PATH must
//                           not exist) and hand it to PROGRAM as fd FD (3-255); PATH appears once the jail is
//                           built, so a caller waiting for it learns of a failed jail from the jailer's exit
//   --groups G1,G2          supplementary groups (e.g. kvm); default none
//   --root DIR              an existing, empty, root-owned directory (no symlinks on its path); the jail's
//                           tmpfs root is mounted on it in a private mount namespace (required)
//   --ro-bind PATH          bind PATH (file or directory) read-only at the same path in the jail
//   --rw-bind PATH          bind PATH read-write at the same path in the jail
//   --dev NAME              bind /dev/NAME into the jail's /dev (null, zero and urandom are always there);
//                           NAME may have one directory level (net/tun)
//   --symlink TARGET:LINK   create the symlink LINK -> TARGET in the jail (merged-/usr: /lib -> usr/lib)
//   --proc                  mount a fresh /proc (of the jail's pid namespace) in the jail
//   --hostname NAME         the jail's hostname (its own UTS namespace either way)
//   --netns new|PATH        a fresh, empty network namespace (the default) or join the one at PATH
//   --tap FD:NAME           open the existing persistent tap NAME in the --netns PATH namespace (as root, before
//                           the credentials drop) and hand it to PROGRAM as fd FD (3-255), attached with
//                           IFF_TAP|IFF_NO_PI|IFF_VNET_HDR: PROGRAM needs neither /dev/net/tun nor the tap's
//                           ownership, and can reach no other tap
//   --cgroup DIR            join cgroup DIR (write our pid to DIR/cgroup.procs) before anything else
//   --rlimit NAME=SOFT[:HARD]  NAME: nofile, nproc, fsize, core, memlock, as; a value or "unlimited"
//   --env KEY=VALUE         PROGRAM's environment (empty by default)
//   --keep-fd N             pass fd N (> 2) through to PROGRAM; every other fd above 2 is closed
//
// Every bind mount is nosuid,nodev (device nodes under /dev keep dev but are noexec); once built, the whole
// root is read-only. PROGRAM must be an absolute path inside the jail.
//
// The jailer forks once: the child is pid 1 of a new pid namespace and becomes PROGRAM; the parent stays
// outside, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it and ends as it ends: with its exit
// code, or by the same signal (so a caller sees "killed by SIGKILL" whether it killed the jailer or PROGRAM).
// Killing the jailer, even with SIGKILL, kills PROGRAM (parent-death signal).
//
// Errors: one line "vrun-jailer: <what failed>: <reason>" on stderr and exit status 125.

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/if_tun.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int kJailerFailed = 125;
// Appended to a --listen path for the name its socket is bound under until the jail is built.
const std::string kTempSuffix = ".jailing";

// Listening sockets bound under a temporary name, not yet published at their --listen path: removed if the
// jailer fails (by directory fd: after pivot_root their paths are out of reach).
struct Unpublished {
  int dirFd;
  std::string name;
};
std::vector<Unpublished> unpublished;

[[noreturn]] void fail(const std::string& what, const std::string& why) {
  std::fprintf(stderr, "vrun-jailer: %s: %s\n", what.c_str(), why.c_str());
  for (const auto& u : unpublished) unlinkat(u.dirFd, u.name.c_str(), 0);
  _exit(kJailerFailed);
}

[[noreturn]] void failErrno(const std::string& what) { fail(what, std::strerror(errno)); }

struct Rlimit {
  int resource;
  rlimit value;
};

struct Bind {
  std::string path;
  bool writable;
};

struct Tap {
  int fd;
  std::string name;
};

struct Listen {
  int fd;
  std::string path;
};

struct Options {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string root;
  std::vector<Bind> binds;
  std::vector<std::string> devs = {"null", "zero", "urandom"};
  std::vector<std::pair<std::string, std::string>> symlinks;  // target, link
  bool proc = false;
  std::string hostname;
  std::string netns = "new";
  std::vector<std::string> cgroups;
  std::vector<Rlimit> rlimits;
  std::vector<std::string> env;
  std::vector<int> keepFds;
  std::vector<Tap> taps;
  int usernsFd = -1;
  std::vector<std::string> idmapBinds;
  std::vector<Listen> listens;
  std::vector<std::string> program;
};

// PROGRAM (QEMU) needs a handful at most; a bound keeps them all below any RLIMIT_NOFILE in use.
constexpr int kMaxTapFd = 255;

// ---- argument parsing and validation: everything is checked before any state changes -------------------

unsigned long parseNumber(const std::string& opt, const std::string& s, unsigned long max) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) fail(opt, "\"" + s + "\" is not a number");
  errno = 0;
  unsigned long v = std::strtoul(s.c_str(), nullptr, 10);
  if (errno != 0 || v > max) fail(opt, "\"" + s + "\" is out of range");
  return v;
}

rlim_t parseLimit(const std::string& opt, const std::string& s) {
  if (s == "unlimited" || s == "infinity") return RLIM_INFINITY;
  return parseNumber(opt, s, ULONG_MAX - 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// The jail mirrors host paths one to one, so a path given with symlinks or dot components would land somewhere
// else inside than outside.
void requireCanonical(const std::string& opt, const std::string& path) {
  if (path.empty() || path[0] != '/') fail(opt, "\"" + path + "\" is not an absolute path");
  if (path == "/") fail(opt, "cannot use / itself");
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) failErrno(opt + " " + path);
  std::string r(real);
  std::free(real);
  if (r != path) fail(opt + " " + path, "not a canonical path (it resolves to " + r + "): name " + r + " instead");
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

void checkRoot(const std::string& root) {
  requireCanonical("--root", root);
  struct stat st {};
  if (lstat(root.c_str(), &st) != 0) failErrno("--root " + root);
  if (!S_ISDIR(st.st_mode)) fail("--root " + root, "not a directory");
  if (st.st_uid != 0) fail("--root " + root, "not owned by root");
  if ((st.st_mode & 022) != 0) fail("--root " + root, "writable by group or others");
  DIR* d = opendir(root.c_str());
  if (d == nullptr) failErrno("--root " + root);
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) fail("--root " + root, "not empty");
  }
  closedir(d);
}

int rlimitResource(const std::string& name) {
  if (name == "nofile") return RLIMIT_NOFILE;
  if (name == "nproc") return RLIMIT_NPROC;
  if (name == "fsize") return RLIMIT_FSIZE;
  if (name == "core") return RLIMIT_CORE;
  if (name == "memlock") return RLIMIT_MEMLOCK;
  if (name == "as") return RLIMIT_AS;
  fail("--rlimit", "unknown limit \"" + name + "\" (expected nofile, nproc, fsize, core, memlock or as)");
}

Options parse(int argc, char** argv) {
  Options o;
  bool uidSet = false, gidSet = false;
  int i = 1;
  auto value = [&](const std::string& opt) -> std::string {
    if (i + 1 >= argc) fail(opt, "missing value");
    return argv[++i];
  };
  for (; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") {
      i++;
      break;
    } else if (a == "--uid") {
      o.uid = static_cast<uid_t>(parseNumber(a, value(a), UINT_MAX - 1));
      uidSet = true;
    } else if (a == "--gid") {
      o.gid = static_cast<gid_t>(parseNumber(a, value(a), UINT_MAX - 1));
      gidSet = true;
    } else if (a == "--groups") {
      for (const auto& g : split(value(a), ',')) {
        gid_t v = static_cast<gid_t>(parseNumber(a, g, UINT_MAX - 1));
        if (v == 0) fail(a, "group 0 is not allowed");
        o.groups.push_back(v);
      }
    } else if (a == "--root") {
      o.root = value(a);
    } else if (a == "--ro-bind" || a == "--rw-bind") {
      o.binds.push_back({value(a), a == "--rw-bind"});
    } else if (a == "--dev") {
      o.devs.push_back(value(a));
    } else if (a == "--symlink") {
      std::string v = value(a);
      size_t colon = v.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) fail(a, "\"" + v + "\" is not TARGET:LINK");
      o.symlinks.emplace_back(v.substr(0, colon), v.substr(colon + 1));
    } else if (a == "--proc") {
      o.proc = true;
    } else if (a == "--hostname") {
      o.hostname = value(a);
    } else if (a == "--netns") {
      o.netns = value(a);
    } else if (a == "--tap") {
      std::string v = value(a);
      size_t colon = v.find(':');
      if (colon == std::string::npos) fail(a, "\"" + v + "\" is not FD:NAME");
      int fd = static_cast<int>(parseNumber(a, v.substr(0, colon), kMaxTapFd));
      if (fd <= 2) fail(a, "\"" + v + "\": fds 0-2 are stdio");
      o.taps.push_back({fd, v.substr(colon + 1)});
    } else if (a == "--userns-fd") {
      o.usernsFd = static_cast<int>(parseNumber(a, value(a), INT_MAX));
      if (o.usernsFd <= 2) fail(a, "fds 0-2 are stdio");
      int type = ioctl(o.usernsFd, NS_GET_NSTYPE);
      if (type < 0) failErrno(a + " " + std::to_string(o.usernsFd) + ": NS_GET_NSTYPE");
      if (type != CLONE_NEWUSER) fail(a, "fd " + std::to_string(o.usernsFd) + " is not a user namespace");
    } else if (a == "--idmap-bind") {
      o.idmapBinds.push_back(value(a));
    } else if (a == "--listen") {
      std::string v = value(a);
      size_t colon = v.find(':');
      if (colon == std::string::npos) fail(a, "\"" + v + "\" is not FD:PATH");
      int fd = static_cast<int>(parseNumber(a, v.substr(0, colon), kMaxTapFd));
      if (fd <= 2) fail(a, "\"" + v + "\": fds 0-2 are stdio");
      o.listens.push_back({fd, v.substr(colon + 1)});
    } else if (a == "--cgroup") {
      o.cgroups.push_back(value(a));
    } else if (a == "--rlimit") {
      std::string v = value(a);
      size_t eq = v.find('=');
      if (eq == std::string::npos) fail(a, "\"" + v + "\" is not NAME=SOFT[:HARD]");
      int res = rlimitResource(v.substr(0, eq));
      auto parts = split(v.substr(eq + 1), ':');
      if (parts.size() > 2) fail(a, "\"" + v + "\" is not NAME=SOFT[:HARD]");
      rlimit lim{parseLimit(a, parts[0]), parseLimit(a, parts.size() == 2 ? parts[1] : parts[0])};
      if (lim.rlim_cur > lim.rlim_max) fail(a, "\"" + v + "\": the soft limit is above the hard one");
      o.rlimits.push_back({res, lim});
    } else if (a == "--env") {
      std::string v = value(a);
      if (v.find('=') == std::string::npos || v[0] == '=') fail(a, "\"" + v + "\" is not KEY=VALUE");
      o.env.push_back(v);
    } else if (a == "--keep-fd") {
      int fd = static_cast<int>(parseNumber(a, value(a), INT_MAX));
      if (fd <= 2) fail(a, "fds 0-2 are always kept");
      if (fcntl(fd, F_GETFD) < 0) failErrno(a + " " + std::to_string(fd));
      o.keepFds.push_back(fd);
    } else {
      fail(a, a.rfind("--", 0) == 0 ? "unknown option" : "unexpected argument (the program goes after --)");
    }
  }
  for (; i < argc; i++) o.program.emplace_back(argv[i]);

  if (o.usernsFd >= 0) {
    if (uidSet || gidSet) fail("--uid/--gid", "not with --userns-fd (PROGRAM runs as the namespace's uid 0)");
  } else {
    if (!uidSet || !gidSet) fail("--uid/--gid", "both are required");
    if (o.uid == 0 || o.gid == 0) fail("--uid/--gid", "must not be 0");
    if (!o.idmapBinds.empty()) fail("--idmap-bind", "needs --userns-fd");
  }
  if (o.root.empty()) fail("--root", "required");
  checkRoot(o.root);
  if (o.program.empty()) fail("program", "missing (give it after --)");
  if (o.program[0].empty() || o.program[0][0] != '/') fail("program", "\"" + o.program[0] + "\" is not an absolute path");

  // Every entry owns its path in the jail: one under another would create mount points through a bind mount,
  // i.e. in the host's file system.
  std::vector<std::string> taken = {"/dev"};
  if (o.proc) taken.emplace_back("/proc");
  auto claim = [&](const std::string& opt, const std::string& p) {
    for (const auto& t : taken) {
      if (under(p, t) || under(t, p)) fail(opt + " " + p, "overlaps " + t + " in the jail");
    }
    taken.push_back(p);
  };
  for (const auto& b : o.binds) {
    const char* opt = b.writable ? "--rw-bind" : "--ro-bind";
    requireCanonical(opt, b.path);
    struct stat st {};
    if (stat(b.path.c_str(), &st) != 0) failErrno(std::string(opt) + " " + b.path);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISSOCK(st.st_mode)) fail(std::string(opt) + " " + b.path, "not a file or directory");
    claim(opt, b.path);
  }
  for (const auto& p : o.idmapBinds) {
    requireCanonical("--idmap-bind", p);
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) failErrno("--idmap-bind " + p);
    if (!S_ISDIR(st.st_mode)) fail("--idmap-bind " + p, "not a directory");
    claim("--idmap-bind", p);
  }
  for (size_t l = 0; l < o.listens.size(); l++) {
    const Listen& li = o.listens[l];
    const std::string opt = "--listen " + std::to_string(li.fd) + ":" + li.path;
    // Room for the temporary name it is bound under first (PATH + kTempSuffix).
    if (li.path.empty() || li.path[0] != '/' || li.path.size() + kTempSuffix.size() >= sizeof(sockaddr_un{}.sun_path)) fail(opt, "not an absolute path short enough for a socket");
    requireCanonical(opt, li.path.substr(0, li.path.rfind('/')));
    struct stat st {};
    if (lstat(li.path.c_str(), &st) == 0 || errno != ENOENT) fail(opt, "the path exists already");
    auto clash = [&](int fd) { return fd == li.fd; };
    if (std::any_of(o.keepFds.begin(), o.keepFds.end(), clash) || li.fd == o.usernsFd) fail(opt, "fd " + std::to_string(li.fd) + " is taken");
    for (const auto& t : o.taps) {
      if (t.fd == li.fd) fail(opt, "fd " + std::to_string(li.fd) + " is also a --tap");
    }
    for (size_t m = 0; m < l; m++) {
      if (o.listens[m].fd == li.fd) fail(opt, "fd " + std::to_string(li.fd) + " is given twice");
    }
  }
  for (const auto& [target, link] : o.symlinks) {
    if (link[0] != '/' || link == "/" || link.find("/.") != std::string::npos) fail("--symlink " + link, "the link must be a plain absolute path");
    claim("--symlink", link);
  }
  std::sort(o.devs.begin(), o.devs.end());
  o.devs.erase(std::unique(o.devs.begin(), o.devs.end()), o.devs.end());
  for (const auto& d : o.devs) {
    // One directory level at most (net/tun), each part plain: no dot components, nothing outside /dev.
    auto parts = split(d, '/');
    bool plain = parts.size() <= 2;
    for (const auto& part : parts) plain = plain && !part.empty() && part.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string::npos;
    if (!plain) fail("--dev " + d, "not a plain device name");
    struct stat st {};
    if (stat(("/dev/" + d).c_str(), &st) != 0) failErrno("--dev /dev/" + d);
    if (!S_ISCHR(st.st_mode)) fail("--dev /dev/" + d, "not a character device");
  }
  if (o.netns != "new") {
    struct stat st {};
    if (o.netns.empty() || o.netns[0] != '/') fail("--netns", "expected \"new\" or an absolute path");
    if (stat(o.netns.c_str(), &st) != 0) failErrno("--netns " + o.netns);
  }
  for (size_t t = 0; t < o.taps.size(); t++) {
    const Tap& tap = o.taps[t];
    const std::string opt = "--tap " + std::to_string(tap.fd) + ":" + tap.name;
    // A fresh namespace has no taps; and opening one of the host's own is exactly what must not happen.
    if (o.netns == "new") fail(opt, "needs --netns PATH (the namespace the tap is in)");
    // The kernel's own rule for interface names (dev_valid_name), narrowed to what vrun makes.
    if (tap.name.empty() || tap.name.size() >= IFNAMSIZ || tap.name[0] == '.' || tap.name[0] == '-' ||
        tap.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != std::string::npos) {
      fail(opt, "not a valid interface name");
    }
    if (std::find(o.keepFds.begin(), o.keepFds.end(), tap.fd) != o.keepFds.end()) fail(opt, "fd " + std::to_string(tap.fd) + " is also a --keep-fd");
    for (size_t u = 0; u < t; u++) {
      if (o.taps[u].fd == tap.fd) fail(opt, "fd " + std::to_string(tap.fd) + " is given twice");
      if (o.taps[u].name == tap.name) fail(opt, "tap " + tap.name + " is given twice");
    }
  }
  for (const auto& c : o.cgroups) {
    if (c.empty() || c[0] != '/') fail("--cgroup " + c, "not an absolute path");
    if (access((c + "/cgroup.procs").c_str(), W_OK) != 0) failErrno("--cgroup " + c + "/cgroup.procs");
  }
  return o;
}

// ---- the child: builds the root and becomes PROGRAM --------------------------------------------------------

void mkdirs(const std::string& path) {
  for (size_t at = path.find('/', 1);; at = path.find('/', at + 1)) {
    std::string part = path.substr(0, at);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) failErrno("mkdir " + part);
    if (at == std::string::npos) return;
  }
}

void makeMountPoint(const std::string& inJail, bool dir) {
  mkdirs(inJail.substr(0, inJail.rfind('/')));
  if (dir) {
    if (mkdir(inJail.c_str(), 0755) != 0) failErrno("mkdir " + inJail);
    return;
  }
  int fd = open(inJail.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) failErrno("create " + inJail);
  close(fd);
}

// A bind mount's flags come from its own remount; the source's noexec and atime flags are kept so the jail
// never grants more than the host mount does.
void bindInto(const std::string& src, const std::string& dst, unsigned long extra) {
  if (mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) failErrno("bind " + src);
  struct statvfs sv {};
  if (statvfs(dst.c_str(), &sv) != 0) failErrno("statvfs " + dst);
  unsigned long keep = 0;
  if (sv.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) keep |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) keep |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) keep |= MS_RELATIME;
  if (sv.f_flag & ST_NODEV) keep |= MS_NODEV;
  if (sv.f_flag & ST_RDONLY) keep |= MS_RDONLY;
  if (mount(nullptr, dst.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | keep | extra, nullptr) != 0) failErrno("remount " + src);
}

// A recursive id-mapped copy of src, made while detached (so no copy of it is ever seen without the mapping),
// moved to dst. It stays a slave of src: mounts the host makes under src later show in the jail.
void idmapBindInto(const std::string& src, const std::string& dst, int usernsFd) {
  int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, src.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW));
  if (tree < 0) failErrno("open_tree " + src);
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.userns_fd = static_cast<uint64_t>(usernsFd);
  attr.propagation = MS_SLAVE;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    failErrno("--idmap-bind " + src + ": id-mapping it (every filesystem under it must support id-mapped mounts)");
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) failErrno("move_mount " + dst);
  close(tree);
}

void buildRoot(const Options& o) {
  const std::string& r = o.root;
  if (mount("vrun-jail", r.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m,nr_inodes=4096") != 0) failErrno("mount tmpfs on " + r);
  for (const auto& b : o.binds) {
    struct stat st {};
    if (stat(b.path.c_str(), &st) != 0) failErrno("stat " + b.path);
    makeMountPoint(r + b.path, S_ISDIR(st.st_mode));
    bindInto(b.path, r + b.path, MS_NODEV | (b.writable ? 0 : MS_RDONLY));
  }
  for (const auto& p : o.idmapBinds) {
    makeMountPoint(r + p, true);
    idmapBindInto(p, r + p, o.usernsFd);
  }
  if (mkdir((r + "/dev").c_str(), 0755) != 0) failErrno("mkdir " + r + "/dev");
  for (const auto& d : o.devs) {
    makeMountPoint(r + "/dev/" + d, false);
    // Read-only does not stop writes to a device node (only to files on the mount), it stops chmod and the like.
    bindInto("/dev/" + d, r + "/dev/" + d, MS_NOEXEC | MS_RDONLY);
  }
  for (const auto& [target, link] : o.symlinks) {
    mkdirs((r + link).substr(0, (r + link).rfind('/')));
    if (symlink(target.c_str(), (r + link).c_str()) != 0) failErrno("symlink " + link);
  }
  if (o.proc) {
    if (mkdir((r + "/proc").c_str(), 0555) != 0) failErrno("mkdir " + r + "/proc");
    if (mount("proc", (r + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) failErrno("mount /proc");
  }
}

void enterRoot(const std::string& root) {
  if (chdir(root.c_str()) != 0) failErrno("chdir " + root);
  // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves nothing of the host reachable.
  if (syscall(SYS_pivot_root, ".", ".") != 0) failErrno("pivot_root " + root);
  if (umount2(".", MNT_DETACH) != 0) failErrno("detach the old root");
  if (chdir("/") != 0) failErrno("chdir /");
  if (mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) failErrno("remount / read-only");
}

// Fails unless every range of /proc/self/{uid,gid}_map (read inside the namespace: "inside outside count")
// leaves host id 0 out: PROGRAM's uid 0 must not be host root. procSelf: /proc/self, opened before the jail
// root (which may have no /proc) replaced the host's.
void checkMapExcludesRoot(int procSelf, const char* name) {
  const std::string file = std::string("/proc/self/") + name;
  int fd = openat(procSelf, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) failErrno("open " + file);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fd);
  std::istringstream in(text);
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    unsigned long inside = 0, outside = 0, count = 0;
    if (!(fields >> inside >> outside >> count)) continue;
    any = true;
    if (outside == 0 && count > 0) fail("--userns-fd", file + " maps " + std::to_string(inside) + " to host id 0");
  }
  if (!any) fail("--userns-fd", file + " is empty: the namespace has no mapping");
}

void enterUserns(const Options& o, int procSelf) {
  for (const auto& l : o.rlimits) {
    if (setrlimit(l.resource, &l.value) != 0) failErrno("setrlimit");
  }
  if (setns(o.usernsFd, CLONE_NEWUSER) != 0) failErrno("setns(--userns-fd)");
  close(o.usernsFd);
  checkMapExcludesRoot(procSelf, "uid_map");
  checkMapExcludesRoot(procSelf, "gid_map");
  close(procSelf);
  if (setgroups(0, nullptr) != 0) failErrno("setgroups");
  if (setresgid(0, 0, 0) != 0) failErrno("setresgid");
  if (setresuid(0, 0, 0) != 0) failErrno("setresuid");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failErrno("PR_SET_NO_NEW_PRIVS");
}

std::string baseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Bound and listening before PROGRAM runs, under a temporary name in PATH's directory (bound as host root, in
// the host's mount namespace); publishListeners renames it to PATH once the jail is built. So the path appears
// only when nothing but the credential drop and execve is left: a caller that waits for it sees a jail that
// could not be built (a share that cannot be id-mapped, say) as the jailer's exit, not as a socket nobody serves.
void openListener(const Listen& li) {
  const std::string what = "--listen " + std::to_string(li.fd) + ":" + li.path;
  const std::string dir = li.path.substr(0, std::max<size_t>(li.path.rfind('/'), 1));
  int opened = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (opened < 0) failErrno(what + ": open " + dir);
  // Above every number a tap or listener goes to (dup2 would replace it there).
  int dirFd = fcntl(opened, F_DUPFD_CLOEXEC, kMaxTapFd + 1);
  if (dirFd < 0) failErrno(what + ": move the directory's fd");
  close(opened);
  const std::string temp = li.path + kTempSuffix;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) failErrno(what + ": socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, temp.data(), temp.size());
  mode_t was = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(was);
  if (rc != 0) failErrno(what + ": bind " + temp);
  unpublished.push_back({dirFd, baseName(temp)});
  if (listen(fd, 16) != 0) failErrno(what + ": listen");
  if (fd == li.fd) {
    if (fcntl(fd, F_SETFD, 0) != 0) failErrno(what + ": F_SETFD");
    return;
  }
  if (dup2(fd, li.fd) < 0) failErrno(what + ": dup2");
  close(fd);
}

// Renames each listener to its --listen path (never replacing anything there) and forgets its directory.
void publishListeners() {
  for (const auto& u : unpublished) {
    const std::string name = u.name.substr(0, u.name.size() - kTempSuffix.size());
    if (syscall(SYS_renameat2, u.dirFd, u.name.c_str(), u.dirFd, name.c_str(), RENAME_NOREPLACE) != 0) failErrno("--listen: publish " + name);
  }
  for (const auto& u : unpublished) close(u.dirFd);
  unpublished.clear();
}

void dropCredentials(const Options& o, int procSelf) {
  if (o.usernsFd >= 0) {
    enterUserns(o, procSelf);
    return;
  }
  for (const auto& l : o.rlimits) {
    if (setrlimit(l.resource, &l.value) != 0) failErrno("setrlimit");
  }
  // The bounding set can only shrink while we still have CAP_SETPCAP; with no_new_privs it is belt and braces.
  for (int cap = 0; cap < 64; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;
      failErrno("drop capability " + std::to_string(cap));
    }
  }
  if (setgroups(o.groups.size(), o.groups.data()) != 0) failErrno("setgroups");
  if (setresgid(o.gid, o.gid, o.gid) != 0) failErrno("setresgid");
  if (setresuid(o.uid, o.uid, o.uid) != 0) failErrno("setresuid");
  uid_t ru, eu, su;
  if (getresuid(&ru, &eu, &su) != 0 || ru != o.uid || eu != o.uid || su != o.uid) fail("setresuid", "the uid did not change");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failErrno("PR_SET_NO_NEW_PRIVS");
}

void closeFds(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int from = 3;
  for (int fd : keep) {
    if (static_cast<unsigned int>(fd) > from && syscall(SYS_close_range, from, fd - 1, 0) != 0) failErrno("close_range");
    from = fd + 1;
  }
  if (syscall(SYS_close_range, from, ~0U, 0) != 0) failErrno("close_range");
}

// Opens the tap where PROGRAM expects it. Without IFF_PERSIST the kernel has just made a new tap under that name
// (TUNSETIFF does, for root): the one asked for does not exist, and closing the fd removes the new one again.
void openTap(const Tap& tap) {
  const std::string what = "--tap " + std::to_string(tap.fd) + ":" + tap.name;
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) failErrno(what + ": open /dev/net/tun");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, tap.name.data(), tap.name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) failErrno(what + ": attach (TUNSETIFF)");
  ifreq got{};
  if (ioctl(fd, TUNGETIFF, &got) != 0) failErrno(what + ": TUNGETIFF");
  if ((got.ifr_flags & IFF_PERSIST) == 0) fail(what, "no such tap in the namespace");
  if (fd == tap.fd) {
    if (fcntl(fd, F_SETFD, 0) != 0) failErrno(what + ": F_SETFD");
    return;
  }
  // dup2 replaces whatever the caller left on that number (closed later anyway) and clears FD_CLOEXEC.
  if (dup2(fd, tap.fd) < 0) failErrno(what + ": dup2");
  close(fd);
}

[[noreturn]] void child(const Options& o, int parentAlive, const sigset_t& oldMask) {
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  }
  if (!o.taps.empty() || !o.listens.empty() || o.usernsFd >= 0) {
    // The pipe must not sit on a number a tap's or listener's fd goes to.
    int above = o.usernsFd + 1;
    for (const auto& tap : o.taps) above = std::max(above, tap.fd + 1);
    for (const auto& li : o.listens) above = std::max(above, li.fd + 1);
    int moved = fcntl(parentAlive, F_DUPFD_CLOEXEC, above);
    if (moved < 0) failErrno("move the jailer's pipe");
    close(parentAlive);
    parentAlive = moved;
  }
  if (o.netns != "new") {
    int fd = open(o.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) failErrno("open --netns " + o.netns);
    if (setns(fd, CLONE_NEWNET) != 0) failErrno("setns " + o.netns);
    close(fd);
  }
  // Still root and still with the host's /dev: the tap is opened here, and PROGRAM only ever gets the fd.
  for (const auto& tap : o.taps) openTap(tap);
  for (const auto& li : o.listens) openListener(li);
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (o.netns == "new" ? CLONE_NEWNET : 0)) != 0) failErrno("unshare");
  // Nothing mounted from here on may propagate back to the host. In a user namespace, PROGRAM (virtiofsd) serves
  // a tree the host keeps mounting into: slaves still receive those mounts.
  if (mount(nullptr, "/", nullptr, MS_REC | (o.usernsFd >= 0 ? MS_SLAVE : MS_PRIVATE), nullptr) != 0) failErrno("make / private");
  if (!o.hostname.empty() && sethostname(o.hostname.data(), o.hostname.size()) != 0) failErrno("sethostname");
  // The jail's directories need exactly their modes (0755: PROGRAM must traverse them), whatever umask the
  // caller runs with; PROGRAM gets the caller's umask back.
  mode_t umaskWas = umask(0);
  int procSelf = o.usernsFd >= 0 ? open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
  if (o.usernsFd >= 0 && procSelf < 0) failErrno("open /proc/self");
  buildRoot(o);
  enterRoot(o.root);
  publishListeners();
  dropCredentials(o, procSelf);
  // Set after the uid change, which clears it. The pipe tells whether the jailer died before it took effect:
  // getppid() cannot, it is 0 for a pid namespace's init.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) failErrno("PR_SET_PDEATHSIG");
  pollfd p{parentAlive, POLLIN, 0};
  if (poll(&p, 1, 0) != 0) fail("start", "the jailer went away");
  close(parentAlive);
  std::vector<int> keep = o.keepFds;
  for (const auto& tap : o.taps) keep.push_back(tap.fd);
  for (const auto& li : o.listens) keep.push_back(li.fd);
  closeFds(keep);

  std::vector<char*> args, env;
  for (const auto& a : o.program) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : o.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  umask(umaskWas);
  if (sigprocmask(SIG_SETMASK, &oldMask, nullptr) != 0) failErrno("sigprocmask");
  execve(args[0], args.data(), env.data());
  failErrno("execve " + o.program[0]);
}

// ---- the parent: stays outside, relays signals, mirrors the end ----------------------------------------

[[noreturn]] void mirrorExit(int status) {
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  // Dying by the same signal tells the caller what happened; no core of the jailer for it.
  rlimit noCore{0, 0};
  setrlimit(RLIMIT_CORE, &noCore);
  signal(sig, SIG_DFL);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  sigprocmask(SIG_UNBLOCK, &s, nullptr);
  raise(sig);
  _exit(128 + sig);
}

// Whether pid has a handler for sig (SigCgt in /proc/PID/status); false when that cannot be read.
bool catches(pid_t pid, int sig) {
  int fd = open(("/proc/" + std::to_string(pid) + "/status").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fd);
  size_t at = text.find("\nSigCgt:");
  if (at == std::string::npos) return false;
  unsigned long long mask = std::strtoull(text.c_str() + at + 8, nullptr, 16);
  return (mask >> (sig - 1)) & 1ULL;
}

[[noreturn]] void parent(pid_t pid, const sigset_t& waitFor) {
  for (;;) {
    siginfo_t info{};
    int sig = sigwaitinfo(&waitFor, &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      failErrno("sigwaitinfo");
    }
    if (sig != SIGCHLD) {
      // Signals to a pid namespace's init arrive only if it handles them (QEMU handles these; virtiofsd does only
      // once it serves). A request to end that would be dropped ends it the hard way instead.
      bool ending = sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
      kill(pid, ending && !catches(pid, sig) ? SIGKILL : sig);
      continue;
    }
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) mirrorExit(status);
    if (r < 0 && errno != EINTR) failErrno("waitpid");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);

  // The cgroups first: everything forked from here on is accounted.
  for (const auto& c : o.cgroups) {
    std::string file = c + "/cgroup.procs";
    int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) failErrno("open " + file);
    std::string pid = std::to_string(getpid());
    if (write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) failErrno("join cgroup " + c);
    close(fd);
  }

  sigset_t waitFor, oldMask;
  sigemptyset(&waitFor);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&waitFor, sig);
  if (sigprocmask(SIG_BLOCK, &waitFor, &oldMask) != 0) failErrno("sigprocmask");

  int alive[2];
  if (pipe2(alive, O_CLOEXEC) != 0) failErrno("pipe");
  if (unshare(CLONE_NEWPID) != 0) failErrno("unshare(CLONE_NEWPID)");
  pid_t pid = fork();
  if (pid < 0) failErrno("fork");
  if (pid == 0) {
    close(alive[1]);
    child(o, alive[0], oldMask);
  }
  close(alive[0]);
  // alive[1] stays open for as long as the jailer lives.
  parent(pid, waitFor);
}
