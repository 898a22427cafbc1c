/*
 * forward.c -- delivery of spooled events, per route (SPEC §5).
 *
 * Each route walks the spool with a cursor ("every row of mine with an id
 * above X"; ids are AUTOINCREMENT so the cursor never misses a row), takes
 * batches and sends them: the file upstream appends NDJSON and fsyncs; the
 * http upstream POSTs an NDJSON batch; the sentry upstream POSTs one
 * envelope per event.  At most max_inflight requests per route are in
 * flight, all through curlm.c, so nothing blocks the loop (the file
 * upstream writes synchronously: one write and one fsync of at most
 * FORWARD_FILE_TURN batches per loop turn).
 *
 * Outcome of a batch:
 * - 2xx: its rows are deleted (folded into the next spool commit);
 * - network error, 408, 429, 5xx, or anything not final: the batch is
 *   kept in memory and the route backs off (full jitter, 1 s doubling to
 *   5 min); the kept batches go first when the wait is over;
 * - any other 4xx: its rows move to the dead-letter table.
 * Rate limits (SPEC §5, §11 "Delivery"): X-Sentry-Rate-Limits is read on
 * every response, Retry-After on a 429 (60 s when neither comes; the
 * Sentry header wins over Retry-After).  A limit for events puts the
 * route in ROUTE_RATE_LIMITED until its end: nothing is sent meanwhile,
 * the batch that got the 429 is kept, and forward_flush does not cut the
 * window short.  A 2xx carrying a limit is delivered and still sets the
 * window.
 * A route never waits for another: each has its own state and timer.
 * Rows are deleted only after a 2xx, so a restart resends anything not
 * confirmed (at-least-once).
 *
 * Routes follow the config (forward_reload on SIGHUP), matched by name: a
 * route whose upstream is unchanged keeps its state; one whose upstream
 * changed starts afresh (no backoff, no window: they were the old
 * upstream's) and re-reads its rows from the lowest one it held.  Rows of
 * a route that is not configured (removed, or found in the spool at start)
 * stay in the spool untouched: the route shows in status as
 * "unconfigured" with its pending count (health degraded) until it is
 * configured again or max_age expires them.  Events are never sent to
 * an upstream that was not configured for their route.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"
#include "daemon/format.h"
#include "daemon/ratelimit.h"

#define FORWARD_BACKOFF_BASE	1.0
#define FORWARD_BACKOFF_CAP	300.0
#define FORWARD_FILE_TURN	16	/* file: batches per write and fsync */

enum route_state {
	ROUTE_OK,
	ROUTE_BACKOFF,
	ROUTE_RATE_LIMITED
};

struct batch {
	TAILQ_ENTRY(batch)	 entry;
	struct route		*r;
	unsigned int		 gen;	/* r->gen when it was taken */
	struct spool_row	*rows;
	size_t			 n;
	CURL			*easy;
	struct curl_slist	*hdrs;
	char			*body;
	size_t			 len;
	char			 errbuf[CURL_ERROR_SIZE];
	char			*h_rate_limits;	/* X-Sentry-Rate-Limits */
	char			*h_retry_after;	/* Retry-After */
};
TAILQ_HEAD(batches, batch);

/*
 * A route and its delivery state.  Invariants: inflight == number of
 * batches on flying; cursor is the highest id ever taken; more is 1 when
 * rows above the cursor may exist.
 */
struct route {
	TAILQ_ENTRY(route)	 entry;
	char			*name;
	int			 configured;	/* 0: rows kept, nothing sent */
	unsigned int		 gen;		/* bumped when the upstream
						   changes */
	enum upstream_type	 type;
	char			*path;
	char			*url;
	struct dsn		 dsn;
	int			 batch_size;
	int			 max_inflight;
	int			 gzip;
	char			*ca_file;
	long			 timeout_ms;

	enum route_state	 state;
	double			 retry_at;
	int			 failures;
	struct event		*timer;
	struct event		*kick;
	int			 inflight;
	int64_t			 cursor;
	int			 more;
	struct batches		 retry;
	struct batches		 flying;
	char			 last_error[CURL_ERROR_SIZE + 256];
	double			 last_success;
	uint64_t		 delivered;
	uint64_t		 dead;
};
TAILQ_HEAD(routes, route);

static struct routes	routes = TAILQ_HEAD_INITIALIZER(routes);

static void	forward_pump(struct route *);

