/*
 * fibermem.c -- errrelay-fibermem: the daemon's memory per live fiber scope.
 *
 *   errrelay-fibermem [-n fibers] [-p daemon_pid] [-c control_socket]
 *                     [-t timeout_s] socket
 *
 * It connects to the data socket (plain, fire-and-forget: no hello, no
 * acks), reads the daemon's VmRSS from /proc/PID/status, then fills N
 * fibers (default 100,000) with a scope that looks like a web request's:
 * one `set` with 10 tags, 2 extra keys and a user {id, email,
 * ip_address}, then 5 crumbs (a ~40 character message and a category),
 * every value different per fiber.  To know when the daemon has processed
 * every line it finally sets one more fiber, a sentinel: lines of one
 * connection are processed in order, so when the control socket's status
 * counts all N + 1 fibers, everything before the sentinel is in.  The
 * sentinel is then ended (the count drops back to N), VmRSS is read again
 * and the figures are printed.  The connection stays open until the end:
 * the scopes belong to this process and would be freed a grace after it
 * goes away.
 *
 * The daemon needs max_fibers >= N + 1 (else fibers are evicted and the
 * count is never reached: the program says so when its deadline passes).
 * The pid is -p, else the "pid" of the status answer.  A benchmark prints
 * figures; it asserts nothing about them.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/benchio.h"

#define FM_DEFAULT_CONTROL	RUNSTATEDIR "/errrelay/control.sock"
#define FM_SENTINEL		"fibermem-sentinel"
#define FM_BUF			(256 * 1024)

static const char	*fm_data_path;
static const char	*fm_control_path = FM_DEFAULT_CONTROL;

static char		 fm_buf[FM_BUF];
static size_t		 fm_len;

static double
fm_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
fm_flush(int fd)
{
	int	r;

	r = bench_write_all(fd, fm_buf, fm_len);
	fm_len = 0;
	return r;
}

/* Append one formatted line to the buffer, flushing it first if full. */
static int
fm_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fm_line(int fd, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (FM_BUF - fm_len < 4096 && fm_flush(fd) == -1)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(fm_buf + fm_len, FM_BUF - fm_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= FM_BUF - fm_len) {
		fprintf(stderr, "errrelay-fibermem: line too long\n");
		return -1;
	}
	fm_len += (size_t)n;
	return 0;
}

/*
 * Ask the control socket for its status.  Returns the parsed answer
 * (caller frees) or NULL with a message on stderr.
 */
