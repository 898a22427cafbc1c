/*
 * errrelayctl.c -- the control CLI for errrelayd (SPEC §6).
 *
 * A plain blocking program: it connects to the control socket, sends one
 * request line, reads one JSON answer line and prints it.  Its commands sit
 * in a table.  Exit status of status: 0 healthy, 1 degraded, 2 the daemon
 * did not answer (with one line saying why).  flush and dead: 0 done, 1
 * refused (permission, or an id that is not dead-lettered), 2 the daemon
 * did not answer.  send goes through the data socket instead, with
 * liberrrelay (clients/c/errrelay.h) like any application: 0 acked, 1
 * refused, 2 the daemon did not answer.
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

#include "clients/c/errrelay.h"
#include "common/xmalloc.h"

#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif
#define CTL_DEFAULT_SOCKET	RUNSTATEDIR "/errrelay/control.sock"
#define CTL_DEFAULT_DATA_SOCKET	RUNSTATEDIR "/errrelay.sock"
#define CTL_EXIT_REFUSED	1
#define CTL_EXIT_NO_DAEMON	2
#define CTL_SEND_TIMEOUT_MS	10000

static const char	*ctl_socket = CTL_DEFAULT_SOCKET;

struct ctl_cmd {
	const char	*name;
	const char	*usage;
	int		(*fn)(int, char **);
};

static int	ctl_status(int, char **);
static int	ctl_fibers(int, char **);
static int	ctl_send(int, char **);
static int	ctl_flush(int, char **);
static int	ctl_dead(int, char **);

static const struct ctl_cmd ctl_cmds[] = {
	{ "status", "status [--json]", ctl_status },
	{ "fibers", "fibers [--pid N] [--json]", ctl_fibers },
	{ "flush", "flush", ctl_flush },
	{ "dead", "dead [--json] | dead --requeue [EVENT_ID...]", ctl_dead },
	{ "send", "send [--fiber F] [--app A] [--level L] [--tag k=v]... "
	    "[--socket DATA_SOCKET] MESSAGE", ctl_send },
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
 * Send one request and return the parsed answer, or NULL with *why set to
 * one line saying what went wrong (the caller frees it).
 */
static cJSON *
ctl_try_request(const char *req, char **why)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { 10, 0 };
	char			*buf = NULL;
	size_t			 len = 0, cap = 0;
	ssize_t			 n;
	int			 fd;
	cJSON			*o;

	*why = NULL;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(ctl_socket) >= sizeof sun.sun_path) {
		xasprintf(why, "%s: socket path too long", ctl_socket);
		return NULL;
	}
	strcpy(sun.sun_path, ctl_socket);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(why, "socket: %s", strerror(errno));
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		xasprintf(why, "cannot connect to %s: %s (is errrelayd "
		    "running?)", ctl_socket, strerror(errno));
		close(fd);
		return NULL;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		xasprintf(why, "%s: write: %s", ctl_socket, strerror(errno));
		close(fd);
		return NULL;
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
			xasprintf(why, "%s: no answer: %s", ctl_socket,
			    strerror(errno));
			close(fd);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
			break;
	}
	close(fd);
	if (len == 0) {
		xasprintf(why, "%s: the daemon closed the connection without "
		    "answering", ctl_socket);
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	if ((o = cJSON_Parse(buf)) == NULL || !cJSON_IsObject(o)) {
		xasprintf(why, "%s: unreadable answer", ctl_socket);
		cJSON_Delete(o);
		free(buf);
		return NULL;
	}
	free(buf);
	return o;
}

/*
 * Send one request and return the parsed answer.  On any failure print
 * one line saying why and exit 2: the daemon did not answer.
 */
