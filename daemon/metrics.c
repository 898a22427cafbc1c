/*
 * metrics.c -- GET /metrics on metrics_listen (SPEC §7): the status object
 * of control.c as Prometheus text (prom.c), served by libevent's evhttp on
 * the daemon's event base.
 *
 * Only GET and HEAD of /metrics are served (200); any other path is 404
 * and any other method on /metrics 405.  The server reads no bodies and
 * small headers, and drops a connection idle for METRICS_TIMEOUT seconds.
 * Every address that the host part of metrics_listen resolves to is
 * bound (an address family the host lacks is skipped); failing to bind
 * is fatal at start-up, like the other sockets.  When accept fails (file
 * descriptors ran out) accepting pauses for a second instead of
 * spinning.  At SIGTERM main.c closes the server with the data socket:
 * listeners and open connections go at once, so a scraper never holds
 * the shutdown.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"
#include "daemon/prom.h"

#define METRICS_PATH		"/metrics"
#define METRICS_TIMEOUT		10		/* seconds, read and write */
#define METRICS_MAX_HEADERS	8192		/* bytes of request headers */
#define METRICS_MAX_BODY	1024		/* bytes of request body */
#define METRICS_TEXT		"text/plain; charset=utf-8"
#define METRICS_404		"not found: the metrics are at " METRICS_PATH "\n"
#define METRICS_405		"method not allowed: GET or HEAD\n"

static struct evhttp		 *metrics_http;
static struct event		 *metrics_ev_resume;
static struct evconnlistener	**metrics_listeners;	/* owned by evhttp */
static size_t			  metrics_nlisteners;

/*
 * Send a reply: code, reason and a body of content type ctype.  A HEAD
 * gets the headers only, with the Content-Length the body would have.
 */
static void
metrics_send(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, const char *body, size_t len)
{
	struct evkeyvalq	*hdrs = evhttp_request_get_output_headers(req);
	struct evbuffer		*buf;
	char			 clen[32];

	if ((buf = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evhttp_add_header(hdrs, "Content-Type", ctype);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(clen, sizeof clen, "%zu", len);
		evhttp_add_header(hdrs, "Content-Length", clen);
	} else if (evbuffer_add(buf, body, len) == -1)
		fatalx("evbuffer_add failed");
	evhttp_send_reply(req, code, reason, buf);
	evbuffer_free(buf);
}

static void
metrics_request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri;
	const char		*path = NULL;
	enum evhttp_cmd_type	 cmd;
	cJSON			*status;
	char			*text;
	size_t			 len;

	(void)arg;
	if ((uri = evhttp_request_get_evhttp_uri(req)) != NULL)
		path = evhttp_uri_get_path(uri);
	if (path == NULL || strcmp(path, METRICS_PATH) != 0) {
		metrics_send(req, 404, "Not Found", METRICS_TEXT, METRICS_404,
		    strlen(METRICS_404));
		return;
	}
	cmd = evhttp_request_get_command(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		metrics_send(req, 405, "Method Not Allowed", METRICS_TEXT,
		    METRICS_405, strlen(METRICS_405));
		return;
	}
	status = control_status();
	text = prom_from_status(status, &len);
	cJSON_Delete(status);
	metrics_send(req, 200, "OK", PROM_CONTENT_TYPE, text, len);
	free(text);
}

static void
metrics_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	size_t	i;

	(void)fd; (void)events; (void)arg;
	for (i = 0; i < metrics_nlisteners; i++)
		evconnlistener_enable(metrics_listeners[i]);
}

/* accept failed (EMFILE and the like): stop accepting for a second. */
static void
metrics_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval	tv = { 1, 0 };
	size_t		i;

	(void)l; (void)arg;
	log_warnx("metrics: accept: %s; pausing for a second",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	for (i = 0; i < metrics_nlisteners; i++)
		evconnlistener_disable(metrics_listeners[i]);
	evtimer_add(metrics_ev_resume, &tv);
}

/*
 * Listen on one resolved address and hand the socket to evhttp.  Returns
 * 0, or -1 with errno set and *what naming the call that failed.
 */
static int
metrics_bind(const struct addrinfo *ai, const char **what)
{
	struct evhttp_bound_socket	*bound;
	struct evconnlistener		*l;
	int				 fd, one = 1, saved;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd == -1) {
		*what = "socket";
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1) {
		*what = "setsockopt";
		goto fail;
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		*what = "bind";
		goto fail;
	}
	if (listen(fd, SOMAXCONN) == -1) {
		*what = "listen";
		goto fail;
	}
	/* It fails only when out of memory; the fd may be closed then. */
	if ((bound = evhttp_accept_socket_with_handle(metrics_http,
	    fd)) == NULL)
		fatalx("evhttp_accept_socket_with_handle failed");
	l = evhttp_bound_socket_get_listener(bound);
	evconnlistener_set_error_cb(l, metrics_accept_error_cb);
	metrics_listeners = xreallocarray(metrics_listeners,
	    metrics_nlisteners + 1, sizeof *metrics_listeners);
	metrics_listeners[metrics_nlisteners++] = l;
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/*
 * Start serving on cfg->metrics_listen.  Returns 0, or -1 with *cause
 * naming the address and what failed (main.c makes it fatal).
 */
int
metrics_init(char **cause)
{
	struct addrinfo	 hints, *res = NULL, *ai;
	const char	*addr = cfg->metrics_listen, *port = NULL, *what = NULL;
	char		*host;
	int		 rv, nbound = 0, lasterr = 0;

	if (addr == NULL)
		return 0;
	if (config_split_listen(addr, &host, &port) == -1) {
		xasprintf(cause, "metrics_listen %s: not host:port", addr);
		return -1;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rv = getaddrinfo(host, port, &hints, &res);
	free(host);
	if (rv != 0) {
		xasprintf(cause, "metrics_listen %s: %s", addr,
		    rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
		return -1;
	}

	if ((metrics_http = evhttp_new(base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_set_timeout(metrics_http, METRICS_TIMEOUT);
	evhttp_set_max_headers_size(metrics_http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(metrics_http, METRICS_MAX_BODY);
	/* Every method reaches the callback, which answers 405 itself. */
	evhttp_set_allowed_methods(metrics_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(metrics_http, metrics_request_cb, NULL);
	if ((metrics_ev_resume = evtimer_new(base, metrics_resume_cb,
	    NULL)) == NULL)
		fatalx("evtimer_new failed");

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (metrics_bind(ai, &what) == 0) {
			nbound++;
			continue;
		}
		/* An address family this host does not have is skipped. */
		if (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL) {
			lasterr = errno;
			continue;
		}
		xasprintf(cause, "metrics_listen %s: %s: %s", addr, what,
		    strerror(errno));
		goto fail;
	}
	if (nbound == 0) {
		xasprintf(cause, "metrics_listen %s: %s: %s", addr,
		    what != NULL ? what : "getaddrinfo", lasterr != 0 ?
		    strerror(lasterr) : "no address");
		goto fail;
	}
	freeaddrinfo(res);
	log_info("metrics: serving http://%s%s", addr, METRICS_PATH);
	return 0;
fail:
	freeaddrinfo(res);
	metrics_close();
	return -1;
}

/* Stop serving: listeners and open connections are freed.  Idempotent. */
void
metrics_close(void)
{
	if (metrics_ev_resume != NULL) {
		event_free(metrics_ev_resume);
		metrics_ev_resume = NULL;
	}
	if (metrics_http != NULL) {
		evhttp_free(metrics_http);
		metrics_http = NULL;
	}
	free(metrics_listeners);
	metrics_listeners = NULL;
	metrics_nlisteners = 0;
}
