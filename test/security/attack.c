/*
 * The hostile guest's attack loop, built static by the test and run as root with CAP_SYS_ADMIN in a container
 * of a vrun pod (what a privileged pod, or any escape inside the guest, gets). A program rather than a shell
 * loop: under TCG every fork of busybox costs tens of milliseconds, and the loop has to run thousands of times
 * while the host works.
 *
 *   attack plant SHARE_TAG CANARY ROUNDS   mount the pod's share and plant symlinks, directories and renames
 *                                          wherever the host makes mount points, for ROUNDS rounds and then
 *                                          until /tmp/attack-stop exists; prints the tally
 *   attack suid PATH                       a setuid-root copy of this program at PATH
 *   attack mknod PATH                      try to make a character device (/dev/mem's numbers) at PATH
 *   attack fcap PATH                       a copy of this program at PATH given CAP_CHOWN..CAP_SETUID by a
 *                                          security.capability xattr (as `setcap` would)
 *   attack caps                            print the effective capabilities and uid this process runs with
 *   attack flood MIB                       write MIB mebibytes to stdout
 *   attack kmsg MIB                        write MIB mebibytes of emergency-level kernel messages (they reach
 *                                          the guest's console, which the host logs), lifting the kernel's
 *                                          rate limit on /dev/kmsg first as guest root may
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static long ok, refused;

static void tally(int rc, const char *what, const char *path) {
  if (rc == 0) {
    ok++;
    printf("ATTACK-GOT-THROUGH %s %s\n", what, path);
  } else {
    refused++;
  }
}

static int plant(const char *tag, const char *canary, const char *mnt, long rounds) {
  char a[4096], b[4096];
  if (mkdir(mnt, 0755) != 0 && errno != EEXIST) return perror("mkdir"), 1;
  if (mount(tag, mnt, "virtiofs", 0, NULL) != 0) return printf("ATTACK-MOUNT-FAILED %s\n", strerror(errno)), 1;
  /* The control: the same plants where the container may write must work, or every refusal is moot. */
  int control = symlink(canary, "/tmp/control-link") == 0 && mkdir("/tmp/control-dir", 0755) == 0 && rename("/tmp/control-dir", "/tmp/control-moved") == 0;
  printf("ATTACK-CONTROL-%s\n", control ? "OK" : "FAILED");
  fflush(stdout);
  /* At least `rounds` rounds, and on until the test says stop: the host's own work must overlap all of it. */
  long i = 0;
  for (; i < rounds || access("/tmp/attack-stop", F_OK) != 0; i++) {
    DIR *d = opendir(mnt);
    if (!d) return perror("opendir"), 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      snprintf(a, sizeof a, "%s/%s/mounts/0", mnt, e->d_name);
      tally(symlink(canary, a), "symlink", a);
      snprintf(a, sizeof a, "%s/%s/mounts/1", mnt, e->d_name);
      tally(symlink(canary, a), "symlink", a);
      snprintf(a, sizeof a, "%s/%s/mounts/9", mnt, e->d_name);
      tally(mkdir(a, 0755), "mkdir", a);
      snprintf(a, sizeof a, "%s/%s/rootfs", mnt, e->d_name);
      tally(symlink("/", a), "symlink", a);
      snprintf(b, sizeof b, "%s/%s/rootfs.old", mnt, e->d_name);
      tally(rename(a, b), "rename", a);
      snprintf(a, sizeof a, "%s/%s/mounts", mnt, e->d_name);
      snprintf(b, sizeof b, "%s/%s/mounts.old", mnt, e->d_name);
      tally(rename(a, b), "rename", a);
      snprintf(a, sizeof a, "%s/%s", mnt, e->d_name);
      snprintf(b, sizeof b, "%s/moved%ld", mnt, i);
      tally(rename(a, b), "rename", a);
    }
    closedir(d);
    snprintf(a, sizeof a, "%s/guess%ld", mnt, i);
    tally(symlink(canary, a), "symlink", a);
    snprintf(a, sizeof a, "%s/dir%ld", mnt, i);
    tally(mkdir(a, 0755), "mkdir", a);
    if ((i + 1) % 100 == 0) {
      printf("ATTACK-ROUND %ld ok=%ld refused=%ld\n", i + 1, ok, refused);
      fflush(stdout);
    }
  }
  printf("ATTACK-DONE rounds=%ld ok=%ld refused=%ld\n", i, ok, refused);
  fflush(stdout);
  return 0;
}

