/*
 * prom.c -- the status object of control.c as Prometheus text (SPEC §7).
 *
 * The status object is the one source of truth: errrelayctl status prints
 * it as JSON, and this file maps its members onto metric families, in a
 * fixed order, for GET /metrics.  The mapping sits in tables: scalars
 * (a member path, a name, a type), families labelled by the members of
 * one object (rejected by code, dropped by cause, ...) and per-route
 * families labelled by route name.  A family's "# HELP" and "# TYPE"
 * lines are written before its first sample, so a family none of whose
 * members is present is left out whole, and nothing missing ever crashes
 * (the object may come from an older or newer daemon).
 *
 * The route's "upstream" member (a URL, a path, a redacted DSN) never
 * becomes a label, nor does "last_error": the text holds no address.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "daemon/prom.h"

/* A growing output string; s is always NUL-terminated. */
struct prom_buf {
	char	*s;
	size_t	 len;
	size_t	 size;
};

/* One metric family; started once its HELP and TYPE lines are out. */
struct prom_family {
	const char	*name;
	const char	*type;		/* "counter" or "gauge" */
	const char	*help;
	int		 started;
};

/* A number (or boolean) member at a path of up to two names. */
static const struct prom_scalar {
	const char	*obj;		/* NULL: a member of the root */
	const char	*member;
	const char	*name;
	const char	*type;
	const char	*help;
} prom_scalars_top[] = {
	{ NULL, "uptime_s", "errrelay_uptime_seconds", "gauge",
	    "Seconds since the daemon started." },
	{ NULL, "connections", "errrelay_connections", "gauge",
	    "Client connections open on the data socket." },
	{ NULL, "processes", "errrelay_processes", "gauge",
	    "Client processes whose scopes are tracked." },
	{ NULL, "fibers", "errrelay_fibers", "gauge",
	    "Live fiber scopes." },
	{ "counters", "received", "errrelay_events_received_total", "counter",
	    "Event messages received." },
	{ "counters", "accepted", "errrelay_events_accepted_total", "counter",
	    "Events merged and queued for the spool." },
	{ "counters", "stored", "errrelay_events_stored_total", "counter",
	    "Events committed to the spool, duplicates excluded." },
	{ "counters", "duplicates", "errrelay_events_duplicates_total",
	    "counter", "Events not stored again: same event_id and route "
	    "already in the spool." },
	{ "counters", "delivered", "errrelay_events_delivered_total",
	    "counter", "Events accepted by an upstream." },
	{ "counters", "retried", "errrelay_events_retried_total", "counter",
	    "Events sent again after a failed attempt." },
	{ "counters", "dead", "errrelay_events_dead_total", "counter",
	    "Events moved to the dead-letter table." },
}, prom_scalars_mid[] = {
	{ "counters", "connections_total",
	    "errrelay_connections_accepted_total", "counter",
	    "Client connections accepted on the data socket." },
	{ "counters", "commits", "errrelay_commits_total", "counter",
	    "Spool transactions committed." },
	{ "counters", "commit_errors", "errrelay_commit_errors_total",
	    "counter", "Spool transactions that failed." },
	{ "spool", "rows", "errrelay_spool_rows", "gauge",
	    "Events in the spool waiting for delivery." },
	{ "spool", "bytes", "errrelay_spool_bytes", "gauge",
	    "Bytes of the events in the spool." },
	{ "spool", "max_bytes", "errrelay_spool_max_bytes", "gauge",
	    "The spool bound, max_spool_bytes." },
	{ "spool", "oldest_age_s", "errrelay_spool_oldest_age_seconds",
	    "gauge", "Age of the oldest event in the spool (0 when empty)." },
	{ "spool", "dead", "errrelay_spool_dead_rows", "gauge",
	    "Events in the dead-letter table." },
	{ "spool", "write_error", "errrelay_spool_write_error", "gauge",
	    "1 while the spool cannot be written, else 0." },
};

/* A family with one sample per member of an object under "counters". */
static const struct prom_keyed {
	const char	*member;
	const char	*label;
	const char	*name;
	const char	*help;
} prom_keyed[] = {
	{ "rejected", "code", "errrelay_events_rejected_total",
	    "Lines rejected, by error code." },
	{ "dropped", "cause", "errrelay_events_dropped_total",
	    "Stored events dropped, by cause." },
	{ "fibers_evicted", "cause", "errrelay_fibers_evicted_total",
	    "Fiber scopes evicted, by cause." },
	{ "sanitised", "cause", "errrelay_tags_sanitised_total",
	    "Tags changed by the sanitiser, by what was done." },
};