static void
forward_batch_free(struct batch *b)
{
	if (b->easy != NULL)
		curl_easy_cleanup(b->easy);
	curl_slist_free_all(b->hdrs);
	free(b->body);
	free(b->h_rate_limits);
	free(b->h_retry_after);
	spool_rows_free(b->rows, b->n);
	free(b);
}

/* Drop the request parts of a batch, keeping its rows for a retry. */
static void
forward_batch_reset(struct batch *b)
{
	if (b->easy != NULL)
		curl_easy_cleanup(b->easy);
	b->easy = NULL;
	curl_slist_free_all(b->hdrs);
	b->hdrs = NULL;
	free(b->body);
	b->body = NULL;
	b->len = 0;
	free(b->h_rate_limits);
	b->h_rate_limits = NULL;
	free(b->h_retry_after);
	b->h_retry_after = NULL;
}

/* curl write callback: response bodies are not needed; drop them. */
static size_t
forward_discard_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	(void)buf; (void)arg;
	return size * nitems;
}

/*
 * curl header callback: keep the rate-limit headers of the last response
 * in the batch (a new status line forgets those of an interim one).
 * Returns the number of bytes taken, all of them.
 */
static size_t
forward_header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct batch	*b = arg;
	size_t		 len = size * nitems, nlen;
	const char	*colon, *v, *e;
	char		**slot;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		free(b->h_rate_limits);
		b->h_rate_limits = NULL;
		free(b->h_retry_after);
		b->h_retry_after = NULL;
		return len;
	}
	if ((colon = memchr(buf, ':', len)) == NULL)
		return len;
	nlen = (size_t)(colon - buf);
	if (nlen == strlen("X-Sentry-Rate-Limits") &&
	    strncasecmp(buf, "X-Sentry-Rate-Limits", nlen) == 0)
		slot = &b->h_rate_limits;
	else if (nlen == strlen("Retry-After") &&
	    strncasecmp(buf, "Retry-After", nlen) == 0)
		slot = &b->h_retry_after;
	else
		return len;
	v = colon + 1;
	e = buf + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' ||
	    e[-1] == '\t'))
		e--;
	free(*slot);
	*slot = xstrndup(v, (size_t)(e - v));
	return len;
}

static void
forward_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct route	*r = arg;

	(void)fd; (void)events;
	r->state = ROUTE_OK;
	forward_pump(r);
}

static void
forward_kick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct route	*r = arg;

	(void)fd; (void)events;
	forward_pump(r);
	daemon_exit_check();
}

static struct route *
forward_find(const char *name)
{
	struct route	*r;

	TAILQ_FOREACH(r, &routes, entry) {
		if (strcmp(r->name, name) == 0)
			return r;
	}
	return NULL;
}

/* A new route, not configured yet, with nothing taken. */
static struct route *
forward_route_new(const char *name)
{
	struct route	*r;

	r = xcalloc(1, sizeof *r);
	r->name = xstrdup(name);
	r->state = ROUTE_OK;
	r->more = 1;
	TAILQ_INIT(&r->retry);
	TAILQ_INIT(&r->flying);
	r->timer = evtimer_new(base, forward_timer_cb, r);
	r->kick = event_new(base, -1, 0, forward_kick_cb, r);
	TAILQ_INSERT_TAIL(&routes, r, entry);
	return r;
}

static int
forward_streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* 1 if cr names the upstream r sends to now (same place, same key). */
static int
forward_same_upstream(const struct route *r, const struct config_route *cr)
{
	if (!r->configured || r->type != cr->type)
		return 0;
	switch (r->type) {
	case UPSTREAM_FILE:
		return forward_streq(r->path, cr->path);
	case UPSTREAM_HTTP:
		return forward_streq(r->url, cr->url) &&
		    forward_streq(r->ca_file, cr->ca_file);
	case UPSTREAM_SENTRY:
		return forward_streq(r->dsn.envelope_url,
		    cr->dsn.envelope_url) &&
		    forward_streq(r->dsn.public_key, cr->dsn.public_key) &&
		    forward_streq(r->dsn.secret_key, cr->dsn.secret_key) &&
		    forward_streq(r->ca_file, cr->ca_file);
	}
	return 0;
}

/*
 * Put a batch's rows back to the spool side: they are read again from
 * the cursor (lowered to just below them).  Used when the batch can no
 * longer go where it was meant to (route removed, upstream changed).
 */