static cJSON *
ctl_request(const char *req)
{
	cJSON	*o;
	char	*why;

	if ((o = ctl_try_request(req, &why)) == NULL) {
		fprintf(stderr, "errrelayctl: %s\n", why);
		free(why);
		exit(CTL_EXIT_NO_DAEMON);
	}
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

/* Print o as one line of compact JSON. */
static void
ctl_print_json(const cJSON *o)
{
	char	*text;

	if ((text = cJSON_PrintUnformatted(o)) == NULL) {
		fprintf(stderr, "errrelayctl: out of memory\n");
		exit(CTL_EXIT_NO_DAEMON);
	}
	printf("%s\n", text);
	free(text);
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
	if (json)
		ctl_print_json(o);
	else {
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
		ctl_print_json(o);
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

/*
 * An answer that carries "error": print it and return 1 (the daemon
 * refused), else 0.
 */
static int
ctl_refused(const cJSON *o)
{
	const char	*err = ctl_str(o, "error");

	if (err == NULL)
		return 0;
	fprintf(stderr, "errrelayctl: %s\n", err);
	return 1;
}

static int
ctl_flush(int argc, char **argv)
{
	cJSON	*o;
	int	 rc = 0;

	(void)argv;
	if (argc != 1)
		usage();
	o = ctl_request("{\"cmd\":\"flush\"}\n");
	if (ctl_refused(o))
		rc = CTL_EXIT_REFUSED;
	else
		printf("flush: %.0f route(s) retrying now\n",
		    ctl_num(o, "routes"));
	cJSON_Delete(o);
	return rc;
}

/* dead --requeue [ID...]: ids are checked by the daemon. */
static int
ctl_requeue(int argc, char **argv)
{
	cJSON		*req, *ids, *o, *miss;
	const cJSON	*m;
	char		*text, *line;
	int		 i, rc = 0;

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "requeue");
	ids = cJSON_AddArrayToObject(req, "ids");
	for (i = 0; i < argc; i++)
		cJSON_AddItemToArray(ids, cJSON_CreateString(argv[i]));
	if ((text = cJSON_PrintUnformatted(req)) == NULL) {
		fprintf(stderr, "errrelayctl: out of memory\n");
		exit(CTL_EXIT_NO_DAEMON);
	}
	cJSON_Delete(req);
	xasprintf(&line, "%s\n", text);
	free(text);
	o = ctl_request(line);
	free(line);
	if (ctl_refused(o)) {
		cJSON_Delete(o);
		return CTL_EXIT_REFUSED;
	}
	printf("requeued %.0f event(s)\n", ctl_num(o, "requeued"));
	miss = cJSON_GetObjectItemCaseSensitive(o, "not_found");
	cJSON_ArrayForEach(m, miss) {
		if (cJSON_IsString(m))
			fprintf(stderr, "errrelayctl: not dead-lettered: %s\n",
			    m->valuestring);
		rc = CTL_EXIT_REFUSED;
	}
	cJSON_Delete(o);
	return rc;
}

static int
ctl_dead(int argc, char **argv)
{
	cJSON		*o, *list, *e;
	int		 json = 0, i;

	if (argc >= 2 && strcmp(argv[1], "--requeue") == 0)
		return ctl_requeue(argc - 2, argv + 2);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else
			usage();
	}
	o = ctl_request("{\"cmd\":\"dead\"}\n");
	if (ctl_refused(o)) {
		cJSON_Delete(o);
		return CTL_EXIT_REFUSED;
	}
	if (json) {
		ctl_print_json(o);
		cJSON_Delete(o);
		return 0;
	}
	list = cJSON_GetObjectItemCaseSensitive(o, "dead");
	cJSON_ArrayForEach(e, list) {
		printf("%s %s %3.0f ", ctl_str(e, "event_id"),
		    ctl_str(e, "route"), ctl_num(e, "status"));
		ctl_print_age("at", ctl_num(e, "time"));
		printf(" %s\n", ctl_str(e, "reason") != NULL ?
		    ctl_str(e, "reason") : "");
	}
	printf("%.0f dead-lettered event(s)%s\n", ctl_num(o, "count"),
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "truncated")) ?
	    ", list truncated" : "");
	cJSON_Delete(o);
	return 0;
}

/*
 * The data socket to send to: the daemon's own answer to status when the
 * control socket answers (it knows its configured socket), else the
 * built-in default.  Returns a string the caller frees.
 */
