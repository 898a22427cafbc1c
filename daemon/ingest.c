/*
 * ingest.c -- apply one line of a data connection (SPEC §3, §4).
 *
 * A line is parsed and validated by proto/msg.c; a message that parses is
 * applied whole: scope ops go to the fiber table, events are merged at
 * receipt (so a later set never changes them) and queued for the group
 * commit.  Replies exist only on ack connections: a message with an id is
 * always answered, one without only when it fails.  A rejected line changes
 * nothing and never affects the connection's other lines.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"
#include "proto/reply.h"

static uint64_t	ingest_crumb_seq;

static void
ingest_reject(struct conn *c, const char *id_json, uint64_t lineno,
    enum msg_err code, const char *text)
{
	char	*r;
	size_t	 len;

	stats_reject(code, c->pid, lineno, text);
	if (!c->ack)
		return;
	r = reply_error(id_json, lineno, code, text, &len);
	conn_reply_now(c, r, len);
}

static void
ingest_ok(struct conn *c, const struct msg *m)
{
	char	*r;
	size_t	 len;

	if (!c->ack || m->id_json == NULL)
		return;
	r = reply_ok(m->id_json, NULL, &len);
	conn_reply_now(c, r, len);
}

void
ingest_line_too_long(struct conn *c, uint64_t lineno)
{
	char	text[96];

	snprintf(text, sizeof text, "line longer than max_line_bytes (%zu)",
	    cfg->max_line_bytes);
	ingest_reject(c, NULL, lineno, MSG_E_LINE_TOO_LONG, text);
}

static int
ingest_blank(const char *line, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return 0;
	}
	return 1;
}

/*
 * With overflow = reject: would an event of len bytes take the spool past
 * max_spool_bytes, counting what is queued for the next commit?
 */
static int
ingest_spool_full(size_t len)
{
	struct spool_stats	st;
	uint64_t		total;

	spool_get_stats(spool, &st);
	total = (uint64_t)st.bytes + commit_queued_bytes() + len;
	return total > cfg->max_spool_bytes;
}

static void
ingest_event(struct conn *c, struct msg *m, uint64_t lineno, double now)
{
	struct merge_limits		 lim;
	const struct config_route	*route;
	struct scope			*proc, *fib = NULL;
	struct reply			*slot = NULL;
	char				*body, eid[33], text[128];
	size_t				 len;

	stats.received++;
	if (shutting_down) {
		ingest_reject(c, m->id_json, lineno, MSG_E_SHUTTING_DOWN,
		    "the daemon is shutting down");
		return;
	}
	lim.max_breadcrumbs = cfg->max_breadcrumbs;
	lim.max_event_bytes = cfg->max_event_bytes;
	proc = fibers_scope(fibers, c->pid, NULL, 0, now);
	if (m->has_fiber)
		fib = fibers_scope(fibers, c->pid, m->fiber, 0, now);
	if (merge_event(&merge_global, proc, fib, m->event,
	    m->has_event_id ? m->event_id : NULL, now, &lim, &stats.merge,
	    &body, &len, eid) == -1) {
		snprintf(text, sizeof text, "merged event is larger than "
		    "max_event_bytes (%zu)", cfg->max_event_bytes);
		ingest_reject(c, m->id_json, lineno, MSG_E_TOO_LARGE, text);
		return;
	}
	if (cfg->overflow == OVERFLOW_REJECT && ingest_spool_full(len)) {
		free(body);
		snprintf(text, sizeof text, "the spool is full "
		    "(max_spool_bytes %llu)",
		    (unsigned long long)cfg->max_spool_bytes);
		ingest_reject(c, m->id_json, lineno, MSG_E_SPOOL_FULL, text);
		return;
	}
	route = config_route_for(cfg, c->app);
	if (c->ack)
		slot = conn_reply_slot(c);
	stats.accepted++;
	commit_event(c, slot, m->id_json, lineno, route->name, eid, body, len,
	    now);
}

void
ingest_line(struct conn *c, const char *line, size_t len, uint64_t lineno)
{
	struct msg	 m;
	struct msg_error e;
	struct scope	*s;
	double		 now;
	int		 had_ack;

	if (ingest_blank(line, len))
		return;
	if (msg_parse(line, len, &m, &e) == -1) {
		ingest_reject(c, e.id_json, lineno, e.code, e.text);
		msg_error_free(&e);
		return;
	}
	now = now_s();
	switch (m.op) {
	case MSG_HELLO:
		had_ack = c->ack;
		free(c->app);
		c->app = xstrdup(m.app != NULL ? m.app : "default");
		if (m.has_ack)
			c->ack = m.ack;
		if (had_ack && !c->ack && m.id_json != NULL) {
			c->ack = 1;	/* answer the hello that turns it off */
			ingest_ok(c, &m);
			c->ack = 0;
		} else
			ingest_ok(c, &m);
		break;
	case MSG_SET:
		s = fibers_scope(fibers, c->pid, m.has_fiber ? m.fiber : NULL,
		    1, now);
		scope_set(s, &m);
		ingest_ok(c, &m);
		break;
	case MSG_CRUMB:
		s = fibers_scope(fibers, c->pid, m.has_fiber ? m.fiber : NULL,
		    1, now);
		scope_crumb(s, m.crumb, now, ++ingest_crumb_seq,
		    cfg->max_breadcrumbs);
		ingest_ok(c, &m);
		break;
	case MSG_FORK:
		fibers_fork(fibers, c->pid, m.fiber, m.from, now);
		ingest_ok(c, &m);
		break;
	case MSG_END:
		fibers_end(fibers, c->pid, m.fiber);
		ingest_ok(c, &m);
		break;
	case MSG_EVENT:
		ingest_event(c, &m, lineno, now);
		break;
	}
	msg_free(&m);
}
