/*
 * errrelayctl.c -- the control CLI for errrelayd (SPEC §6).
 *
 * A plain blocking program: it connects to the control socket, sends one
 * request line, reads one JSON answer line and prints it.  Its commands sit
 * in a table.  Exit status of status: 0 healthy, 1 degraded, 2 the daemon
 * did not answer (with one line saying why).
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/xmalloc.h"

#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif
#define CTL_DEFAULT_SOCKET	RUNSTATEDIR "/errrelay/control.sock"
#define CTL_EXIT_NO_DAEMON	2

static const char	*ctl_socket = CTL_DEFAULT_SOCKET;

struct ctl_cmd {
	const char	*name;
	const char	*usage;
	int		(*fn)(int, char **);
};

static int	ctl_status(int, char **);
static int	ctl_fibers(int, char **);

static const struct ctl_cmd ctl_cmds[] = {
	{ "status", "status [--json]", ctl_status },
	{ "fibers", "fibers [--pid N] [--json]", ctl_fibers },
};

static void __attribute__((noreturn))
usage(void)
{
	size_t	i;

	fprintf(stderr, "usage: errrelayctl [-s socket] command [args]\n");
	fprintf(stderr, "commands:\n");
	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++)
		fprintf(stderr, "    %s\n", ctl_cmds[i].usage);
	exit(CTL_EXIT_NO_DAEMON);
}

/*
 * Send one request and return the parsed answer.  On any failure print
 * one line saying why and exit 2: the daemon did not answer.
 */
static cJSON *
ctl_request(const char *req)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { 10, 0 };
	char			*buf = NULL;
	size_t			 len = 0, cap = 0;
	ssize_t			 n;
	int			 fd;
	cJSON			*o;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(ctl_socket) >= sizeof sun.sun_path) {
		fprintf(stderr, "errrelayctl: %s: socket path too long\n",
		    ctl_socket);
		exit(CTL_EXIT_NO_DAEMON);
	}
	strcpy(sun.sun_path, ctl_socket);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fprintf(stderr, "errrelayctl: socket: %s\n", strerror(errno));
		exit(CTL_EXIT_NO_DAEMON);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		fprintf(stderr, "errrelayctl: cannot connect to %s: %s "
		    "(is errrelayd running?)\n", ctl_socket, strerror(errno));
		exit(CTL_EXIT_NO_DAEMON);
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		fprintf(stderr, "errrelayctl: %s: write: %s\n", ctl_socket,
		    strerror(errno));
		exit(CTL_EXIT_NO_DAEMON);
	}
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "errrelayctl: %s: no answer: %s\n",
			    ctl_socket, strerror(errno));
			exit(CTL_EXIT_NO_DAEMON);
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
			break;
	}
	close(fd);
	if (len == 0) {
		fprintf(stderr, "errrelayctl: %s: the daemon closed the "
		    "connection without answering\n", ctl_socket);
		exit(CTL_EXIT_NO_DAEMON);
	}
	buf[len] = '\0';
	if ((o = cJSON_Parse(buf)) == NULL || !cJSON_IsObject(o)) {
		fprintf(stderr, "errrelayctl: %s: unreadable answer\n",
		    ctl_socket);
		exit(CTL_EXIT_NO_DAEMON);
	}
	free(buf);
	return o;
}

