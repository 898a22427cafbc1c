/*
 * control.c -- the control socket that errrelayctl talks to.
 *
 * Protocol: the client writes one JSON object line {"cmd":"status"}; the
 * daemon answers one JSON object line and closes.  The socket is mode 0600
 * and owned by the daemon's user.  Commands sit in a table; the read-only
 * ones (status, fibers, dead) answer whoever could connect, the ones that
 * change state (flush, requeue) only root and the daemon's own uid, read
 * with SO_PEERCRED when the connection is accepted (SPEC §6).
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

#define CONTROL_MAX_REQUEST	(1024 * 1024)	/* requeue may list many ids */
#define CONTROL_DEAD_MAX	10000		/* dead letters in one answer */
#define CONTROL_BAD_REQUEST	"bad request: want {\"cmd\":\"...\"}"

/* One control connection. */
struct control_client {
	struct bufferevent	*bev;
	int			 cred;	/* uid is known */
	uid_t			 uid;
};

static struct evconnlistener	*control_listener;
static char			*control_path;

/*
 * The status object of SPEC §6 and §11 (new; the caller deletes it).
 * errrelayctl status prints it; metrics.c turns it into Prometheus text.
 */
cJSON *
control_status(void)
{
	struct fibers_counts	 fc;
	struct spool_stats	 ss;
	cJSON			*o, *c, *rej, *drop, *ev, *sp, *routes;
	double			 now = now_s();
	int			 degraded = 0, i;

	fibers_get_counts(fibers, &fc);
	spool_get_stats(spool, &ss);

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "version", PACKAGE_VERSION);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddNumberToObject(o, "uptime_s", (double)(int64_t)(now -
	    start_time));
	cJSON_AddStringToObject(o, "socket", cfg->socket);
	cJSON_AddStringToObject(o, "control_socket", cfg->control_socket);
	cJSON_AddNumberToObject(o, "connections", (double)nconns);
	cJSON_AddNumberToObject(o, "processes", (double)fc.procs);
	cJSON_AddNumberToObject(o, "fibers", (double)fc.live);

	c = cJSON_AddObjectToObject(o, "counters");
	cJSON_AddNumberToObject(c, "received", (double)stats.received);
	cJSON_AddNumberToObject(c, "accepted", (double)stats.accepted);
	cJSON_AddNumberToObject(c, "stored", (double)stats.stored);
	cJSON_AddNumberToObject(c, "duplicates", (double)stats.duplicates);
	cJSON_AddNumberToObject(c, "delivered", (double)stats.delivered);
	cJSON_AddNumberToObject(c, "retried", (double)stats.retried);
	cJSON_AddNumberToObject(c, "dead", (double)stats.dead);
	rej = cJSON_AddObjectToObject(c, "rejected");
	for (i = MSG_E_BAD_JSON; i < MSG_E_COUNT; i++)
		cJSON_AddNumberToObject(rej, msg_err_name((enum msg_err)i),
		    (double)stats.rejected[i]);
	drop = cJSON_AddObjectToObject(c, "dropped");
	cJSON_AddNumberToObject(drop, "overflow",
	    (double)stats.dropped_overflow);
	cJSON_AddNumberToObject(drop, "expired", (double)stats.dropped_expired);
	ev = cJSON_AddObjectToObject(c, "fibers_evicted");
	cJSON_AddNumberToObject(ev, "lru", (double)fc.evicted_lru);
	cJSON_AddNumberToObject(ev, "ttl", (double)fc.evicted_ttl);
	cJSON_AddNumberToObject(ev, "grace", (double)fc.evicted_grace);
	ev = cJSON_AddObjectToObject(c, "sanitised");
	cJSON_AddNumberToObject(ev, "tag_values_cut",
	    (double)stats.merge.tag_values_cut);
	cJSON_AddNumberToObject(ev, "tag_newlines",
	    (double)stats.merge.tag_newlines);
	cJSON_AddNumberToObject(ev, "tag_keys_dropped",
	    (double)stats.merge.tag_keys_dropped);
	cJSON_AddNumberToObject(c, "connections_total",
	    (double)stats.connections_total);
	cJSON_AddNumberToObject(c, "commits", (double)stats.commits);
	cJSON_AddNumberToObject(c, "commit_errors", (double)stats.commit_errors);

	sp = cJSON_AddObjectToObject(o, "spool");
	cJSON_AddStringToObject(sp, "path", cfg->spool);
	cJSON_AddNumberToObject(sp, "rows", (double)ss.rows);
	cJSON_AddNumberToObject(sp, "bytes", (double)ss.bytes);
	cJSON_AddNumberToObject(sp, "oldest_age_s", ss.rows > 0 &&
	    ss.oldest > 0 ? now - ss.oldest : 0);
	cJSON_AddNumberToObject(sp, "dead", (double)ss.dead);
	cJSON_AddNumberToObject(sp, "max_bytes", (double)cfg->max_spool_bytes);
	cJSON_AddBoolToObject(sp, "write_error", commit_degraded());

	routes = cJSON_AddArrayToObject(o, "routes");
	forward_status(routes, &degraded);
	if (commit_degraded() ||
	    (double)ss.bytes > 0.9 * (double)cfg->max_spool_bytes ||
	    stats.dropped_overflow > 0 || stats.dropped_expired > 0)
		degraded = 1;
	cJSON_AddStringToObject(o, "health", degraded ? "degraded" : "ok");
	return o;
}