static void
forward_forget(struct batch *b)
{
	struct route	*r = b->r;

	if (b->n > 0 && b->rows[0].id - 1 < r->cursor)
		r->cursor = b->rows[0].id - 1;
	r->more = 1;
	forward_batch_free(b);
}

/* Forget every kept batch of r and leave backoff or a window. */
static void
forward_route_reset(struct route *r)
{
	struct batch	*b;

	while ((b = TAILQ_FIRST(&r->retry)) != NULL) {
		TAILQ_REMOVE(&r->retry, b, entry);
		forward_forget(b);
	}
	evtimer_del(r->timer);
	r->state = ROUTE_OK;
	r->retry_at = 0;
	r->failures = 0;
	r->last_error[0] = '\0';
	r->gen++;
}

/* Take the upstream settings of cr. */
static void
forward_route_set(struct route *r, const struct config_route *cr)
{
	free(r->path);
	free(r->url);
	free(r->ca_file);
	dsn_free(&r->dsn);
	memset(&r->dsn, 0, sizeof r->dsn);
	r->type = cr->type;
	r->path = cr->path != NULL ? xstrdup(cr->path) : NULL;
	r->url = cr->url != NULL ? xstrdup(cr->url) : NULL;
	if (cr->dsn.set)
		dsn_copy(&r->dsn, &cr->dsn);
	r->batch_size = cr->batch_size;
	r->max_inflight = cr->max_inflight;
	r->gzip = cr->gzip;
	r->ca_file = cr->ca_file != NULL ? xstrdup(cr->ca_file) : NULL;
	r->timeout_ms = (long)(cr->timeout * 1000);
	r->configured = 1;
}

static const char *
forward_upstream_name(const struct route *r)
{
	return r->type == UPSTREAM_FILE ? r->path :
	    r->type == UPSTREAM_HTTP ? r->url : r->dsn.redacted;
}

/*
 * Routes with rows in the spool but no configuration: make them known
 * (status shows them) and say so once.
 */
static void
forward_orphans(void)
{
	struct route	*r;
	char		**names, *cause = NULL;
	size_t		 n, i;
	int64_t		 pending;

	if (spool_routes(spool, &names, &n, &cause) == -1) {
		log_warnx("listing the routes in the spool: %s", cause);
		free(cause);
		return;
	}
	for (i = 0; i < n; i++) {
		if ((r = forward_find(names[i])) == NULL)
			r = forward_route_new(names[i]);
		if (!r->configured) {
			pending = spool_count_route(spool, r->name);
			log_warnx("route %s: %lld spooled event(s) but no "
			    "[route %s] in the config; kept until the route "
			    "is configured again or max_age expires them",
			    r->name, (long long)pending, r->name);
		}
		free(names[i]);
	}
	free(names);
}

int
forward_init(char **cause)
{
	struct route	*r;
	size_t		 i;

	(void)cause;
	for (i = 0; i < cfg->nroutes; i++) {
		r = forward_route_new(cfg->routes[i].name);
		forward_route_set(r, &cfg->routes[i]);
		log_info("route %s: %s upstream %s", r->name,
		    config_upstream_type_name(r->type),
		    forward_upstream_name(r));
	}
	forward_orphans();
	return 0;
}

/*
 * SIGHUP: cfg holds the new config.  Routes are matched by name; see the
 * comment at the top for what is kept.
 */
void
forward_reload(void)
{
	struct route	*r;
	size_t		 i;
	int		 seen;

	TAILQ_FOREACH(r, &routes, entry) {
		seen = 0;
		for (i = 0; i < cfg->nroutes; i++) {
			if (strcmp(cfg->routes[i].name, r->name) == 0)
				seen = 1;
		}
		if (!seen && r->configured) {
			forward_route_reset(r);
			r->configured = 0;
			log_info("route %s: removed from the config",
			    r->name);
		}
	}
	for (i = 0; i < cfg->nroutes; i++) {
		const struct config_route *cr = &cfg->routes[i];

		if ((r = forward_find(cr->name)) == NULL)
			r = forward_route_new(cr->name);
		if (forward_same_upstream(r, cr)) {
			forward_route_set(r, cr);	/* batch sizes etc. */
			continue;
		}
		forward_route_reset(r);
		forward_route_set(r, cr);
		log_info("route %s: %s upstream %s", r->name,
		    config_upstream_type_name(r->type),
		    forward_upstream_name(r));
	}
	forward_orphans();
	forward_kick(NULL);
}