static double
ctl_num(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *
ctl_str(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void
ctl_print_age(const char *label, double t)
{
	time_t		 tt;
	struct tm	 tm;
	char		 buf[64];

	if (t <= 0) {
		printf("%s never", label);
		return;
	}
	tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s %s", label, buf);
}

/* Print a {name: count} object as "name N, name N" (non-zero ones). */
static void
ctl_print_counts(const char *label, const cJSON *o)
{
	const cJSON	*v;
	int		 any = 0;

	printf("%s:", label);
	cJSON_ArrayForEach(v, o) {
		if (!cJSON_IsNumber(v) || v->valuedouble == 0)
			continue;
		printf("%s %s %.0f", any ? "," : "", v->string, v->valuedouble);
		any = 1;
	}
	printf("%s\n", any ? "" : " none");
}

static int
ctl_status(int argc, char **argv)
{
	cJSON		*o, *c, *sp, *routes, *r;
	const char	*health, *err;
	char		*text;
	int		 json = 0, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else
			usage();
	}
	o = ctl_request("{\"cmd\":\"status\"}\n");
	if (ctl_str(o, "error") != NULL) {
		fprintf(stderr, "errrelayctl: %s\n", ctl_str(o, "error"));
		cJSON_Delete(o);
		return CTL_EXIT_NO_DAEMON;
	}
	health = ctl_str(o, "health");
	if (json) {
		text = cJSON_PrintUnformatted(o);
		printf("%s\n", text);
		free(text);
	} else {
		c = cJSON_GetObjectItemCaseSensitive(o, "counters");
		sp = cJSON_GetObjectItemCaseSensitive(o, "spool");
		printf("errrelayd %s, pid %.0f, up %.0fs: %s\n",
		    ctl_str(o, "version"), ctl_num(o, "pid"),
		    ctl_num(o, "uptime_s"), health != NULL ? health : "?");
		printf("socket %s\n", ctl_str(o, "socket"));
		printf("connections %.0f, processes %.0f, fibers %.0f\n",
		    ctl_num(o, "connections"), ctl_num(o, "processes"),
		    ctl_num(o, "fibers"));
		printf("events: received %.0f, accepted %.0f, stored %.0f, "
		    "delivered %.0f, retried %.0f, dead %.0f\n",
		    ctl_num(c, "received"), ctl_num(c, "accepted"),
		    ctl_num(c, "stored"), ctl_num(c, "delivered"),
		    ctl_num(c, "retried"), ctl_num(c, "dead"));
		ctl_print_counts("rejected",
		    cJSON_GetObjectItemCaseSensitive(c, "rejected"));
		ctl_print_counts("dropped",
		    cJSON_GetObjectItemCaseSensitive(c, "dropped"));
		ctl_print_counts("fibers evicted",
		    cJSON_GetObjectItemCaseSensitive(c, "fibers_evicted"));
		printf("spool %s: %.0f rows, %.0f bytes, oldest %.0fs, "
		    "%.0f dead%s\n", ctl_str(sp, "path"), ctl_num(sp, "rows"),
		    ctl_num(sp, "bytes"), ctl_num(sp, "oldest_age_s"),
		    ctl_num(sp, "dead"), cJSON_IsTrue(
		    cJSON_GetObjectItemCaseSensitive(sp, "write_error")) ?
		    ", WRITE ERROR" : "");
		routes = cJSON_GetObjectItemCaseSensitive(o, "routes");
		cJSON_ArrayForEach(r, routes) {
			printf("route %s (%s %s): %s", ctl_str(r, "name"),
			    ctl_str(r, "type"), ctl_str(r, "upstream"),
			    ctl_str(r, "state"));
			if (ctl_num(r, "retry_in_s") > 0)
				printf(", retry in %.1fs",
				    ctl_num(r, "retry_in_s"));
			printf(", pending %.0f, delivered %.0f, dead %.0f, ",
			    ctl_num(r, "pending"), ctl_num(r, "delivered"),
			    ctl_num(r, "dead"));
			ctl_print_age("last success", ctl_num(r,
			    "last_success"));
			if ((err = ctl_str(r, "last_error")) != NULL)
				printf(", last error: %s", err);
			printf("\n");
		}
	}
	i = health != NULL && strcmp(health, "ok") == 0 ? 0 : 1;
	cJSON_Delete(o);
	return i;
}

static int
ctl_fibers(int argc, char **argv)
{
	cJSON		*o, *list, *e, *scope;
	char		*text, *req, *end;
	long		 pid = 0;
	int		 json = 0, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) {
			errno = 0;
			pid = strtol(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || pid <= 0) {
				fprintf(stderr, "errrelayctl: --pid wants a "
				    "process id, not %s\n", argv[i]);
				return CTL_EXIT_NO_DAEMON;
			}
		} else
			usage();
	}
	if (pid != 0)
		xasprintf(&req, "{\"cmd\":\"fibers\",\"pid\":%ld}\n", pid);
	else
		xasprintf(&req, "{\"cmd\":\"fibers\"}\n");
	o = ctl_request(req);
	free(req);
	if (ctl_str(o, "error") != NULL) {
		fprintf(stderr, "errrelayctl: %s\n", ctl_str(o, "error"));
		cJSON_Delete(o);
		return CTL_EXIT_NO_DAEMON;
	}
	if (json) {
		text = cJSON_PrintUnformatted(o);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(o);
		return 0;
	}
	list = cJSON_GetObjectItemCaseSensitive(o, "scopes");
	cJSON_ArrayForEach(e, list) {
		const char	*fiber = ctl_str(e, "fiber");

		scope = cJSON_GetObjectItemCaseSensitive(e, "scope");
		text = cJSON_PrintUnformatted(scope);
		if (fiber != NULL)
			printf("pid %.0f fiber %s (idle %.0fs): %s\n",
			    ctl_num(e, "pid"), fiber, ctl_num(e, "idle_s"), text);
		else
			printf("pid %.0f process scope: %s\n",
			    ctl_num(e, "pid"), text);
		free(text);
	}
	printf("%.0f scope(s)%s\n", ctl_num(o, "count"), cJSON_IsTrue(
	    cJSON_GetObjectItemCaseSensitive(o, "truncated")) ?
	    ", list truncated" : "");
	cJSON_Delete(o);
	return 0;
}

int
main(int argc, char **argv)
{
	size_t	i;
	int	ch;

	while ((ch = getopt(argc, argv, "+s:h")) != -1) {
		switch (ch) {
		case 's':
			ctl_socket = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++) {
		if (strcmp(argv[0], ctl_cmds[i].name) == 0)
			return ctl_cmds[i].fn(argc, argv);
	}
	fprintf(stderr, "errrelayctl: unknown command: %s\n", argv[0]);
	usage();
}
