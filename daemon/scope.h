/*
 * scope.h -- one scope: the context a process or a fiber has set (SPEC §3).
 *
 * Pure code: no event loop, no sockets.  A scope holds the four keyed maps
 * (tags, extra, contexts, user), the three single values (level,
 * transaction, fingerprint) and a bounded list of breadcrumbs.  The daemon
 * keeps up to max_fibers (100,000) scopes, so a scope is stored compact:
 * each map and the fingerprint as one compact JSON text (one allocation,
 * parsed only when a `set` changes it or a merge reads it), and all the
 * breadcrumbs of a scope in one buffer.  Breadcrumbs are immutable once
 * added, so each is kept as its compact JSON text, with the daemon-wide
 * receive sequence number that lets the merge interleave process and fiber
 * crumbs in the order they arrived.
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

/* One breadcrumb as scope_crumb_next shows it. */
struct scope_crumb {
	uint64_t	 seq;	/* receive order, daemon-wide */
	const char	*json;	/* compact JSON object text, in the scope */
};

/*
 * Invariants: map[i] is NULL or the compact JSON text of an object with at
 * least one key (tags values are strings only); level/transaction NULL or
 * owned strings; fingerprint NULL or the compact JSON text of an array of
 * strings.  crumbs holds ncrumbs records, oldest first, in exactly
 * crumbs_len bytes (NULL when there are none): each record is the 8-byte
 * seq (host order, unaligned) then the crumb's compact JSON text and its
 * NUL.  ncrumbs <= the cap that scope_crumb was last given.  Read the
 * maps, the fingerprint and the crumbs through the functions below.
 */
struct scope {
	char		*map[SCOPE_NMAPS];
	char		*level;
	char		*transaction;
	char		*fingerprint;
	char		*crumbs;
	size_t		 ncrumbs;
	size_t		 crumbs_len;
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

/* Map i as a new cJSON object (caller frees), or NULL when it is not set. */
cJSON	*scope_map_json(const struct scope *, enum scope_map);
/* The fingerprint as a new cJSON array (caller frees), or NULL. */
cJSON	*scope_fingerprint_json(const struct scope *);

/*
 * Walk the crumbs, oldest first: start with *pos = 0; each call fills c
 * and returns 1, or returns 0 after the last.  c->json points into the
 * scope and stays valid until the scope next changes.
 */
int	 scope_crumb_next(const struct scope *, size_t *pos,
	    struct scope_crumb *c);

#endif
