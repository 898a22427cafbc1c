/*
 * benchio.h -- the socket plumbing the benchmark programs share: connect
 * to a Unix socket, write a whole buffer.
 */
#ifndef ERRRELAY_BENCHIO_H
#define ERRRELAY_BENCHIO_H

#include <stddef.h>

/* A connected AF_UNIX stream socket to path, or -1 (errno set). */
int	bench_connect(const char *path);
/* Write all len bytes of buf to fd, retrying on EINTR; 0 or -1. */
int	bench_write_all(int fd, const char *buf, size_t len);

#endif
