/*
 * merge.h -- merge the scope layers into an event (SPEC §4).
 *
 * Pure code.  Layers, lowest first: global < process < fiber < the event.
 * The result is the event as it will be stored and delivered: compact JSON
 * text with event_id, timestamp, platform, server_name, level filled,
 * breadcrumbs as {"values": [...]}, tags sanitised.
 */
#ifndef ERRRELAY_MERGE_H
#define ERRRELAY_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "daemon/scope.h"

#define MERGE_TAG_MAX	200	/* characters in a tag key or value */

/* The global layer, from the config's [scope] section. */
struct merge_global {
	const char	*environment;	/* NULL: none */
	const char	*release;	/* NULL: none */
	const char	*server_name;	/* never NULL: config or host name */
	cJSON		*tags;		/* object of string values, or NULL */
};

struct merge_limits {
	size_t		 max_breadcrumbs;
	size_t		 max_event_bytes;
};

/* What the sanitiser changed, added to by each call. */
struct merge_counts {
	uint64_t	 tag_values_cut;	/* longer than 200 chars */
	uint64_t	 tag_newlines;		/* values with a newline replaced */
	uint64_t	 tag_keys_dropped;	/* keys longer than 200 chars */
	uint64_t	 too_large;		/* events rejected for size */
};

/*
 * Merge the layers into event (a validated event object from msg_parse,
 * modified in place; proc and fiber may be NULL).  event_id is the
 * normalised id from the message, or NULL to generate a uuid4.  On success
 * returns 0 with *out (compact JSON, caller frees), *outlen and out_id (the
 * event's normalised event_id).  Returns -1 if the result is larger than
 * max_event_bytes (counted in counts->too_large).
 */
int	 merge_event(const struct merge_global *, const struct scope *proc,
	    const struct scope *fiber, cJSON *event, const char *event_id,
	    double now, const struct merge_limits *, struct merge_counts *,
	    char **out, size_t *outlen, char out_id[33]);

/* Write a new uuid4 as 32 lowercase hex digits (out: 33 bytes). */
void	 merge_uuid4(char out[33]);

#endif
