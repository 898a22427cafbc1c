/*
 * commit.c -- the group commit (SPEC §5).
 *
 * Merged events are queued here as they are read; once per loop iteration
 * (an event made active when the first one is queued, so it runs after the
 * read callbacks that were ready) the whole queue goes into one sqlite
 * transaction, together with the deletes and dead-letter moves the
 * forwarder asked for since the last one.  Only after the commit returns
 * are the acks sent.  Many events, one transaction: that keeps sync = full
 * fast.
 *
 * Memory stays bounded: past COMMIT_MAX_BYTES queued, every connection
 * stops reading until the queue has been committed.  If a commit fails (a
 * disk fault), nothing is lost: the queue is kept, reading stays paused
 * and the commit is retried every second; status reports the degraded
 * state.
 *
 * The spool bounds (SPEC §5) are applied here too.  With overflow =
 * drop_oldest, a commit that would leave more than max_spool_bytes in the
 * spool first deletes the oldest rows (lowest ids, possibly ones in flight
 * to an upstream: their later delete is a no-op) and counts them under
 * dropped.overflow; with reject, ingest asks commit_queued_bytes before
 * queueing.  Rows older than max_age are deleted in the next commit after
 * commit_expire asks for it, counted under dropped.expired.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"
#include "proto/reply.h"

#define COMMIT_MAX_BYTES	(32 * 1024 * 1024)
#define COMMIT_MAX_EVENTS	20000

struct pending {
	TAILQ_ENTRY(pending)	 entry;
	struct conn		*c;	/* holds a reference; NULL: none */
	struct reply		*r;	/* reply slot, NULL if none */
	char			*id_json;
	uint64_t		 lineno;
	char			*route;
	char			 event_id[33];
	char			*body;
	size_t			 len;
	double			 received;
	int			 dup;
};
TAILQ_HEAD(pendings, pending);

struct pending_op {
	int64_t			 id;
	int			 dead;
	int			 status;
	char			*reason;
};

static struct pendings		 queue = TAILQ_HEAD_INITIALIZER(queue);
static size_t			 nqueued, qbytes;
static struct pending_op	*ops;
static size_t			 nops, opscap;
static struct event		*ev_commit, *ev_retry;
static int			 degraded;
static double			 last_error_log;
static int			 expire_due;
static double			 last_drop_log;
static uint64_t			 drops_unlogged;

static void	commit_cb(evutil_socket_t, short, void *);

void
commit_init(void)
{
	ev_commit = event_new(base, -1, 0, commit_cb, NULL);
	ev_retry = evtimer_new(base, commit_cb, NULL);
}

static void
commit_schedule(void)
{
	if (!degraded && !event_pending(ev_commit, EV_TIMEOUT, NULL))
		event_active(ev_commit, EV_TIMEOUT, 0);
}

void
commit_event(struct conn *c, struct reply *r, const char *id_json,
    uint64_t lineno, const char *route, const char *event_id, char *body,
    size_t len, double received)
{
	struct pending	*p;

	p = xcalloc(1, sizeof *p);
	p->c = c;
	c->refs++;
	p->r = r;
	p->id_json = id_json != NULL ? xstrdup(id_json) : NULL;
	p->lineno = lineno;
	p->route = xstrdup(route);
	memcpy(p->event_id, event_id, sizeof p->event_id);
	p->body = body;
	p->len = len;
	p->received = received;
	TAILQ_INSERT_TAIL(&queue, p, entry);
	nqueued++;
	qbytes += len;
	if (qbytes > COMMIT_MAX_BYTES || nqueued > COMMIT_MAX_EVENTS)
		conn_pause_all(1);
	commit_schedule();
}

static struct pending_op *
commit_op(int64_t id)
{
	if (nops == opscap) {
		opscap = opscap == 0 ? 256 : opscap * 2;
		ops = xreallocarray(ops, opscap, sizeof *ops);
	}
	memset(&ops[nops], 0, sizeof ops[nops]);
	ops[nops].id = id;
	return &ops[nops++];
}

void
commit_delete(int64_t id)
{
	commit_op(id);
	commit_schedule();
}

void
commit_dead(int64_t id, int status, const char *reason)
{
	struct pending_op	*op;

	op = commit_op(id);
	op->dead = 1;
	op->status = status;
	op->reason = xstrdup(reason);
	commit_schedule();
}

size_t
commit_queued(void)
{
	return nqueued + nops;
}