static int copy_self(const char *path, int mode) {
  int in = open("/proc/self/exe", O_RDONLY), out = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (in < 0 || out < 0) return perror("open"), -1;
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    if (write(out, buf, (size_t)n) != n) return perror("write"), -1;
  }
  close(in);
  return out;
}

static int suid(const char *path) {
  int out = copy_self(path, 0755);
  if (out < 0) return 1;
  if (fchown(out, 0, 0) != 0 || fchmod(out, 04755) != 0) return perror("fchmod"), 1;
  close(out);
  struct stat st;
  if (stat(path, &st) != 0) return perror("stat"), 1;
  printf("SUID-PLANTED mode=%o uid=%u\n", st.st_mode & 07777, st.st_uid);
  return 0;
}

static int fcap(const char *path) {
  int out = copy_self(path, 0755);
  if (out < 0) return 1;
  close(out);
  /* struct vfs_cap_data, revision 2 with the effective flag: chown to setuid (bits 0-7), all a root shell needs. */
  unsigned int cap[5] = {0x02000001u, 0xffu, 0, 0, 0};
  if (setxattr(path, "security.capability", cap, sizeof cap, 0) == 0) printf("FCAP-PLANTED\n");
  else printf("FCAP-REFUSED %s\n", strerror(errno));
  return 0;
}

static int caps(void) {
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return perror("status"), 1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "CapEff:", 7) == 0) printf("%s", line);
  }
  fclose(f);
  printf("euid=%u\n", geteuid());
  return 0;
}

static int kmsg(long mib) {
  int ctl = open("/proc/sys/kernel/printk_devkmsg", O_WRONLY);
  if (ctl < 0 || write(ctl, "on\n", 3) != 3) return perror("printk_devkmsg"), 1;
  close(ctl);
  int k = open("/dev/kmsg", O_WRONLY);
  if (k < 0) return perror("/dev/kmsg"), 1;
  /* One record per write, under the kernel's per-record limit (LOG_LINE_MAX, 992 bytes). */
  static char rec[512];
  memcpy(rec, "<0>", 3);
  memset(rec + 3, 'k', sizeof rec - 4);
  rec[sizeof rec - 1] = '\n';
  long written = 0;
  while (written < mib << 20) {
    if (write(k, rec, sizeof rec) != (ssize_t)sizeof rec) return perror("write /dev/kmsg"), 1;
    written += (long)sizeof rec;
  }
  printf("KMSG-DONE bytes=%ld\n", written);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "plant") == 0) return plant(argv[2], argv[3], "/m", atol(argv[4]));
  if (argc == 3 && strcmp(argv[1], "suid") == 0) return suid(argv[2]);
  if (argc == 3 && strcmp(argv[1], "mknod") == 0) {
    if (mknod(argv[2], S_IFCHR | 0600, makedev(1, 1)) == 0) printf("MKNOD-OK\n");
    else printf("MKNOD-REFUSED %s\n", strerror(errno));
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "fcap") == 0) return fcap(argv[2]);
  if (argc == 2 && strcmp(argv[1], "caps") == 0) return caps();
  if (argc == 3 && strcmp(argv[1], "kmsg") == 0) return kmsg(atol(argv[2]));
  if (argc == 3 && strcmp(argv[1], "flood") == 0) {
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    for (long i = 0; i < atol(argv[2]) * 16; i++) {
      if (write(1, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    }
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "id") == 0) {
    printf("%u\n", geteuid());
    return 0;
  }
  fprintf(stderr, "usage: attack plant TAG CANARY ROUNDS | suid PATH | mknod PATH | fcap PATH | caps | flood MIB | kmsg MIB | id\n");
  return 2;
}