void
forward_free(void)
{
	struct route	*r;
	struct batch	*b;

	while ((r = TAILQ_FIRST(&routes)) != NULL) {
		TAILQ_REMOVE(&routes, r, entry);
		while ((b = TAILQ_FIRST(&r->flying)) != NULL) {
			TAILQ_REMOVE(&r->flying, b, entry);
			curlm_cancel(b->easy);
			forward_batch_free(b);
		}
		while ((b = TAILQ_FIRST(&r->retry)) != NULL) {
			TAILQ_REMOVE(&r->retry, b, entry);
			forward_batch_free(b);
		}
		event_free(r->timer);
		event_free(r->kick);
		free(r->name);
		free(r->path);
		free(r->url);
		dsn_free(&r->dsn);
		free(r->ca_file);
		free(r);
	}
}

void
forward_kick(const char *name)
{
	struct route	*r;

	TAILQ_FOREACH(r, &routes, entry) {
		if ((name != NULL && strcmp(name, r->name) != 0) ||
		    !r->configured)
			continue;
		r->more = 1;
		event_active(r->kick, EV_TIMEOUT, 0);
	}
}

/*
 * errrelayctl flush and shutdown: retry now, skipping the backoff wait
 * but never a rate-limit window (SPEC §11).
 */
int
forward_flush(void)
{
	struct route	*r;
	int		 n = 0;

	TAILQ_FOREACH(r, &routes, entry) {
		if (!r->configured)
			continue;
		if (r->state == ROUTE_BACKOFF) {
			evtimer_del(r->timer);
			r->state = ROUTE_OK;
		}
		r->more = 1;
		event_active(r->kick, EV_TIMEOUT, 0);
		n++;
	}
	return n;
}

int
forward_idle(void)
{
	struct route	*r;

	TAILQ_FOREACH(r, &routes, entry) {
		if (r->inflight > 0)
			return 0;
		if (r->configured && r->state == ROUTE_OK &&
		    (r->more || !TAILQ_EMPTY(&r->retry)))
			return 0;
	}
	return 1;
}

/*
 * 1 if b was taken for an upstream its route no longer has (the route was
 * removed or its upstream changed): its outcome must not touch the
 * route's state.
 */
static int
forward_stale(const struct batch *b)
{
	return b->gen != b->r->gen || !b->r->configured;
}

/* Start r's timer to fire in secs seconds. */
static void
forward_arm(struct route *r, double secs)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	evtimer_add(r->timer, &tv);
}

static void
forward_success(struct batch *b)
{
	struct route	*r = b->r;
	size_t		 i;

	for (i = 0; i < b->n; i++)
		commit_delete(b->rows[i].id);
	r->delivered += b->n;
	stats.delivered += b->n;
	r->last_success = now_s();
	if (forward_stale(b)) {
		/* the old upstream's success says nothing of the new one */
		forward_batch_free(b);
		return;
	}
	if (r->failures > 0)
		log_info("route %s: delivering again", r->name);
	r->failures = 0;
	if (r->state == ROUTE_BACKOFF) {
		evtimer_del(r->timer);
		r->state = ROUTE_OK;
	}
	forward_batch_free(b);
}

/*
 * A batch that failed but may succeed later: keep it to go first when the
 * route sends again, or, if it is stale, give its rows back to the spool.
 * Returns 1 if it was kept.
 */
static int
forward_keep(struct batch *b, const char *why)
{
	struct route	*r = b->r;

	if (forward_stale(b)) {
		forward_forget(b);
		return 0;
	}
	forward_batch_reset(b);
	TAILQ_INSERT_HEAD(&r->retry, b, entry);
	stats.retried += b->n;
	snprintf(r->last_error, sizeof r->last_error, "%s", why);
	return 1;
}

/* A failure that may succeed later: keep the batch and back off. */
static void
forward_retry(struct batch *b, const char *why)
{
	struct route	*r = b->r;
	double		 upper, delay;

	if (!forward_keep(b, why) || r->state != ROUTE_OK)
		return;		/* forgotten, or already waiting */
	r->failures++;
	upper = FORWARD_BACKOFF_BASE * ldexp(1.0, r->failures - 1);
	if (upper > FORWARD_BACKOFF_CAP)
		upper = FORWARD_BACKOFF_CAP;
	delay = FORWARD_BACKOFF_BASE +
	    (upper - FORWARD_BACKOFF_BASE) * ((double)random() / RAND_MAX);
	r->state = ROUTE_BACKOFF;
	r->retry_at = now_s() + delay;
	forward_arm(r, delay);
	log_warnx("route %s: %s; retrying in %.1fs (attempt %d)", r->name,
	    why, delay, r->failures);
}

