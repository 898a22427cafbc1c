/*
 * errrelayd.h -- the daemon's private header: the event-driven glue.
 *
 * This is the only header that includes libevent and libcurl.  The pure
 * modules (proto/, store/, and daemon/{config,scope,fibers,merge,dsn,
 * format}) never include it, so they are tested alone.
 *
 * Data flows one way:
 *   listen.c (accept) -> conn.c (bytes, framing, replies) -> ingest.c (one
 *   message: scopes, merge) -> commit.c (group commit to the spool, then the
 *   acks) -> forward.c (batches per route) -> curlm.c (libcurl multi on the
 *   loop) -> upstream.
 * control.c answers errrelayctl; stats.c holds the counters.
 */
#ifndef ERRRELAYD_H
#define ERRRELAYD_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdint.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "daemon/conf.h"
#include "daemon/fibers.h"
#include "daemon/merge.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "store/spool.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

/* main.c: the daemon's global state. */
extern struct event_base	*base;
extern struct config		*cfg;
extern struct spool		*spool;
extern struct fibers		*fibers;
extern struct merge_global	 merge_global;
extern int			 shutting_down;
extern double			 start_time;
double		 now_s(void);
void		 daemon_exit_check(void);

/* stats.c: counters since start (SPEC §7). */
struct stats {
	uint64_t	 received;	/* event messages seen */
	uint64_t	 accepted;	/* events merged and queued for the spool */
	uint64_t	 stored;	/* events committed (duplicates excluded) */
	uint64_t	 duplicates;
	uint64_t	 delivered;
	uint64_t	 retried;
	uint64_t	 dead;
	uint64_t	 rejected[MSG_E_COUNT];	/* lines of any op */
	uint64_t	 dropped_overflow;
	uint64_t	 dropped_expired;
	uint64_t	 connections_total;
	uint64_t	 commits;
	uint64_t	 commit_errors;
	struct merge_counts merge;
};
extern struct stats	 stats;
/* Count a rejection and log it, at most once per second per code. */
void		 stats_reject(enum msg_err, pid_t, uint64_t lineno,
		     const char *text);

/* A reply slot: replies leave in message order (SPEC §3). */
struct reply {
	TAILQ_ENTRY(reply)	 entry;
	char			*text;	/* NULL: nothing to send */
	size_t			 len;
	int			 ready;
};
TAILQ_HEAD(replies, reply);

/* conn.c: one data connection. */
struct conn {
	TAILQ_ENTRY(conn)	 entry;
	uint64_t		 id;
	struct bufferevent	*bev;	/* NULL once closed */
	pid_t			 pid;	/* from SO_PEERCRED */
	uid_t			 uid;
	char			*app;	/* route key, "default" until hello */
	int			 ack;
	struct frame		 frame;
	struct replies		 replies;
	int			 eof;	/* peer closed its side */
	int			 refs;	/* pending commits hold references */
	int			 paused;	/* reading stopped: output full */
};
TAILQ_HEAD(conns, conn);
extern struct conns	 conns;
extern size_t		 nconns;

void		 conn_accept(int fd);
void		 conn_close(struct conn *);
void		 conn_unref(struct conn *);
/* Queue a reply (text may be NULL: a slot that sends nothing). */
struct reply	*conn_reply_slot(struct conn *);
void		 conn_reply_fill(struct conn *, struct reply *, char *text,
		     size_t len);
void		 conn_reply_now(struct conn *, char *text, size_t len);
void		 conn_pause_all(int pause);
void		 conn_drain_all(void);
void		 conn_close_all(void);

/* listen.c: the data socket. */
int		 listen_unix(const char *path, mode_t, int has_gid, gid_t,
		     char **cause);
int		 listen_init(char **cause);
void		 listen_close(void);
void		 listen_conn_closed(void);

/* ingest.c: apply one line of a connection. */
void		 ingest_line(struct conn *, const char *line, size_t len,
		     uint64_t lineno);
void		 ingest_line_too_long(struct conn *, uint64_t lineno);

/* commit.c: the group commit. */
void		 commit_init(void);
void		 commit_free(void);
/* Queue a merged event (body owned by the queue); reply slot may be NULL. */
void		 commit_event(struct conn *, struct reply *, const char *id_json,
		     uint64_t lineno, const char *route, const char *event_id,
		     char *body, size_t len, double received);
void		 commit_delete(int64_t id);
void		 commit_dead(int64_t id, int status, const char *reason);
/* Commit now, synchronously (shutdown). Returns 0 or -1. */
int		 commit_run(void);
/* At exit: answer shutting_down to the events that were never committed. */
void		 commit_refuse_all(void);
size_t		 commit_queued(void);
/* Body bytes queued for the next commit (overflow = reject). */
size_t		 commit_queued_bytes(void);
/* Expire rows older than max_age in the next commit (SPEC §5). */
void		 commit_expire(void);
int		 commit_degraded(void);
/* Requeue dead-lettered events now (n == 0: all).  Returns 0 or -1. */
int		 commit_requeue(const char *const *ids, size_t n, size_t *each,
		     size_t *moved, char **cause);

/* forward.c: delivery, per route. */
struct route;
int		 forward_init(char **cause);
void		 forward_free(void);
/* New rows were committed for route name (NULL: all). */
void		 forward_kick(const char *route);
/* 1 when nothing is in flight and nothing is left to send. */
int		 forward_idle(void);
/* Retry every route now, skipping backoff; returns the routes kicked. */
int		 forward_flush(void);
/* Apply the routes of a newly loaded cfg (SIGHUP). */
void		 forward_reload(void);
void		 forward_status(cJSON *routes, int *degraded);

/* curlm.c: libcurl multi driven by the loop (hiperfifo pattern). */
typedef void	(*curlm_done_cb)(CURL *, CURLcode, long status, void *arg);
void		 curlm_init(void);
void		 curlm_free(void);
void		 curlm_add(CURL *, curlm_done_cb, void *arg);
void		 curlm_cancel(CURL *);

/* control.c: the control socket. */
int		 control_init(char **cause);
void		 control_close(void);
/* The status object (SPEC §11), new; the caller deletes it. */
cJSON		*control_status(void);

/* metrics.c: GET /metrics on metrics_listen (SPEC §7), if set. */
int		 metrics_init(char **cause);
void		 metrics_close(void);

#endif