/* Body bytes queued for the next commit (duplicates included). */
size_t
commit_queued_bytes(void)
{
	return qbytes;
}

/*
 * Ask the next commit to expire rows older than max_age (0: never), and
 * run one soon if nothing else is queued.
 */
void
commit_expire(void)
{
	if (cfg->max_age <= 0)
		return;
	expire_due = 1;
	commit_schedule();
}

/* Count rows dropped for space; log at most once a minute, with counts. */
static void
commit_count_dropped(int64_t rows, int64_t bytes)
{
	struct spool_stats	st;
	double			now;

	if (rows <= 0)
		return;
	stats.dropped_overflow += (uint64_t)rows;
	drops_unlogged += (uint64_t)rows;
	now = now_s();
	if (last_drop_log != 0 && now - last_drop_log < 60)
		return;
	spool_get_stats(spool, &st);
	log_warnx("spool full (max_spool_bytes %llu): dropped %llu oldest "
	    "events since the last report (%lld bytes in the latest commit), "
	    "%llu in all; spool now %lld events, %lld bytes",
	    (unsigned long long)cfg->max_spool_bytes,
	    (unsigned long long)drops_unlogged, (long long)bytes,
	    (unsigned long long)stats.dropped_overflow, (long long)st.rows,
	    (long long)st.bytes);
	drops_unlogged = 0;
	last_drop_log = now;
}

int
commit_degraded(void)
{
	return degraded;
}

/*
 * Write the queue and the ops in one transaction, applying the spool
 * bounds.  After the puts (so that duplicates, which add nothing, do not
 * count) the oldest rows are dropped while the spool would hold more than
 * max_spool_bytes; if the queue alone is larger, some of its own rows go
 * too (they were stored, and are counted as dropped).  *dropped,
 * *dropped_bytes and *expired say what the transaction removed.  Returns 0,
 * or -1 on failure (nothing changed).
 */
static int
commit_write(int64_t *dropped, int64_t *dropped_bytes, int64_t *expired,
    char **cause)
{
	struct spool_stats	 st;
	struct pending		*p;
	int64_t			 added = 0, excess;
	size_t			 i;

	*dropped = *dropped_bytes = *expired = 0;
	if (spool_begin(spool, cause) == -1)
		return -1;
	TAILQ_FOREACH(p, &queue, entry) {
		if (spool_put(spool, p->route, p->event_id, p->received,
		    p->body, p->len, &p->dup, cause) == -1)
			goto fail;
		if (!p->dup)
			added += (int64_t)p->len;
	}
	if (expire_due && cfg->max_age > 0) {
		if (spool_expire(spool, now_s() - cfg->max_age, expired,
		    cause) == -1)
			goto fail;
	}
	if (cfg->overflow == OVERFLOW_DROP_OLDEST && added > 0) {
		spool_get_stats(spool, &st);
		excess = st.bytes + added - (int64_t)cfg->max_spool_bytes;
		if (excess > 0 && spool_drop_oldest(spool, excess, dropped,
		    dropped_bytes, cause) == -1)
			goto fail;
	}
	for (i = 0; i < nops; i++) {
		if (ops[i].dead) {
			if (spool_dead_put(spool, ops[i].id, ops[i].status,
			    ops[i].reason, now_s(), cause) == -1)
				goto fail;
		} else if (spool_delete(spool, ops[i].id, cause) == -1)
			goto fail;
	}
	if (spool_commit(spool, cause) == -1)
		goto fail;
	return 0;
fail:
	spool_rollback(spool);
	return -1;
}

/* After a commit: count, ack, release. */
static void
commit_done(void)
{
	struct pending	*p;
	struct conn	*c;
	char		*text;
	size_t		 len, i;

	while ((p = TAILQ_FIRST(&queue)) != NULL) {
		TAILQ_REMOVE(&queue, p, entry);
		if (p->dup)
			stats.duplicates++;
		else
			stats.stored++;
		c = p->c;
		if (p->r != NULL) {
			text = NULL;
			len = 0;
			if (p->id_json != NULL)
				text = reply_ok(p->id_json, p->event_id, &len);
			conn_reply_fill(c, p->r, text, len);
		}
		conn_unref(c);
		free(p->id_json);
		free(p->route);
		free(p->body);
		free(p);
	}
	for (i = 0; i < nops; i++)
		free(ops[i].reason);
	nops = 0;
	nqueued = 0;
	qbytes = 0;
}