/*
 * Open (or lengthen) a rate-limit window of secs seconds on route r: no
 * request goes out before it ends; the timer reopens the route at its
 * end.  A shorter limit never cuts a longer window short.
 */
static void
forward_limit(struct route *r, double secs)
{
	double		 until = now_s() + secs;

	if (r->state == ROUTE_RATE_LIMITED && r->retry_at >= until)
		return;
	evtimer_del(r->timer);
	r->state = ROUTE_RATE_LIMITED;
	r->retry_at = until;
	/* Timers count from the loop's cached time: never end early. */
	event_base_update_cache_time(base);
	forward_arm(r, secs);
	log_warnx("route %s: rate limited by the upstream for %.1fs", r->name,
	    secs);
}

/*
 * Seconds for which the response of b limits the route: the
 * X-Sentry-Rate-Limits header when present, else on a 429 Retry-After,
 * else on a 429 the default.  0 when no limit applies.
 */
static double
forward_limit_secs(struct batch *b, long status)
{
	double	 secs;

	if (b->h_rate_limits != NULL)
		return ratelimit_sentry(b->h_rate_limits);
	if (status != 429)
		return 0;
	if ((secs = ratelimit_retry_after(b->h_retry_after)) >= 0)
		return secs;
	return RATELIMIT_DEFAULT_S;
}

/* A final refusal: move the rows to the dead-letter table. */
static void
forward_dead(struct batch *b, int status, const char *why)
{
	struct route	*r = b->r;
	size_t		 i;

	for (i = 0; i < b->n; i++)
		commit_dead(b->rows[i].id, status, why);
	r->dead += b->n;
	stats.dead += b->n;
	snprintf(r->last_error, sizeof r->last_error, "%s", why);
	log_warnx("route %s: %s: %zu event(s) dead-lettered", r->name, why,
	    b->n);
	forward_batch_free(b);
}

/* 408, 429, 5xx and anything not final (1xx, 3xx) are tried again. */
static int
forward_retryable(long status)
{
	return status == 408 || status == 429 || status >= 500 ||
	    status < 400;
}

static void
forward_done_cb(CURL *easy, CURLcode res, long status, void *arg)
{
	struct batch	*b = arg;
	struct route	*r = b->r;
	char		 why[CURL_ERROR_SIZE + 64];
	double		 limit = 0;

	(void)easy;
	TAILQ_REMOVE(&r->flying, b, entry);
	r->inflight--;
	/* A stale batch's upstream sets no window on the route. */
	if (res == CURLE_OK && !forward_stale(b))
		limit = forward_limit_secs(b, status);
	if (res != CURLE_OK) {
		snprintf(why, sizeof why, "%s", b->errbuf[0] != '\0' ?
		    b->errbuf : curl_easy_strerror(res));
		forward_retry(b, why);
	} else if (status >= 200 && status < 300) {
		forward_success(b);
		if (limit > 0)
			forward_limit(r, limit);
	} else if (forward_retryable(status) && limit > 0) {
		/* kept for the end of the window */
		snprintf(why, sizeof why, "HTTP %ld (rate limited)", status);
		if (forward_keep(b, why))
			forward_limit(r, limit);
	} else if (forward_retryable(status)) {
		snprintf(why, sizeof why, "HTTP %ld%s", status,
		    status >= 300 && status < 400 ?
		    " (redirects are not followed)" : "");
		forward_retry(b, why);
	} else {
		snprintf(why, sizeof why, "HTTP %ld", status);
		forward_dead(b, (int)status, why);
		if (limit > 0)
			forward_limit(r, limit);
	}
	forward_pump(r);
	daemon_exit_check();
}