static char *
ctl_data_socket(void)
{
	cJSON		*o;
	const char	*sock;
	char		*why, *path;

	if ((o = ctl_try_request("{\"cmd\":\"status\"}\n", &why)) == NULL) {
		free(why);
		return xstrdup(CTL_DEFAULT_DATA_SOCKET);
	}
	sock = ctl_str(o, "socket");
	path = xstrdup(sock != NULL && *sock != '\0' ? sock :
	    CTL_DEFAULT_DATA_SOCKET);
	cJSON_Delete(o);
	return path;
}

/*
 * send: one test event through the data socket, in ack mode, like any
 * application would send it.  Prints the acknowledged event_id.  Exit 0
 * acked, 1 refused (by the daemon, or by the library for a bad argument),
 * 2 the daemon is down or did not answer; failures print one line.
 */
static int
ctl_send(int argc, char **argv)
{
	struct errrelay	*h;
	cJSON		*ev, *tags = NULL;
	const char	*fiber = NULL, *app = NULL, *level = "error";
	const char	*sock = NULL, *msg = NULL, *eq;
	char		*path, *key, *text, eid[ERRRELAY_EVENT_ID_SIZE];
	int		 i, kind, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0 && i + 2 == argc)
			msg = argv[++i];
		else if (i + 1 == argc && strncmp(argv[i], "--", 2) != 0)
			msg = argv[i];
		else if (i + 1 == argc)
			usage();
		else if (strcmp(argv[i], "--fiber") == 0)
			fiber = argv[++i];
		else if (strcmp(argv[i], "--app") == 0)
			app = argv[++i];
		else if (strcmp(argv[i], "--level") == 0)
			level = argv[++i];
		else if (strcmp(argv[i], "--socket") == 0)
			sock = argv[++i];
		else if (strcmp(argv[i], "--tag") == 0) {
			i++;
			if ((eq = strchr(argv[i], '=')) == NULL ||
			    eq == argv[i]) {
				fprintf(stderr, "errrelayctl: --tag wants "
				    "key=value, not %s\n", argv[i]);
				cJSON_Delete(tags);
				return CTL_EXIT_NO_DAEMON;
			}
			if (tags == NULL)
				tags = cJSON_CreateObject();
			key = xstrndup(argv[i], (size_t)(eq - argv[i]));
			cJSON_DeleteItemFromObjectCaseSensitive(tags, key);
			cJSON_AddStringToObject(tags, key, eq + 1);
			free(key);
		} else
			usage();
	}
	if (msg == NULL)
		usage();

	if ((ev = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(ev, "message", msg) == NULL ||
	    cJSON_AddStringToObject(ev, "level", level) == NULL ||
	    (tags != NULL && !cJSON_AddItemToObject(ev, "tags", tags)) ||
	    (text = cJSON_PrintUnformatted(ev)) == NULL) {
		fprintf(stderr, "errrelayctl: out of memory\n");
		exit(CTL_EXIT_NO_DAEMON);
	}
	cJSON_Delete(ev);

	path = sock != NULL ? xstrdup(sock) : ctl_data_socket();
	if ((h = errrelay_open(path, app, ERRRELAY_ACK | ERRRELAY_LAZY)) ==
	    NULL) {
		fprintf(stderr, "errrelayctl: %s: %s\n", path,
		    errno == EINVAL ? "the app name is not valid UTF-8" :
		    strerror(errno));
		free(text);
		free(path);
		return errno == EINVAL ? CTL_EXIT_REFUSED : CTL_EXIT_NO_DAEMON;
	}
	errrelay_set_timeout(h, CTL_SEND_TIMEOUT_MS);
	if (errrelay_event(h, fiber, text, eid) == 0) {
		printf("%s\n", eid);
		rc = 0;
	} else {
		kind = errrelay_errkind(h);
		fprintf(stderr, "errrelayctl: %s%s\n", errrelay_error(h),
		    kind == ERRRELAY_E_CONNECT &&
		    (errrelay_errno(h) == ENOENT ||
		    errrelay_errno(h) == ECONNREFUSED) ?
		    " (is errrelayd running?)" : "");
		rc = kind == ERRRELAY_E_REFUSED || kind == ERRRELAY_E_ARG ?
		    CTL_EXIT_REFUSED : CTL_EXIT_NO_DAEMON;
	}
	errrelay_close(h);
	free(text);
	free(path);
	return rc;
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
