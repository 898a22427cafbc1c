/*
 * fibers.c -- the table of scopes, keyed by (peer pid, fiber id).
 *
 * Processes sit in a uthash table by pid; each has its process scope, a
 * count of open connections and a uthash table of its fibers by id.  All
 * fibers of all processes are also on one doubly linked list in order of
 * last use, least recent at the head: lookups and creations move a fiber
 * to the tail, so LRU eviction takes the head and the ttl sweep walks from
 * the head and stops at the first fiber still young, touching only what it
 * frees (this assumes the caller's clock does not go backwards).  Processes
 * without a connection sit on a second list, which fibers_expire walks to
 * free those past their grace.  A process is only ever freed there, never
 * as a side effect of a lookup, so the scope pointers handed out stay
 * valid until the next fibers_expire, fibers_end, fibers_fork or fiber
 * creation (the last two may evict).
 *
 * Expected workload: up to max_fibers (100,000 by default) fiber scopes,
 * a few hundred processes, a lookup per message and a sweep per second.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/fibers.h"
#include "daemon/scope.h"

/* uthash allocates through xmalloc: out of memory is fatal here too. */
#define uthash_malloc(sz)	xmalloc(sz)
#define uthash_free(ptr, sz)	free(ptr)
#include <uthash.h>
#include <utlist.h>

/*
 * One fiber scope.  Invariants: on its process's table (hh) and on the
 * table's LRU list (lru_prev/lru_next), last_used never greater than that
 * of any fiber after it on the list when time is monotonic.
 */
struct fiber {
	struct fibers_proc	*proc;
	struct scope		 scope;
	double			 last_used;
	struct fiber		*lru_prev;
	struct fiber		*lru_next;
	UT_hash_handle		 hh;
	char			 id[];	/* NUL-terminated, the hash key */
};

/*
 * One process.  Invariants: on the table by pid (hh); on the idle list
 * (idle_prev/idle_next) exactly when nconn is 0, with detached_at the time
 * its last connection closed (or it was created without one).
 */
struct fibers_proc {
	pid_t			 pid;
	unsigned int		 nconn;
	double			 detached_at;
	double			 last_used;	/* of the process scope */
	struct scope		 scope;
	struct fiber		*fibers;	/* uthash head, by id */
	struct fibers_proc	*idle_prev;
	struct fibers_proc	*idle_next;
	UT_hash_handle		 hh;
};

struct fibers {
	struct fibers_limits	 limits;
	struct fibers_proc	*procs;		/* uthash head, by pid */
	struct fibers_proc	*idle;		/* utlist DL, nconn == 0 */
	struct fiber		*lru;		/* utlist DL, oldest first */
	uint64_t		 live;
	uint64_t		 evicted_lru;
	uint64_t		 evicted_ttl;
	uint64_t		 evicted_grace;
};

static struct fibers_proc	*fibers_proc_get(struct fibers *, pid_t, int,
				    double);
static void	 fibers_proc_free(struct fibers *, struct fibers_proc *);
static struct fiber	*fibers_fiber_find(struct fibers_proc *, const char *);
static void	 fibers_fiber_free(struct fibers *, struct fiber *);
static void	 fibers_touch(struct fibers *, struct fiber *, double);
static void	 fibers_evict(struct fibers *, size_t);

struct fibers *
fibers_new(const struct fibers_limits *limits)
{
	struct fibers	*fs;

	fs = xcalloc(1, sizeof *fs);
	fs->limits = *limits;
	return fs;
}

void
fibers_free(struct fibers *fs)
{
	struct fibers_proc	*p, *tmp;

	if (fs == NULL)
		return;
	HASH_ITER(hh, fs->procs, p, tmp)
		fibers_proc_free(fs, p);
	free(fs);
}

/*
 * New limits apply at once: if max_fibers went down, the least recently
 * used fibers beyond it are evicted now (counted as lru).
 */
void
fibers_set_limits(struct fibers *fs, const struct fibers_limits *limits)
{
	fs->limits = *limits;
	fibers_evict(fs, fs->limits.max_fibers);
}

/*
 * The process pid; with create, made when missing (no connection,
 * detached at now, so it lives one grace unless a connection comes).
 * Returns NULL when missing and !create.
 */
