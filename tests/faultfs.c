/*
 * faultfs.c -- an LD_PRELOAD shim that fails writes to chosen files, for
 * the spool fault tests (tests/integration/test_spool_fault.py).
 *
 * Loaded into errrelayd with LD_PRELOAD, it interposes write, pwrite,
 * pwrite64, writev, pwritev, fsync and fdatasync.  Each call fails with
 * ENOSPC, as on a full disk, when both hold:
 *
 *   - the file named by ERRRELAY_FAULT_FILE exists (checked with access()
 *     on every call, so a test switches the fault on and off while the
 *     daemon runs by creating and removing that file);
 *   - the path of the descriptor (readlink of /proc/self/fd/N) contains
 *     ERRRELAY_FAULT_MATCH, e.g. "spool.db", which also matches the
 *     spool's -wal and -shm files.
 *
 * Otherwise the call goes to the next definition (libc, or a sanitizer's
 * interceptor) found with dlsym(RTLD_NEXT).  Both variables are read once,
 * by a constructor, into fixed buffers; with either unset or empty the
 * shim only passes calls on.  The hot path allocates nothing, calls only
 * access() and readlink(), never one of the functions it interposes, and
 * keeps errno unchanged unless it fails the call.  The next definitions
 * are looked up on first use; two threads racing there store the same
 * pointer, through an atomic.
 *
 * Writes through a shared mapping (sqlite's -shm index, once it exists)
 * do not go through write(2) and are not affected: neither would they be
 * on a full disk.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULTFS_ENV_FILE	"ERRRELAY_FAULT_FILE"
#define FAULTFS_ENV_MATCH	"ERRRELAY_FAULT_MATCH"

enum faultfs_fn {
	FAULTFS_WRITE,
	FAULTFS_PWRITE,
	FAULTFS_PWRITE64,
	FAULTFS_WRITEV,
	FAULTFS_PWRITEV,
	FAULTFS_FSYNC,
	FAULTFS_FDATASYNC,
	FAULTFS_COUNT
};

static const char *const faultfs_names[FAULTFS_COUNT] = {
	"write", "pwrite", "pwrite64", "writev", "pwritev", "fsync",
	"fdatasync"
};

/* The types of the interposed functions, for their next definitions. */
typedef ssize_t	faultfs_write_fn(int, const void *, size_t);
typedef ssize_t	faultfs_pwrite_fn(int, const void *, size_t, off_t);
typedef ssize_t	faultfs_pwrite64_fn(int, const void *, size_t, off64_t);
typedef ssize_t	faultfs_writev_fn(int, const struct iovec *, int);
typedef ssize_t	faultfs_pwritev_fn(int, const struct iovec *, int, off_t);
typedef int	faultfs_fsync_fn(int);
typedef int	faultfs_fdatasync_fn(int);

/* The next definition of each function, NULL until first used. */
static _Atomic(void *)	faultfs_next_fn[FAULTFS_COUNT];

/* The environment, copied at load; an empty string: the shim is off. */
static char		faultfs_flag[PATH_MAX];
static char		faultfs_match[PATH_MAX];

static void	faultfs_init(void) __attribute__((constructor));

/* Copy the value of variable name into buf; empty if unset or too long. */
static void
faultfs_getenv(const char *name, char *buf, size_t size)
{
	const char	*v;
	size_t		 len;

	buf[0] = '\0';
	if ((v = getenv(name)) == NULL)
		return;
	len = strlen(v);
	if (len >= size)
		return;
	memcpy(buf, v, len + 1);
}

static void
faultfs_init(void)
{
	int	saved = errno;

	faultfs_getenv(FAULTFS_ENV_FILE, faultfs_flag, sizeof faultfs_flag);
	faultfs_getenv(FAULTFS_ENV_MATCH, faultfs_match, sizeof faultfs_match);
	errno = saved;
}

/*
 * The next definition of fn.  Aborts, with a line written by the raw
 * system call, if there is none: the shim cannot work without it.
 */
static void *
faultfs_next(enum faultfs_fn fn)
{
	static const char	 msg[] = "faultfs: dlsym(RTLD_NEXT) failed\n";
	void			*p;
	int			 saved;

	p = atomic_load_explicit(&faultfs_next_fn[fn], memory_order_acquire);
	if (p != NULL)
		return p;
	saved = errno;
	p = dlsym(RTLD_NEXT, faultfs_names[fn]);
	if (p == NULL) {
		(void)syscall(SYS_write, 2, msg, sizeof msg - 1);
		abort();
	}
	atomic_store_explicit(&faultfs_next_fn[fn], p, memory_order_release);
	errno = saved;
	return p;
}

/* Write "/proc/self/fd/N" into buf (at least 32 bytes); no allocation. */
static void
faultfs_fd_link(int fd, char *buf)
{
	static const char	 prefix[] = "/proc/self/fd/";
	char			 digits[16];
	size_t			 n = 0, i;
	unsigned int		 u = (unsigned int)fd;

	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0 && n < sizeof digits);
	memcpy(buf, prefix, sizeof prefix - 1);
	for (i = 0; i < n; i++)
		buf[sizeof prefix - 1 + i] = digits[n - 1 - i];
	buf[sizeof prefix - 1 + n] = '\0';
}

/*
 * Whether a write to fd must fail now: the flag file exists and fd's path
 * contains the match string.  errno is left as it was.
 */
static int
faultfs_fault(int fd)
{
	char	link[32], path[PATH_MAX];
	ssize_t	n;
	int	saved, hit;

	if (fd < 0 || faultfs_flag[0] == '\0' || faultfs_match[0] == '\0')
		return 0;
	saved = errno;
	hit = 0;
	if (access(faultfs_flag, F_OK) == 0) {
		faultfs_fd_link(fd, link);
		n = readlink(link, path, sizeof path - 1);
		if (n > 0) {
			path[n] = '\0';
			hit = strstr(path, faultfs_match) != NULL;
		}
	}
	errno = saved;
	return hit;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	faultfs_write_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_write_fn *)faultfs_next(FAULTFS_WRITE);
	return next(fd, buf, len);
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	faultfs_pwrite_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_pwrite_fn *)faultfs_next(FAULTFS_PWRITE);
	return next(fd, buf, len, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	faultfs_pwrite64_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_pwrite64_fn *)faultfs_next(FAULTFS_PWRITE64);
	return next(fd, buf, len, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	faultfs_writev_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_writev_fn *)faultfs_next(FAULTFS_WRITEV);
	return next(fd, iov, iovcnt);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	faultfs_pwritev_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_pwritev_fn *)faultfs_next(FAULTFS_PWRITEV);
	return next(fd, iov, iovcnt, off);
}

int
fsync(int fd)
{
	faultfs_fsync_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_fsync_fn *)faultfs_next(FAULTFS_FSYNC);
	return next(fd);
}

int
fdatasync(int fd)
{
	faultfs_fdatasync_fn	*next;

	if (faultfs_fault(fd)) {
		errno = ENOSPC;
		return -1;
	}
	next = (faultfs_fdatasync_fn *)faultfs_next(FAULTFS_FDATASYNC);
	return next(fd);
}