#define CONTROL_FIBERS_MAX	10000	/* scopes listed in one answer */

struct control_walk {
	cJSON		*list;
	size_t		 n;
	int		 truncated;
};

static int
control_fibers_cb(pid_t pid, const char *fiber, const struct scope *s,
    double last_used, void *arg)
{
	struct control_walk	*w = arg;
	cJSON			*o;

	if (fiber == NULL && scope_empty(s))
		return 0;	/* an empty process scope says nothing */
	if (w->n == CONTROL_FIBERS_MAX) {
		w->truncated = 1;
		return 1;
	}
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "pid", (double)pid);
	if (fiber != NULL)
		cJSON_AddStringToObject(o, "fiber", fiber);
	else
		cJSON_AddNullToObject(o, "fiber");
	cJSON_AddNumberToObject(o, "idle_s", now_s() - last_used);
	cJSON_AddItemToObject(o, "scope", scope_to_json(s));
	cJSON_AddItemToArray(w->list, o);
	w->n++;
	return 0;
}

/*
 * The live scopes, of one pid or of all (req "pid"): process scopes have
 * "fiber": null.  At most CONTROL_FIBERS_MAX are listed.
 */
static cJSON *
control_fibers(const cJSON *req)
{
	struct control_walk	 w;
	const cJSON		*pid;
	cJSON			*o;

	pid = cJSON_GetObjectItemCaseSensitive(req, "pid");
	o = cJSON_CreateObject();
	w.list = cJSON_AddArrayToObject(o, "scopes");
	w.n = 0;
	w.truncated = 0;
	fibers_walk(fibers, cJSON_IsNumber(pid) ? (pid_t)pid->valuedouble : 0,
	    control_fibers_cb, &w);
	cJSON_AddNumberToObject(o, "count", (double)w.n);
	cJSON_AddBoolToObject(o, "truncated", w.truncated);
	return o;
}

/* {"ok":false,"error":"..."} with a printf-style message. */
static cJSON * __attribute__((format(printf, 1, 2)))
control_error(const char *fmt, ...)
{
	cJSON	*o;
	va_list	 ap;
	char	*text;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) == -1)
		fatalx("vasprintf failed");
	va_end(ap);
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", 0);
	cJSON_AddStringToObject(o, "error", text);
	free(text);
	return o;
}

/* The dead-letter table, oldest first, at most CONTROL_DEAD_MAX rows. */
static cJSON *
control_dead(const cJSON *req)
{
	struct spool_dead	*list;
	size_t			 n, i;
	char			*cause = NULL;
	cJSON			*o, *arr, *e;

	(void)req;
	if (spool_dead_list(spool, &list, &n, &cause) == -1) {
		o = control_error("reading the dead-letter table: %s", cause);
		free(cause);
		return o;
	}
	o = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(o, "dead");
	for (i = 0; i < n && i < CONTROL_DEAD_MAX; i++) {
		e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "event_id", list[i].event_id);
		cJSON_AddStringToObject(e, "route", list[i].route);
		cJSON_AddNumberToObject(e, "status", list[i].status);
		cJSON_AddStringToObject(e, "reason", list[i].reason != NULL ?
		    list[i].reason : "");
		cJSON_AddNumberToObject(e, "time", list[i].time);
		cJSON_AddNumberToObject(e, "received", list[i].received);
		cJSON_AddItemToArray(arr, e);
	}
	cJSON_AddNumberToObject(o, "count", (double)n);
	cJSON_AddBoolToObject(o, "truncated", n > CONTROL_DEAD_MAX);
	spool_dead_free(list, n);
	return o;
}

/*
 * Requeue dead-lettered events: req "ids" lists event_ids (dashes and
 * upper case allowed), absent or empty means all.  Ids with nothing
 * dead-lettered come back in "not_found"; the others are requeued anyway.
 */
static cJSON *
control_requeue(const cJSON *req)
{
	const cJSON	*ids, *id;
	size_t		 n = 0, i, moved, *each;
	char		(*norm)[33], *cause = NULL;
	const char	**want;
	cJSON		*o, *missing;

	ids = cJSON_GetObjectItemCaseSensitive(req, "ids");
	if (ids != NULL && !cJSON_IsArray(ids))
		return control_error("bad request: ids must be a list");
	norm = xcalloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof *norm);
	want = xcalloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof *want);
	each = xcalloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof *each);
	cJSON_ArrayForEach(id, ids) {
		if (!cJSON_IsString(id) ||
		    msg_event_id_normalise(id->valuestring, norm[n]) == -1) {
			o = control_error("bad request: an id is not an "
			    "event_id (32 hex digits)");
			goto out;
		}
		want[n] = norm[n];
		n++;
	}
	if (commit_requeue(want, n, each, &moved, &cause) == -1) {
		o = control_error("requeue failed: %s", cause);
		free(cause);
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", 1);
	cJSON_AddNumberToObject(o, "requeued", (double)moved);
	missing = cJSON_AddArrayToObject(o, "not_found");
	for (i = 0; i < n; i++) {
		if (each[i] == 0)
			cJSON_AddItemToArray(missing,
			    cJSON_CreateString(norm[i]));
	}
out:
	free(norm);
	free(want);
	free(each);
	return o;
}

