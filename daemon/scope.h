/*
 * scope.h -- one scope: the context a process or a fiber has set (SPEC §3).
 *
 * Pure code: no event loop, no sockets.  A scope holds the four keyed maps
 * (tags, extra, contexts, user), the three single values (level,
 * transaction, fingerprint) and a bounded list of breadcrumbs.  Breadcrumbs
 * are immutable once added, so each is kept as its compact JSON text, with
 * the daemon-wide receive sequence number that lets the merge interleave
 * process and fiber crumbs in the order they arrived.
 */
#ifndef ERRRELAY_SCOPE_H
#define ERRRELAY_SCOPE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "proto/msg.h"

enum scope_map {
	SCOPE_TAGS,
	SCOPE_EXTRA,
	SCOPE_CONTEXTS,
	SCOPE_USER,
	SCOPE_NMAPS
};

struct scope_crumb {
	uint64_t	 seq;	/* receive order, daemon-wide */
	char		*json;	/* compact JSON object text, owned */
};

/*
 * Invariants: map[i] is NULL or a cJSON object (tags values are strings
 * only); level/transaction NULL or owned strings; fingerprint NULL or an
 * array of strings; crumbs[0..ncrumbs) oldest first, ncrumbs <= the cap
 * that scope_crumb was last given.
 */
struct scope {
	cJSON			*map[SCOPE_NMAPS];
	char			*level;
	char			*transaction;
	cJSON			*fingerprint;
	struct scope_crumb	*crumbs;
	size_t			 ncrumbs;
	size_t			 crumbs_cap;	/* allocated slots */
};

void	 scope_init(struct scope *);
/* Free everything the scope holds and leave it empty (re-usable). */
void	 scope_clear(struct scope *);
/* Make dst a deep copy of src (dst's old content is freed). */
void	 scope_copy(struct scope *dst, const struct scope *src);
/* 1 if nothing is set. */
int	 scope_empty(const struct scope *);

/*
 * Apply a parsed `set` message: for each field present in m->field, a
 * cJSON_NULL value clears the field; for the maps, each key is merged, a
 * key whose value is null is removed.  Tag values that are numbers or
 * booleans are stored as their JSON text.  msg_parse already validated
 * everything, so this cannot fail.
 */
void	 scope_set(struct scope *, const struct msg *m);

/*
 * Append a breadcrumb (a copy of crumb, with "timestamp": now added when
 * absent), keeping the newest max of them.  Returns 1 if an old crumb was
 * dropped to make room, else 0.
 */
int	 scope_crumb(struct scope *, const cJSON *crumb, double now,
	    uint64_t seq, size_t max);

/* Rough bytes of heap the scope holds (for status and the memory bench). */
size_t	 scope_memory(const struct scope *);

/* The scope as a JSON object, for `errrelayctl fibers` (caller frees). */
cJSON	*scope_to_json(const struct scope *);

#endif