/* Build and start the request of a batch. */
static void
forward_send_http(struct route *r, struct batch *b)
{
	const char	**bodies;
	size_t		 *lens, i, zlen;
	char		 *z, *auth, *hdr;

	if (r->type == UPSTREAM_SENTRY)
		b->body = format_envelope(b->rows[0].event_id, b->rows[0].body,
		    b->rows[0].len, now_s(), &b->len);
	else {
		bodies = xcalloc(b->n, sizeof *bodies);
		lens = xcalloc(b->n, sizeof *lens);
		for (i = 0; i < b->n; i++) {
			bodies[i] = b->rows[i].body;
			lens[i] = b->rows[i].len;
		}
		b->body = format_ndjson(bodies, lens, b->n, &b->len);
		free(bodies);
		free(lens);
	}
	if (r->gzip && (z = format_gzip(b->body, b->len, &zlen)) != NULL) {
		free(b->body);
		b->body = z;
		b->len = zlen;
		b->hdrs = curl_slist_append(b->hdrs, "Content-Encoding: gzip");
	}
	if (r->type == UPSTREAM_SENTRY) {
		b->hdrs = curl_slist_append(b->hdrs,
		    "Content-Type: application/x-sentry-envelope");
		auth = dsn_auth_header(&r->dsn, "errrelay/" PACKAGE_VERSION,
		    now_s());
		xasprintf(&hdr, "X-Sentry-Auth: %s", auth);
		b->hdrs = curl_slist_append(b->hdrs, hdr);
		free(hdr);
		free(auth);
	} else
		b->hdrs = curl_slist_append(b->hdrs,
		    "Content-Type: application/x-ndjson");
	b->hdrs = curl_slist_append(b->hdrs, "Expect:");

	if ((b->easy = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	curl_easy_setopt(b->easy, CURLOPT_URL, r->type == UPSTREAM_SENTRY ?
	    r->dsn.envelope_url : r->url);
	curl_easy_setopt(b->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(b->easy, CURLOPT_POSTFIELDS, b->body);
	curl_easy_setopt(b->easy, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)b->len);
	curl_easy_setopt(b->easy, CURLOPT_HTTPHEADER, b->hdrs);
	curl_easy_setopt(b->easy, CURLOPT_USERAGENT,
	    "errrelay/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(b->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(b->easy, CURLOPT_PROTOCOLS,
	    (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(b->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(b->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(b->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (r->ca_file != NULL)
		curl_easy_setopt(b->easy, CURLOPT_CAINFO, r->ca_file);
	curl_easy_setopt(b->easy, CURLOPT_TIMEOUT_MS, r->timeout_ms);
	curl_easy_setopt(b->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(b->easy, CURLOPT_ERRORBUFFER, b->errbuf);
	curl_easy_setopt(b->easy, CURLOPT_HEADERFUNCTION, forward_header_cb);
	curl_easy_setopt(b->easy, CURLOPT_WRITEFUNCTION, forward_discard_cb);
	curl_easy_setopt(b->easy, CURLOPT_HEADERDATA, b);
	b->errbuf[0] = '\0';
	TAILQ_INSERT_TAIL(&r->flying, b, entry);
	r->inflight++;
	curlm_add(b->easy, forward_done_cb, b);
}

/*
 * Append a batch to the outbox file in one write and fsync it.  A short
 * write is cut back off so that a retry never leaves half a line.
 * Returns 0, or -1 with why filled.
 */
static int
forward_write_file(struct route *r, struct batch *b, char *why, size_t wlen)
{
	const char	**bodies;
	size_t		 *lens, i, len;
	char		 *buf;
	struct stat	  st;
	ssize_t		  n;
	int		  fd, rc = -1;

	bodies = xcalloc(b->n, sizeof *bodies);
	lens = xcalloc(b->n, sizeof *lens);
	for (i = 0; i < b->n; i++) {
		bodies[i] = b->rows[i].body;
		lens[i] = b->rows[i].len;
	}
	buf = format_ndjson(bodies, lens, b->n, &len);
	free(bodies);
	free(lens);

	fd = open(r->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1) {
		snprintf(why, wlen, "%s: %s", r->path, strerror(errno));
		free(buf);
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(why, wlen, "%s: fstat: %s", r->path, strerror(errno));
		goto out;
	}
	n = write(fd, buf, len);
	if (n != (ssize_t)len) {
		snprintf(why, wlen, "%s: write: %s", r->path,
		    n == -1 ? strerror(errno) : "short write");
		if (n > 0 && ftruncate(fd, st.st_size) == -1)
			log_warn("%s: ftruncate", r->path);
		goto out;
	}
	if (fsync(fd) == -1) {
		snprintf(why, wlen, "%s: fsync: %s", r->path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	free(buf);
	return rc;
}

/* Next batch to send: a kept one first, else fresh rows from the spool. */
static struct batch *
forward_next(struct route *r)
{
	struct batch	*b;
	struct spool_row *rows;
	size_t		 n;
	char		*cause = NULL;
	int		 max;

	if ((b = TAILQ_FIRST(&r->retry)) != NULL) {
		TAILQ_REMOVE(&r->retry, b, entry);
		return b;
	}
	if (!r->more)
		return NULL;
	/* Sentry: one envelope per event; file: one write+fsync per turn. */
	if (r->type == UPSTREAM_SENTRY)
		max = 1;
	else if (r->type == UPSTREAM_FILE)
		max = r->batch_size * FORWARD_FILE_TURN;
	else
		max = r->batch_size;
	if (spool_take(spool, r->name, r->cursor, max, &rows, &n,
	    &cause) == -1) {
		log_warnx("route %s: reading the spool: %s", r->name, cause);
		free(cause);
		return NULL;
	}
	if (n == 0) {
		free(rows);
		r->more = 0;
		return NULL;
	}
	r->cursor = rows[n - 1].id;
	b = xcalloc(1, sizeof *b);
	b->r = r;
	b->gen = r->gen;
	b->rows = rows;
	b->n = n;
	return b;
}

static void
forward_pump(struct route *r)
{
	struct batch	*b;
	char		 why[512];
	int		 turns = 0;

	if (!r->configured)
		return;
	while (r->state == ROUTE_OK && r->inflight < r->max_inflight) {
		if (r->type == UPSTREAM_FILE && turns++ >= 1) {
			/* Let the loop breathe; carry on next turn. */
			event_active(r->kick, EV_TIMEOUT, 0);
			return;
		}
		if ((b = forward_next(r)) == NULL)
			return;
		if (r->type != UPSTREAM_FILE) {
			forward_send_http(r, b);
			continue;
		}
		if (forward_write_file(r, b, why, sizeof why) == 0)
			forward_success(b);
		else
			forward_retry(b, why);
	}
}

static const char *
forward_state_name(const struct route *r)
{
	enum route_state	s = r->state;

	if (!r->configured)
		return "unconfigured";
	switch (s) {
	case ROUTE_OK:
		return "ok";
	case ROUTE_BACKOFF:
		return "backoff";
	case ROUTE_RATE_LIMITED:
		return "rate_limited";
	}
	return "?";
}

/* Append one object per route to the status array. */
void
forward_status(cJSON *arr, int *degraded)
{
	struct route	*r;
	cJSON		*o;
	double		 now = now_s(), in;
	int64_t		 pending;

	TAILQ_FOREACH(r, &routes, entry) {
		pending = spool_count_route(spool, r->name);
		if (!r->configured && pending <= 0 && r->inflight == 0)
			continue;	/* removed, nothing left of it */
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", r->name);
		if (r->configured) {
			cJSON_AddStringToObject(o, "type",
			    config_upstream_type_name(r->type));
			cJSON_AddStringToObject(o, "upstream",
			    forward_upstream_name(r));
		} else {
			cJSON_AddStringToObject(o, "type", "none");
			cJSON_AddNullToObject(o, "upstream");
		}
		cJSON_AddStringToObject(o, "state", forward_state_name(r));
		in = r->state == ROUTE_OK ? 0 : r->retry_at - now;
		cJSON_AddNumberToObject(o, "retry_in_s", in > 0 ? in : 0);
		if (r->last_error[0] != '\0')
			cJSON_AddStringToObject(o, "last_error", r->last_error);
		else
			cJSON_AddNullToObject(o, "last_error");
		if (r->last_success > 0)
			cJSON_AddNumberToObject(o, "last_success",
			    r->last_success);
		else
			cJSON_AddNullToObject(o, "last_success");
		cJSON_AddNumberToObject(o, "pending", (double)pending);
		cJSON_AddNumberToObject(o, "inflight", r->inflight);
		cJSON_AddNumberToObject(o, "delivered", (double)r->delivered);
		cJSON_AddNumberToObject(o, "dead", (double)r->dead);
		cJSON_AddItemToArray(arr, o);
		if (r->state != ROUTE_OK || !r->configured)
			*degraded = 1;
	}
}