/*
 * Commit now.  Returns 0 (also when there was nothing to do), or -1 if the
 * spool refused: then the queue is kept and retried in a second.
 */
int
commit_run(void)
{
	char		*cause = NULL;
	struct timeval	 one = { 1, 0 };
	double		 now;
	int64_t		 dropped, dropped_bytes, expired;

	if (nqueued == 0 && nops == 0 && !expire_due)
		return 0;
	if (commit_write(&dropped, &dropped_bytes, &expired, &cause) == -1) {
		stats.commit_errors++;
		now = now_s();
		if (!degraded || now - last_error_log >= 60) {
			log_warnx("spool commit failed (%zu events held, "
			    "reading paused, retrying every second): %s",
			    nqueued, cause);
			last_error_log = now;
		}
		free(cause);
		degraded = 1;
		conn_pause_all(1);
		evtimer_add(ev_retry, &one);
		return -1;
	}
	if (degraded)
		log_info("spool commits work again");
	degraded = 0;
	stats.commits++;
	if (expire_due) {
		expire_due = 0;
		stats.dropped_expired += (uint64_t)expired;
		if (expired > 0)
			log_info("expired %lld events older than max_age "
			    "(%.0f s)", (long long)expired, cfg->max_age);
	}
	commit_count_dropped(dropped, dropped_bytes);
	commit_done();
	conn_pause_all(0);
	forward_kick(NULL);
	return 0;
}

/*
 * errrelayctl dead --requeue: move dead-lettered events (the given
 * event_ids, or all when n is 0) back to the spool in a transaction of
 * their own, at once (no transaction is ever open between callbacks).
 * each[i] gets the rows moved for ids[i], *moved the total.  The rows get
 * new ids, above every delivery cursor, and the routes are kicked.
 * Refused while commits fail.  Returns 0, or -1 with *cause.
 */
int
commit_requeue(const char *const *ids, size_t n, size_t *each,
    size_t *moved, char **cause)
{
	size_t	i;

	*moved = 0;
	if (degraded) {
		xasprintf(cause, "the spool cannot be written right now "
		    "(see status: spool.write_error)");
		return -1;
	}
	if (spool_begin(spool, cause) == -1)
		return -1;
	if (n == 0 && spool_dead_requeue(spool, NULL, 0, moved, cause) == -1)
		goto fail;
	for (i = 0; i < n; i++) {
		if (spool_dead_requeue(spool, &ids[i], 1, &each[i],
		    cause) == -1)
			goto fail;
		*moved += each[i];
	}
	if (spool_commit(spool, cause) == -1)
		goto fail;
	if (*moved > 0)
		log_info("requeued %zu dead-lettered event(s)", *moved);
	forward_kick(NULL);
	return 0;
fail:
	spool_rollback(spool);
	*moved = 0;
	return -1;
}

static void
commit_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	commit_run();
	daemon_exit_check();
}

/*
 * At exit, before the connections close: events still queued could not be
 * committed (the spool failed until the shutdown deadline).  They were
 * never acked; tell their senders shutting_down, so that a client resends
 * them to the next daemon, and say how many in the log.
 */
void
commit_refuse_all(void)
{
	struct pending	*p;
	char		*text;
	size_t		 len, n = 0;

	TAILQ_FOREACH(p, &queue, entry) {
		n++;
		stats.rejected[MSG_E_SHUTTING_DOWN]++;
		if (p->r == NULL || p->c == NULL)
			continue;
		text = reply_error(p->id_json, p->lineno, MSG_E_SHUTTING_DOWN,
		    "the spool could not be written before shutdown; send "
		    "it again", &len);
		conn_reply_fill(p->c, p->r, text, len);
		p->r = NULL;
	}
	if (n > 0)
		log_warnx("shutdown: %zu received event(s) could not be "
		    "committed; their senders were answered shutting_down", n);
}

/* At exit: drop what could not be committed (it was never acked). */
void
commit_free(void)
{
	struct pending	*p;
	size_t		 i;

	while ((p = TAILQ_FIRST(&queue)) != NULL) {
		TAILQ_REMOVE(&queue, p, entry);
		conn_unref(p->c);
		free(p->id_json);
		free(p->route);
		free(p->body);
		free(p);
	}
	for (i = 0; i < nops; i++)
		free(ops[i].reason);
	free(ops);
	ops = NULL;
	nops = opscap = 0;
	if (ev_commit != NULL)
		event_free(ev_commit);
	if (ev_retry != NULL)
		event_free(ev_retry);
}