static cJSON *
fm_status(void)
{
	static const char	 req[] = "{\"cmd\":\"status\"}\n";
	char			*buf = NULL, *nl;
	size_t			 len = 0, cap = 0;
	ssize_t			 n;
	cJSON			*o;
	int			 fd;

	if ((fd = bench_connect(fm_control_path)) == -1) {
		fprintf(stderr, "errrelay-fibermem: %s: %s\n", fm_control_path,
		    strerror(errno));
		return NULL;
	}
	if (bench_write_all(fd, req, sizeof req - 1) == -1) {
		fprintf(stderr, "errrelay-fibermem: control write: %s\n",
		    strerror(errno));
		close(fd);
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap == 0 ? 16384 : cap * 2;
			if ((buf = realloc(buf, cap)) == NULL) {
				perror("realloc");
				exit(1);
			}
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	close(fd);
	if (buf == NULL || len == 0) {
		fprintf(stderr, "errrelay-fibermem: no status answer\n");
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	if ((nl = strchr(buf, '\n')) != NULL)
		*nl = '\0';
	o = cJSON_Parse(buf);
	free(buf);
	if (o == NULL)
		fprintf(stderr, "errrelay-fibermem: bad status answer\n");
	return o;
}

/* The status's numeric member name, or -1. */
static double
fm_status_number(const char *name)
{
	cJSON		*o;
	const cJSON	*v;
	double		 d = -1;

	if ((o = fm_status()) == NULL)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (cJSON_IsNumber(v))
		d = v->valuedouble;
	cJSON_Delete(o);
	return d;
}

/*
 * Poll the status until its "fibers" count equals want or the deadline
 * passes.  Returns 0, or -1 with a message.
 */
static int
fm_wait_fibers(double want, double timeout)
{
	struct timespec	 ts = { 0, 20 * 1000 * 1000 };
	double		 end = fm_now() + timeout, got = -1;

	while (fm_now() < end) {
		if ((got = fm_status_number("fibers")) == -1)
			return -1;
		if (got == want)
			return 0;
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "errrelay-fibermem: after %.0f s the daemon counts "
	    "%.0f fibers, not %.0f (max_fibers too low? fibers evicted?)\n",
	    timeout, got, want);
	return -1;
}

/* VmRSS of pid in bytes, or -1 with a message. */
static long long
fm_rss(long pid)
{
	char		 path[64], line[256];
	FILE		*f;
	long long	 kb = -1;

	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "errrelay-fibermem: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
			break;
	fclose(f);
	if (kb == -1)
		fprintf(stderr, "errrelay-fibermem: no VmRSS in %s\n", path);
	return kb == -1 ? -1 : kb * 1024;
}

/*
 * The lines that fill fiber i: a set (10 tags, 2 extra keys, a user) then
 * 5 crumbs.  Returns 0 or -1.
 */
static int
fm_fiber(int fd, long i)
{
	static const char *const methods[] = { "GET", "POST", "PUT", "DELETE" };
	static const char *const regions[] = { "eu-west-1", "us-east-1",
	    "ap-south-1" };
	static const char *const cats[] = { "http", "db.query", "cache",
	    "auth", "navigation" };
	int	k;

	if (fm_line(fd, "{\"op\":\"set\",\"fiber\":\"fiber-%07ld\","
	    "\"tags\":{"
	    "\"request_id\":\"req-%09ld\","
	    "\"route\":\"/api/v1/orders/%ld\","
	    "\"method\":\"%s\","
	    "\"tenant\":\"tenant-%05ld\","
	    "\"region\":\"%s\","
	    "\"host\":\"web-%03ld.internal\","
	    "\"release\":\"shop@1.4.%ld\","
	    "\"session\":\"sess-%08lx\","
	    "\"feature\":\"checkout-v%ld\","
	    "\"client\":\"ios-17.%ld.%ld\"},"
	    "\"extra\":{\"cart_items\":%ld,\"trace_id\":\"%016lx\"},"
	    "\"user\":{\"id\":\"user-%07ld\","
	    "\"email\":\"user%07ld@example.com\","
	    "\"ip_address\":\"10.%ld.%ld.%ld\"}}\n",
	    i, i * 7 + 1, i, methods[i % 4], i % 50000, regions[i % 3],
	    i % 500, i % 97, (unsigned long)i * 2654435761UL & 0xffffffffUL,
	    i % 9, i % 10, i % 7, i % 23,
	    (unsigned long)i * 0x9e3779b97f4a7c15UL, i, i,
	    (i >> 16) & 255, (i >> 8) & 255, i & 255) == -1)
		return -1;
	for (k = 0; k < 5; k++)
		if (fm_line(fd, "{\"op\":\"crumb\",\"fiber\":\"fiber-%07ld\","
		    "\"crumb\":{\"message\":\"%s /api/v1/orders/%ld step %d "
		    "took %ld ms\",\"category\":\"%s\"}}\n", i,
		    methods[(i + k) % 4], i, k, (i * 13 + k) % 900,
		    cats[k]) == -1)
			return -1;
	return 0;
}

static void
fm_usage(void)
{
	fprintf(stderr, "usage: errrelay-fibermem [-n fibers] [-p daemon_pid] "
	    "[-c control_socket] [-t timeout_s] socket\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long		 n = 100000, pid = 0, i;
	double		 timeout = 300, t0, el, base;
	long long	 before, after;
	int		 ch, fd;

	while ((ch = getopt(argc, argv, "n:p:c:t:")) != -1) {
		switch (ch) {
		case 'n':
			n = atol(optarg);
			break;
		case 'p':
			pid = atol(optarg);
			break;
		case 'c':
			fm_control_path = optarg;
			break;
		case 't':
			timeout = atof(optarg);
			break;
		default:
			fm_usage();
		}
	}
	if (optind + 1 != argc || n < 1 || pid < 0 || timeout <= 0)
		fm_usage();
	fm_data_path = argv[optind];

	if (pid == 0 && (pid = (long)fm_status_number("pid")) <= 0) {
		fprintf(stderr, "errrelay-fibermem: no daemon pid (give -p)\n");
		return 1;
	}
	if ((base = fm_status_number("fibers")) < 0)
		return 1;
	if ((fd = bench_connect(fm_data_path)) == -1) {
		fprintf(stderr, "errrelay-fibermem: %s: %s\n", fm_data_path,
		    strerror(errno));
		return 1;
	}
	if ((before = fm_rss(pid)) == -1)
		return 1;

	t0 = fm_now();
	for (i = 0; i < n; i++)
		if (fm_fiber(fd, i) == -1)
			goto fail;
	if (fm_line(fd, "{\"op\":\"set\",\"fiber\":\"" FM_SENTINEL "\","
	    "\"tags\":{\"sentinel\":\"1\"}}\n") == -1 || fm_flush(fd) == -1)
		goto fail;
	if (fm_wait_fibers(base + (double)n + 1, timeout) == -1)
		return 1;
	el = fm_now() - t0;
	if (fm_line(fd, "{\"op\":\"end\",\"fiber\":\"" FM_SENTINEL "\"}\n") ==
	    -1 || fm_flush(fd) == -1)
		goto fail;
	if (fm_wait_fibers(base + (double)n, timeout) == -1)
		return 1;
	if ((after = fm_rss(pid)) == -1)
		return 1;

	printf("fibers %ld (10 tags, 2 extra, user, 5 crumbs each), "
	    "daemon pid %ld\n", n, pid);
	printf("processed in %.2f s (%.0f fibers/s)\n", el, (double)n / el);
	printf("daemon RSS before %lld KiB, after %lld KiB, delta %lld KiB\n",
	    before / 1024, after / 1024, (after - before) / 1024);
	printf("bytes per fiber %.0f\n", (double)(after - before) / (double)n);
	close(fd);
	return 0;
fail:
	fprintf(stderr, "errrelay-fibermem: write: %s\n", strerror(errno));
	return 1;
}
