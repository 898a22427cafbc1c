/*
 * spool.h -- the durable event spool (SPEC §5), one sqlite database in WAL
 * mode.
 *
 * Tables:
 *   events(id INTEGER PRIMARY KEY AUTOINCREMENT, route, event_id, received,
 *          body, UNIQUE(route, event_id))
 *   dead(id INTEGER PRIMARY KEY AUTOINCREMENT, route, event_id, received,
 *        body, status, reason, time)
 * AUTOINCREMENT matters: ids are never reused, so a delivery cursor
 * "everything after id X" stays correct after the newest rows are deleted.
 *
 * Writes are grouped by the caller: spool_begin, any number of spool_put /
 * spool_delete / spool_dead_put, spool_commit.  Nothing is visible to the
 * readers until the commit returns 0; an event is acknowledged only after
 * that.  Reads (take, stats, dead list) may run outside a transaction.
 *
 * The module knows nothing of the event loop: times are passed in by the
 * caller (Unix seconds), errors come back as -1 with a cause string the
 * caller frees.  All statements are prepared once at open.
 */
#ifndef ERRRELAY_SPOOL_H
#define ERRRELAY_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct spool;

enum spool_sync {
	SPOOL_SYNC_FULL,	/* synchronous=FULL: survives power loss */
	SPOOL_SYNC_NORMAL	/* synchronous=NORMAL: survives kill -9 */
};

/* One spooled event, as returned by spool_take (owned by the caller). */
struct spool_row {
	int64_t		 id;
	char		*route;
	char		 event_id[33];
	double		 received;
	char		*body;
	size_t		 len;
};

/* A dead-lettered event, as returned by spool_dead_list. */
struct spool_dead {
	int64_t		 id;
	char		*route;
	char		 event_id[33];
	int		 status;	/* HTTP status, 0 if none */
	char		*reason;
	double		 time;		/* when it was dead-lettered */
	double		 received;
};

struct spool_stats {
	int64_t		 rows;		/* events waiting for delivery */
	int64_t		 bytes;		/* sum of their body lengths */
	double		 oldest;	/* received time of the oldest, 0 if none */
	int64_t		 dead;		/* rows in the dead-letter table */
};

/*
 * Open (creating if needed) the spool at path, mode 0600, WAL mode, with
 * the given sync level.  Returns NULL and sets *cause on failure.
 */
struct spool	*spool_open(const char *path, enum spool_sync, char **cause);
void		 spool_close(struct spool *);

int		 spool_begin(struct spool *, char **cause);
int		 spool_commit(struct spool *, char **cause);
void		 spool_rollback(struct spool *);

/*
 * Insert one event inside the open transaction.  If (route, event_id) is
 * already spooled, nothing is written and *dup is set to 1 (else 0).
 * Returns 0, or -1 with *cause.
 */
int		 spool_put(struct spool *, const char *route,
		     const char *event_id, double received, const char *body,
		     size_t len, int *dup, char **cause);

/* Delete a delivered event inside the open transaction (unknown id: no-op). */
int		 spool_delete(struct spool *, int64_t id, char **cause);

/*
 * Move event id to the dead-letter table inside the open transaction, with
 * the upstream's HTTP status and a reason.
 */
int		 spool_dead_put(struct spool *, int64_t id, int status,
		     const char *reason, double now, char **cause);

/*
 * Read up to max events of route with id > after, oldest first, into a
 * newly allocated array *rows (*n entries).  Returns 0 or -1.
 */
int		 spool_take(struct spool *, const char *route, int64_t after,
		     int max, struct spool_row **rows, size_t *n, char **cause);
void		 spool_rows_free(struct spool_row *, size_t n);

/*
 * Spool bounds (SPEC §5), inside the open transaction.  spool_drop_oldest
 * deletes the rows with the lowest ids until at least bytes_to_free body
 * bytes are gone (or the spool is empty); spool_expire deletes every row
 * received before older_than (Unix seconds).  The counts (any may be NULL)
 * say what was removed; like the figures they hold only if the commit
 * succeeds.  Returns 0, or -1 with *cause.
 */
int		 spool_drop_oldest(struct spool *, int64_t bytes_to_free,
		     int64_t *rows_dropped, int64_t *bytes_dropped,
		     char **cause);
int		 spool_expire(struct spool *, double older_than,
		     int64_t *rows, char **cause);

/* Rows of one route waiting for delivery (-1 on a read error). */
int64_t		 spool_count_route(struct spool *, const char *route);

/*
 * The names of the routes that have rows waiting, sorted, as a new array
 * of *n new strings (the caller frees each and the array).  Returns 0 or
 * -1.  The daemon uses it to find rows whose route is no longer configured.
 */
int		 spool_routes(struct spool *, char ***names, size_t *n,
		     char **cause);

/* Current figures (kept up to date in memory, read from disk at open). */
void		 spool_get_stats(struct spool *, struct spool_stats *);

/* List dead-lettered events (all routes), oldest first. */
int		 spool_dead_list(struct spool *, struct spool_dead **list,
		     size_t *n, char **cause);
void		 spool_dead_free(struct spool_dead *, size_t n);

/*
 * Move dead-lettered events back to the spool inside the open transaction:
 * the ones whose event_id is in ids (n entries), or all of them when n is 0.
 * Sets *moved.  Returns 0 or -1.
 */
int		 spool_dead_requeue(struct spool *, const char *const *ids,
		     size_t n, size_t *moved, char **cause);

#endif