static struct fibers_proc *
fibers_proc_get(struct fibers *fs, pid_t pid, int create, double now)
{
	struct fibers_proc	*p;

	HASH_FIND(hh, fs->procs, &pid, sizeof pid, p);
	if (p != NULL || !create)
		return p;
	p = xcalloc(1, sizeof *p);
	p->pid = pid;
	p->detached_at = now;
	p->last_used = now;
	scope_init(&p->scope);
	HASH_ADD(hh, fs->procs, pid, sizeof p->pid, p);
	DL_APPEND2(fs->idle, p, idle_prev, idle_next);
	return p;
}

/* Free a process, its scope and all its fibers (not counted). */
static void
fibers_proc_free(struct fibers *fs, struct fibers_proc *p)
{
	struct fiber	*f, *tmp;

	HASH_ITER(hh, p->fibers, f, tmp)
		fibers_fiber_free(fs, f);
	if (p->nconn == 0)
		DL_DELETE2(fs->idle, p, idle_prev, idle_next);
	HASH_DELETE(hh, fs->procs, p);
	scope_clear(&p->scope);
	free(p);
}

static struct fiber *
fibers_fiber_find(struct fibers_proc *p, const char *id)
{
	struct fiber	*f;

	HASH_FIND_STR(p->fibers, id, f);
	return f;
}

/* Unlink and free one fiber (the caller counts the cause, if any). */
static void
fibers_fiber_free(struct fibers *fs, struct fiber *f)
{
	HASH_DELETE(hh, f->proc->fibers, f);
	DL_DELETE2(fs->lru, f, lru_prev, lru_next);
	scope_clear(&f->scope);
	free(f);
	fs->live--;
}

/* Mark f used at now: it becomes the most recently used. */
static void
fibers_touch(struct fibers *fs, struct fiber *f, double now)
{
	f->last_used = now;
	if (fs->lru->lru_prev != f) {	/* not already the tail */
		DL_DELETE2(fs->lru, f, lru_prev, lru_next);
		DL_APPEND2(fs->lru, f, lru_prev, lru_next);
	}
}

/* Evict least recently used fibers until at most keep are live. */
static void
fibers_evict(struct fibers *fs, size_t keep)
{
	while (fs->live > keep && fs->lru != NULL) {
		fibers_fiber_free(fs, fs->lru);
		fs->evicted_lru++;
	}
}

void
fibers_attach(struct fibers *fs, pid_t pid)
{
	struct fibers_proc	*p;

	p = fibers_proc_get(fs, pid, 1, 0);
	if (p->nconn++ == 0)
		DL_DELETE2(fs->idle, p, idle_prev, idle_next);
}

void
fibers_detach(struct fibers *fs, pid_t pid, double now)
{
	struct fibers_proc	*p;

	if ((p = fibers_proc_get(fs, pid, 0, now)) == NULL || p->nconn == 0)
		return;
	if (--p->nconn == 0) {
		p->detached_at = now;
		DL_APPEND2(fs->idle, p, idle_prev, idle_next);
	}
}

/*
 * The process scope (fiber NULL) or the fiber's scope of pid.  With
 * create a missing process or fiber is made; making a fiber when
 * max_fibers are live first evicts the least recently used ones.  A fiber
 * found or made becomes the most recently used, at now.  Returns NULL
 * only when something is missing and !create.  The scope stays owned by
 * the table.
 */
struct scope *
fibers_scope(struct fibers *fs, pid_t pid, const char *fiber, int create,
    double now)
{
	struct fibers_proc	*p;
	struct fiber		*f;
	size_t			 len;

	if ((p = fibers_proc_get(fs, pid, create, now)) == NULL)
		return NULL;
	if (fiber == NULL) {
		p->last_used = now;
		return &p->scope;
	}
	if ((f = fibers_fiber_find(p, fiber)) != NULL) {
		fibers_touch(fs, f, now);
		return &f->scope;
	}
	if (!create)
		return NULL;

	if (fs->limits.max_fibers > 0)
		fibers_evict(fs, fs->limits.max_fibers - 1);
	len = strlen(fiber);
	f = xcalloc(1, sizeof *f + len + 1);
	memcpy(f->id, fiber, len + 1);
	f->proc = p;
	f->last_used = now;
	scope_init(&f->scope);
	HASH_ADD_KEYPTR(hh, p->fibers, f->id, len, f);
	DL_APPEND2(fs->lru, f, lru_prev, lru_next);
	fs->live++;
	return &f->scope;
}