/* Retry every route now; the backoff wait is skipped, windows are not. */
static cJSON *
control_flush(const cJSON *req)
{
	cJSON	*o;
	int	 n;

	(void)req;
	n = forward_flush();
	log_info("flush requested: %d route(s) retrying now", n);
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", 1);
	cJSON_AddNumberToObject(o, "routes", n);
	return o;
}

static cJSON *
control_status_cmd(const cJSON *req)
{
	(void)req;
	return control_status();
}

static const struct control_cmd {
	const char	*name;
	int		 privileged;	/* changes state */
	cJSON		*(*fn)(const cJSON *);
} control_cmds[] = {
	{ "status",	0, control_status_cmd },
	{ "fibers",	0, control_fibers },
	{ "dead",	0, control_dead },
	{ "flush",	1, control_flush },
	{ "requeue",	1, control_requeue },
};

/* Run the request of client cl; returns the answer. */
static cJSON *
control_run(struct control_client *cl, const cJSON *req)
{
	const struct control_cmd	*c;
	const cJSON			*cmd;
	size_t				 i;

	cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	if (!cJSON_IsString(cmd))
		return control_error(CONTROL_BAD_REQUEST);
	for (i = 0; i < sizeof control_cmds / sizeof control_cmds[0]; i++) {
		c = &control_cmds[i];
		if (strcmp(cmd->valuestring, c->name) != 0)
			continue;
		if (c->privileged && (!cl->cred ||
		    (cl->uid != 0 && cl->uid != geteuid()))) {
			if (cl->cred)
				log_warnx("control: %s refused to uid %u",
				    c->name, (unsigned)cl->uid);
			return control_error("permission denied: %s is for "
			    "root and the daemon's user (uid %u)", c->name,
			    (unsigned)geteuid());
		}
		return c->fn(req);
	}
	return control_error("unknown command");
}

static void
control_reply(struct bufferevent *bev, cJSON *o)
{
	char	*text;

	text = cJSON_PrintUnformatted(o);
	if (text == NULL)
		fatalx("cJSON_PrintUnformatted failed");
	bufferevent_write(bev, text, strlen(text));
	bufferevent_write(bev, "\n", 1);
	free(text);
	cJSON_Delete(o);
}

static void
control_client_free(struct control_client *cl)
{
	bufferevent_free(cl->bev);
	free(cl);
}

static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	control_client_free(arg);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev; (void)what;
	control_client_free(arg);
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_client	*cl = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;
	cJSON			*req, *resp;

	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST) {
			bufferevent_disable(bev, EV_READ);
			control_reply(bev, control_error("request too long"));
		}
		return;
	}
	bufferevent_disable(bev, EV_READ);
	req = cJSON_ParseWithLength(line, len);
	free(line);
	if (!cJSON_IsObject(req))
		resp = control_error(CONTROL_BAD_REQUEST);
	else
		resp = control_run(cl, req);
	cJSON_Delete(req);
	control_reply(bev, resp);
}

static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control_client	*cl;
	struct bufferevent	*bev;
	struct timeval		 tv = { 10, 0 };
	struct ucred		 uc;
	socklen_t		 uclen = sizeof uc;

	(void)l; (void)sa; (void)salen; (void)arg;
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	cl = xcalloc(1, sizeof *cl);
	cl->bev = bev;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &uclen) == 0 &&
	    uclen == sizeof uc) {
		cl->cred = 1;
		cl->uid = uc.uid;
	} else
		log_warn("control: SO_PEERCRED");
	bufferevent_setcb(bev, control_read_cb, control_write_cb,
	    control_event_cb, cl);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ);
}

int
control_init(char **cause)
{
	char	*dir, *slash;
	int	 fd;

	dir = xstrdup(cfg->control_socket);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0750) == -1 && errno != EEXIST)
			log_warn("mkdir %s", dir);
	}
	free(dir);
	fd = listen_unix(cfg->control_socket, 0600, 0, 0, cause);
	if (fd == -1)
		return -1;
	control_listener = evconnlistener_new(base, control_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (control_listener == NULL) {
		close(fd);
		xasprintf(cause, "evconnlistener_new failed");
		return -1;
	}
	control_path = xstrdup(cfg->control_socket);
	return 0;
}

void
control_close(void)
{
	if (control_listener != NULL)
		evconnlistener_free(control_listener);
	control_listener = NULL;
	if (control_path != NULL) {
		unlink(control_path);
		free(control_path);
		control_path = NULL;
	}
}