/* A number member of each route, labelled by route name. */
static const struct prom_route_num {
	const char	*member;
	const char	*name;
	const char	*type;
	const char	*help;
} prom_route_nums[] = {
	{ "pending", "errrelay_route_pending", "gauge",
	    "Events of the route in the spool." },
	{ "inflight", "errrelay_route_inflight", "gauge",
	    "Requests of the route in flight." },
	{ "delivered", "errrelay_route_delivered_total", "counter",
	    "Events the route's upstream accepted." },
	{ "dead", "errrelay_route_dead_total", "counter",
	    "Events of the route moved to the dead-letter table." },
	{ "retry_in_s", "errrelay_route_retry_in_seconds", "gauge",
	    "Seconds until the route sends again (0 when ok)." },
	{ "last_success", "errrelay_route_last_success_timestamp_seconds",
	    "gauge", "Unix time of the route's last accepted request." },
};

/* The states of a route, in errrelay_route_state. */
static const char *const prom_states[] = {
	"ok", "backoff", "rate_limited", "unconfigured"
};

#define PROM_NITEMS(a)	(sizeof (a) / sizeof (a)[0])

static void __attribute__((format(printf, 2, 3)))
prom_printf(struct prom_buf *b, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->size - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			n = 0;		/* no conversion here can fail */
		if ((size_t)n < b->size - b->len)
			break;
		b->size = b->size * 2 + (size_t)n;
		b->s = xrealloc(b->s, b->size);
	}
	b->len += (size_t)n;
}

/* A label value, escaped as the format says: \\, \" and \n. */
static void
prom_escape(struct prom_buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\\':
			prom_printf(b, "\\\\");
			break;
		case '"':
			prom_printf(b, "\\\"");
			break;
		case '\n':
			prom_printf(b, "\\n");
			break;
		default:
			prom_printf(b, "%c", *s);
			break;
		}
	}
}

/*
 * A sample value: integers without a fraction or exponent (up to 2^53),
 * others in the shortest %g form that reads back to the same double.
 */
static void
prom_value(struct prom_buf *b, double v)
{
	char	tmp[64];

	if (isnan(v))
		prom_printf(b, "NaN");
	else if (isinf(v))
		prom_printf(b, "%s", v > 0 ? "+Inf" : "-Inf");
	else if (v == 0)
		prom_printf(b, "0");
	else if (v == trunc(v) && fabs(v) <= 9007199254740992.0)
		prom_printf(b, "%.0f", v);
	else {
		snprintf(tmp, sizeof tmp, "%.15g", v);
		if (strtod(tmp, NULL) != v)
			snprintf(tmp, sizeof tmp, "%.17g", v);
		prom_printf(b, "%s", tmp);
	}
}

/*
 * One sample of family f with up to two labels (l1 NULL: none; l2 NULL:
 * one).  The family's HELP and TYPE lines go first if they are not out.
 */
static void
prom_sample(struct prom_buf *b, struct prom_family *f, const char *l1,
    const char *v1, const char *l2, const char *v2, double v)
{
	if (!f->started) {
		prom_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name,
		    f->help, f->name, f->type);
		f->started = 1;
	}
	prom_printf(b, "%s", f->name);
	if (l1 != NULL) {
		prom_printf(b, "{%s=\"", l1);
		prom_escape(b, v1);
		if (l2 != NULL) {
			prom_printf(b, "\",%s=\"", l2);
			prom_escape(b, v2);
		}
		prom_printf(b, "\"}");
	}
	prom_printf(b, " ");
	prom_value(b, v);
	prom_printf(b, "\n");
}

/* The value of a number or boolean item into *v; 0, or -1 if neither. */
static int
prom_number(const cJSON *item, double *v)
{
	if (cJSON_IsNumber(item))
		*v = item->valuedouble;
	else if (cJSON_IsBool(item))
		*v = cJSON_IsTrue(item) ? 1 : 0;
	else
		return -1;
	return 0;
}

static void
prom_scalars(struct prom_buf *b, const cJSON *status,
    const struct prom_scalar *t, size_t n)
{
	struct prom_family	 f;
	const cJSON		*o;
	double			 v;
	size_t			 i;

	for (i = 0; i < n; i++) {
		o = status;
		if (t[i].obj != NULL)
			o = cJSON_GetObjectItemCaseSensitive(o, t[i].obj);
		if (!cJSON_IsObject(o) || prom_number(
		    cJSON_GetObjectItemCaseSensitive(o, t[i].member), &v) == -1)
			continue;
		f.name = t[i].name;
		f.type = t[i].type;
		f.help = t[i].help;
		f.started = 0;
		prom_sample(b, &f, NULL, NULL, NULL, NULL, v);
	}
}

