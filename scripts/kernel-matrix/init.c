// PID 1 of the kernel-matrix guest, the only program in its initramfs (linked statically, so the initramfs
// needs no libc or shell):
// 1. loads the modules listed in /modules/order (virtio, 9p transport, overlayfs; uncompressed .ko files),
// 2. mounts the host's root (9p tag "hostroot", read-only) under an overlay with a tmpfs upper at /newroot,
//    so the guest may write anywhere and nothing reaches the host, and the per-run directory (9p tag
//    "kmrun", read-write) at /newroot/.km,
// 3. makes /newroot the root and runs the host's /bin/bash /.km/stage2.sh, reaping every orphan,
// 4. when stage 2 exits: sync and power off (qemu runs with -no-reboot, so it exits; the host reads .km/rc).
// Kernel command line knobs: km_msize (9p msize, default 512000), km_cache (9p cache mode, default loose:
// the lower layer is read-only and nobody changes it during a run, so the guest may cache everything).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void logmsg(const char *fmt, const char *a, int err) {
  FILE *f = fopen("/dev/kmsg", "w");
  if (!f) f = stderr;
  fprintf(f, "km-init: ");
  fprintf(f, fmt, a);
  if (err) fprintf(f, ": %s", strerror(err));
  fprintf(f, "\n");
  if (f != stderr) fclose(f);
}

// No exit status file is written: the host reports a guest failure (125) with the console's tail.
static void die(const char *what, const char *a) {
  logmsg(what, a, errno);
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) != 0) die("mount %s", dst);
}

int main(void) {
  mkdir("/dev", 0755);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mkdir("/proc", 0755);
  mount("proc", "/proc", "proc", 0, NULL);

  FILE *order = fopen("/modules/order", "r");
  if (!order) die("open %s", "/modules/order");
  char line[512];
  while (fgets(line, sizeof line, order)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) continue;
    char path[600];
    snprintf(path, sizeof path, "/modules/%s", line);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) die("finit_module %s", path);
    close(fd);
  }
  fclose(order);

  const char *msize = getenv("km_msize");
  const char *cache = getenv("km_cache");
  char opts[256];
  snprintf(opts, sizeof opts, "trans=virtio,version=9p2000.L,msize=%s,cache=%s,ro", msize ? msize : "512000",
           cache ? cache : "loose");
  mkdir("/lower", 0755);
  for (int i = 0; mount("hostroot", "/lower", "9p", MS_RDONLY, opts) != 0; i++) {
    if (i == 50) die("mount %s", "/lower"); // the virtio device may still be probing: retry for 5 s
    usleep(100000);
  }
  xmount("tmpfs", "/upper", "tmpfs", 0, "mode=0755");
  mkdir("/upper/u", 0755);
  mkdir("/upper/w", 0755);
  xmount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w");
  xmount("kmrun", "/newroot/.km", "9p", 0, "trans=virtio,version=9p2000.L,msize=512000,cache=none");

  if (chdir("/newroot") != 0) die("chdir %s", "/newroot");
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("move %s", "/newroot");
  if (chroot(".") != 0) die("chroot %s", ".");
  if (chdir("/") != 0) die("chdir %s", "/");

  pid_t child = fork();
  if (child < 0) die("fork %s", "");
  if (child == 0) {
    char *argv[] = {"/bin/bash", "/.km/stage2.sh", NULL};
    char *envp[] = {"PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", NULL};
    execve(argv[0], argv, envp);
    die("exec %s", argv[0]);
  }
  for (;;) {
    int status;
    pid_t p = wait(&status);
    if (p == child || (p < 0 && errno == ECHILD)) break;
  }
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}