/*
 * The scope of fiber becomes a copy of from's, or empty when from is
 * unknown; fiber is made if needed and becomes the most recently used
 * (from too, when known: a parent that forks is in use).  A fork onto
 * itself does nothing.
 */
void
fibers_fork(struct fibers *fs, pid_t pid, const char *fiber,
    const char *from, double now)
{
	struct scope	 copy, *src, *dst;

	if (strcmp(fiber, from) == 0)
		return;
	/*
	 * Copy first: making the child may evict the parent when the table
	 * is full.
	 */
	scope_init(&copy);
	if ((src = fibers_scope(fs, pid, from, 0, now)) != NULL)
		scope_copy(&copy, src);
	dst = fibers_scope(fs, pid, fiber, 1, now);
	scope_clear(dst);
	*dst = copy;
}

void
fibers_end(struct fibers *fs, pid_t pid, const char *fiber)
{
	struct fibers_proc	*p;
	struct fiber		*f;

	if (fiber == NULL)
		return;
	if ((p = fibers_proc_get(fs, pid, 0, 0)) == NULL)
		return;
	if ((f = fibers_fiber_find(p, fiber)) != NULL)
		fibers_fiber_free(fs, f);
}

/*
 * Free fibers idle more than ttl (counted ttl), then processes without a
 * connection whose grace is over, with all their fibers (counted grace);
 * a process without a connection and with nothing left in it is freed at
 * once, grace or not.
 */
void
fibers_expire(struct fibers *fs, double now)
{
	struct fibers_proc	*p, *tmp;
	struct fiber		*f;

	while ((f = fs->lru) != NULL && now - f->last_used > fs->limits.ttl) {
		fibers_fiber_free(fs, f);
		fs->evicted_ttl++;
	}

	DL_FOREACH_SAFE2(fs->idle, p, tmp, idle_next) {
		if (p->fibers == NULL && scope_empty(&p->scope)) {
			fibers_proc_free(fs, p);
			continue;
		}
		if (now - p->detached_at > fs->limits.grace) {
			fs->evicted_grace += HASH_COUNT(p->fibers);
			fibers_proc_free(fs, p);
		}
	}
}

void
fibers_get_counts(const struct fibers *fs, struct fibers_counts *c)
{
	memset(c, 0, sizeof *c);
	c->procs = HASH_COUNT(fs->procs);
	c->live = fs->live;
	c->evicted_lru = fs->evicted_lru;
	c->evicted_ttl = fs->evicted_ttl;
	c->evicted_grace = fs->evicted_grace;
}

/*
 * Call cb for the process scope (fiber NULL, last_used the last time it
 * was looked up) then each fiber scope of pid, or of every process when
 * pid is 0, until cb returns non-zero.  cb must not change the table.
 */
void
fibers_walk(const struct fibers *fs, pid_t pid, fibers_walk_cb cb, void *arg)
{
	struct fibers_proc	*p, *ptmp;
	struct fiber		*f, *ftmp;

	if (pid != 0) {
		HASH_FIND(hh, fs->procs, &pid, sizeof pid, p);
		if (p == NULL)
			return;
		if (cb(p->pid, NULL, &p->scope, p->last_used, arg) != 0)
			return;
		HASH_ITER(hh, p->fibers, f, ftmp)
			if (cb(p->pid, f->id, &f->scope, f->last_used,
			    arg) != 0)
				return;
		return;
	}
	HASH_ITER(hh, fs->procs, p, ptmp) {
		if (cb(p->pid, NULL, &p->scope, p->last_used, arg) != 0)
			return;
		HASH_ITER(hh, p->fibers, f, ftmp)
			if (cb(p->pid, f->id, &f->scope, f->last_used,
			    arg) != 0)
				return;
	}
}
