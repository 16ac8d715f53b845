/*
 * Attacker helper for the mount-race test: swaps two names with renameat2
 * (RENAME_EXCHANGE) as fast as the kernel allows, until a stop file appears or a
 * time limit passes. Built static by the test and run inside a container.
 *
 *   swap A B STOPFILE SECONDS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: swap A B STOPFILE SECONDS\n");
    return 2;
  }
  time_t end = time(NULL) + atoi(argv[4]);
  for (unsigned long i = 0;; i++) {
    if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) {
      perror("renameat2");
      return 1;
    }
    if (i % 4096 == 0 && (access(argv[3], F_OK) == 0 || time(NULL) > end)) return 0;
  }
}
