/*
 * fibers.h -- the table of scopes, keyed by (peer pid, fiber id).
 *
 * Pure code: the caller passes the time in.  Each process (pid) has a
 * process scope and any number of fiber scopes.  The table keeps:
 * - a count of open connections per process; when it drops to zero the
 *   process's scopes live on for `grace` seconds, then are freed (a
 *   reconnect within the grace finds them intact);
 * - a global least-recently-used list of fiber scopes: at most max_fibers
 *   are kept, the least recently used evicted first, and one idle longer
 *   than ttl seconds is freed by fibers_expire.
 * Every eviction is counted by cause.
 */
#ifndef ERRRELAY_FIBERS_H
#define ERRRELAY_FIBERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/scope.h"

struct fibers;
struct fiber;
struct fibers_proc;

struct fibers_limits {
	size_t		 max_fibers;
	double		 ttl;		/* seconds a fiber scope may stay idle */
	double		 grace;		/* seconds a process outlives its last conn */
};

struct fibers_counts {
	uint64_t	 procs;		/* processes tracked */
	uint64_t	 live;		/* fiber scopes live */
	uint64_t	 evicted_lru;
	uint64_t	 evicted_ttl;
	uint64_t	 evicted_grace;	/* fiber scopes freed with their process */
};

struct fibers	*fibers_new(const struct fibers_limits *);
void		 fibers_free(struct fibers *);
void		 fibers_set_limits(struct fibers *, const struct fibers_limits *);

/* A connection of pid opened / closed (now: the time of the close). */
void		 fibers_attach(struct fibers *, pid_t);
void		 fibers_detach(struct fibers *, pid_t, double now);

/*
 * The scope to use for a message: the process scope when fiber is NULL,
 * else the fiber's.  With create, a missing process or fiber is made (and
 * may evict the least recently used fiber); without it, NULL is returned.
 * A fiber found or made is marked used at now.
 */
struct scope	*fibers_scope(struct fibers *, pid_t, const char *fiber,
		    int create, double now);

/* fork: fiber's scope becomes a copy of from's (empty if from unknown). */
void		 fibers_fork(struct fibers *, pid_t, const char *fiber,
		    const char *from, double now);
/* end: free the fiber's scope (unknown: no-op). */
void		 fibers_end(struct fibers *, pid_t, const char *fiber);

/* Free idle fibers (ttl) and processes past their grace. */
void		 fibers_expire(struct fibers *, double now);

void		 fibers_get_counts(const struct fibers *, struct fibers_counts *);

/*
 * Walk every live scope, process scopes too (fiber NULL), of one pid or of
 * all (pid 0).  Stops when cb returns non-zero.
 */
typedef int	(*fibers_walk_cb)(pid_t, const char *fiber,
		    const struct scope *, double last_used, void *arg);
void		 fibers_walk(const struct fibers *, pid_t, fibers_walk_cb,
		    void *);

#endif