/* The counters keyed by code or cause: one sample per member. */
static void
prom_keyed_counters(struct prom_buf *b, const cJSON *counters)
{
	struct prom_family	 f;
	const cJSON		*o, *m;
	double			 v;
	size_t			 i;

	for (i = 0; i < PROM_NITEMS(prom_keyed); i++) {
		o = cJSON_GetObjectItemCaseSensitive(counters,
		    prom_keyed[i].member);
		if (!cJSON_IsObject(o))
			continue;
		f.name = prom_keyed[i].name;
		f.type = "counter";
		f.help = prom_keyed[i].help;
		f.started = 0;
		cJSON_ArrayForEach(m, o) {
			if (m->string == NULL || prom_number(m, &v) == -1)
				continue;
			prom_sample(b, &f, prom_keyed[i].label, m->string,
			    NULL, NULL, v);
		}
	}
}

/* The name of route r, or NULL if r is not a route object with one. */
static const char *
prom_route_name(const cJSON *r)
{
	const cJSON	*name;

	if (!cJSON_IsObject(r))
		return NULL;
	name = cJSON_GetObjectItemCaseSensitive(r, "name");
	return cJSON_IsString(name) ? name->valuestring : NULL;
}

/* The per-route families, each over every route in turn. */
static void
prom_routes(struct prom_buf *b, const cJSON *routes)
{
	struct prom_family	 f;
	const cJSON		*r, *m;
	const char		*name;
	size_t			 i, s;

	if (!cJSON_IsArray(routes))
		return;

	f.name = "errrelay_route_info";
	f.type = "gauge";
	f.help = "1 for each route, labelled with its upstream type.";
	f.started = 0;
	cJSON_ArrayForEach(r, routes) {
		if ((name = prom_route_name(r)) == NULL)
			continue;
		m = cJSON_GetObjectItemCaseSensitive(r, "type");
		if (cJSON_IsString(m))
			prom_sample(b, &f, "route", name, "type",
			    m->valuestring, 1);
	}

	f.name = "errrelay_route_state";
	f.type = "gauge";
	f.help = "1 for the route's current state, 0 for the others.";
	f.started = 0;
	cJSON_ArrayForEach(r, routes) {
		if ((name = prom_route_name(r)) == NULL)
			continue;
		m = cJSON_GetObjectItemCaseSensitive(r, "state");
		if (!cJSON_IsString(m))
			continue;
		for (s = 0; s < PROM_NITEMS(prom_states); s++)
			prom_sample(b, &f, "route", name, "state",
			    prom_states[s],
			    strcmp(m->valuestring, prom_states[s]) == 0);
	}

	for (i = 0; i < PROM_NITEMS(prom_route_nums); i++) {
		f.name = prom_route_nums[i].name;
		f.type = prom_route_nums[i].type;
		f.help = prom_route_nums[i].help;
		f.started = 0;
		cJSON_ArrayForEach(r, routes) {
			if ((name = prom_route_name(r)) == NULL)
				continue;
			m = cJSON_GetObjectItemCaseSensitive(r,
			    prom_route_nums[i].member);
			if (cJSON_IsNumber(m))	/* null: no sample */
				prom_sample(b, &f, "route", name, NULL, NULL,
				    m->valuedouble);
		}
	}
}

char *
prom_from_status(const cJSON *status, size_t *len)
{
	struct prom_buf		 b;
	struct prom_family	 f;
	const cJSON		*m;

	b.size = 4096;
	b.s = xmalloc(b.size);
	b.s[0] = '\0';
	b.len = 0;

	if (cJSON_IsObject(status)) {
		m = cJSON_GetObjectItemCaseSensitive(status, "version");
		if (cJSON_IsString(m)) {
			f.name = "errrelay_build_info";
			f.type = "gauge";
			f.help = "1, labelled with the daemon's version.";
			f.started = 0;
			prom_sample(&b, &f, "version", m->valuestring, NULL,
			    NULL, 1);
		}
		prom_scalars(&b, status, prom_scalars_top,
		    PROM_NITEMS(prom_scalars_top));
		prom_keyed_counters(&b, cJSON_GetObjectItemCaseSensitive(status,
		    "counters"));
		prom_scalars(&b, status, prom_scalars_mid,
		    PROM_NITEMS(prom_scalars_mid));

		m = cJSON_GetObjectItemCaseSensitive(status, "health");
		if (cJSON_IsString(m)) {
			f.name = "errrelay_healthy";
			f.type = "gauge";
			f.help = "1 when errrelayctl status says ok, 0 when "
			    "degraded.";
			f.started = 0;
			prom_sample(&b, &f, NULL, NULL, NULL, NULL,
			    strcmp(m->valuestring, "ok") == 0);
		}
		prom_routes(&b, cJSON_GetObjectItemCaseSensitive(status,
		    "routes"));
	}
	if (len != NULL)
		*len = b.len;
	return b.s;
}
