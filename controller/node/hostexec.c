/* See co/hostexec.h. setns(2) is Linux-specific: this file alone asks for it. */
#define _GNU_SOURCE
#include "co/hostexec.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int co_host_exec(char *const argv[]) {
  if (argv == NULL || argv[0] == NULL) {
    fprintf(stderr, "host-exec: no command\n");
    return 2;
  }
  /* Every namespace file is opened first: /proc may look different once in the mount
   * namespace. The mount namespace is entered last for the same reason. */
  static const struct {
    const char *path;
    int type;
  } ns[] = {{"/proc/1/ns/uts", CLONE_NEWUTS},
            {"/proc/1/ns/ipc", CLONE_NEWIPC},
            {"/proc/1/ns/net", CLONE_NEWNET},
            {"/proc/1/ns/mnt", CLONE_NEWNS}};
  enum { N = sizeof ns / sizeof ns[0] };
  int fd[N];
  for (int i = 0; i < N; i++) {
    fd[i] = open(ns[i].path, O_RDONLY | O_CLOEXEC);
    if (fd[i] < 0) {
      fprintf(stderr, "host-exec: open %s: %s\n", ns[i].path, strerror(errno));
      return 126;
    }
  }
  for (int i = 0; i < N; i++) {
    if (setns(fd[i], ns[i].type) != 0) {
      fprintf(stderr, "host-exec: setns %s: %s\n", ns[i].path, strerror(errno));
      return 126;
    }
    close(fd[i]);
  }
  if (chdir("/") != 0) {
    fprintf(stderr, "host-exec: chdir /: %s\n", strerror(errno));
    return 126;
  }
  /* The host's PATH, not the image's. */
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  execvp(argv[0], argv);
  fprintf(stderr, "host-exec: %s: %s\n", argv[0], strerror(errno));
  return 127;
}
