/*
 * scope.c -- one scope: the context a process or a fiber has set (SPEC §3).
 *
 * A scope is changed only by `set` and `crumb` messages that msg_parse has
 * already validated, so nothing here can fail except allocation, which is
 * fatal.  The daemon keeps up to max_fibers (100,000) of them, so they are
 * stored compact rather than as cJSON trees (a tree costs a 64-byte node
 * plus one or two strings, each its own allocation, per key):
 * - each map (tags, extra, contexts, user) and the fingerprint is one
 *   compact JSON text, exactly sized.  A `set` parses only the maps it
 *   names, applies the keys and prints the map back; a merge parses the
 *   maps it reads.  Maps never stay empty: a map whose last key is removed
 *   is freed, so scope_empty is cheap.
 * - the breadcrumbs are one buffer of records, oldest first, each the
 *   8-byte receive sequence then the crumb's compact JSON text and its
 *   NUL.  Appending reallocates the buffer to its exact size; dropping the
 *   oldest is a memmove (the cap is small, 100 by default).
 * Printing is cJSON's, and cJSON prints what it parsed the same way, so a
 * value reads back as it was set (numbers and strings round-trip exactly).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/scope.h"
#include "proto/msg.h"

#define SCOPE_SEQ_LEN	sizeof(uint64_t)	/* a crumb record's header */

static const char *const scope_map_names[SCOPE_NMAPS] = {
	"tags", "extra", "contexts", "user"
};

/* The set field of each map, in enum scope_map order. */
static const enum msg_field scope_map_fields[SCOPE_NMAPS] = {
	MSG_F_TAGS, MSG_F_EXTRA, MSG_F_CONTEXTS, MSG_F_USER
};

static cJSON	*scope_dup(const cJSON *);
static char	*scope_print(const cJSON *);
static cJSON	*scope_parse(const char *);
static char	*scope_strdup(const char *);
static cJSON	*scope_tag_value(const cJSON *);
static void	 scope_map_set(struct scope *, enum scope_map, const cJSON *);
static size_t	 scope_crumbs_skip(const struct scope *, size_t);

/* A deep copy of item; allocation failure is fatal. */
static cJSON *
scope_dup(const cJSON *item)
{
	cJSON	*copy;

	if ((copy = cJSON_Duplicate(item, 1)) == NULL)
		fatalx("%s: out of memory", __func__);
	return copy;
}

/*
 * Compact JSON text of item, exactly sized and allocated with xmalloc
 * (caller frees with free); allocation failure is fatal.
 */
static char *
scope_print(const cJSON *item)
{
	char	*text, *copy;

	if ((text = cJSON_PrintUnformatted(item)) == NULL)
		fatalx("%s: out of memory", __func__);
	copy = xstrdup(text);
	cJSON_free(text);
	return copy;
}

/*
 * Parse text the scope printed itself.  It is valid JSON, so a failure
 * can only be allocation, which is fatal.  Returns a new tree.
 */
static cJSON *
scope_parse(const char *text)
{
	cJSON	*item;

	if ((item = cJSON_Parse(text)) == NULL)
		fatalx("%s: cannot parse stored scope text", __func__);
	return item;
}

static char *
scope_strdup(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/*
 * The item a tag value is stored as: a string as itself, anything else
 * (numbers, booleans) as a string holding its compact JSON text.  Returns
 * a new item.
 */
static cJSON *
scope_tag_value(const cJSON *v)
{
	cJSON	*item;
	char	*text;

	if (cJSON_IsString(v))
		item = cJSON_CreateString(v->valuestring);
	else {
		text = scope_print(v);
		item = cJSON_CreateString(text);
		free(text);
	}
	if (item == NULL)
		fatalx("%s: out of memory", __func__);
	return item;
}

void
scope_init(struct scope *s)
{
	memset(s, 0, sizeof *s);
}

void
scope_clear(struct scope *s)
{
	size_t	i;

	for (i = 0; i < SCOPE_NMAPS; i++)
		free(s->map[i]);
	free(s->level);
	free(s->transaction);
	free(s->fingerprint);
	free(s->crumbs);
	scope_init(s);
}

void
scope_copy(struct scope *dst, const struct scope *src)
{
	size_t	i;

	if (dst == src)
		return;
	scope_clear(dst);
	for (i = 0; i < SCOPE_NMAPS; i++)
		dst->map[i] = scope_strdup(src->map[i]);
	dst->level = scope_strdup(src->level);
	dst->transaction = scope_strdup(src->transaction);
	dst->fingerprint = scope_strdup(src->fingerprint);
	if (src->crumbs_len > 0) {
		dst->crumbs = xmalloc(src->crumbs_len);
		memcpy(dst->crumbs, src->crumbs, src->crumbs_len);
		dst->crumbs_len = src->crumbs_len;
		dst->ncrumbs = src->ncrumbs;
	}
}

int
scope_empty(const struct scope *s)
{
	size_t	i;

	for (i = 0; i < SCOPE_NMAPS; i++)
		if (s->map[i] != NULL)
			return 0;
	return s->level == NULL && s->transaction == NULL &&
	    s->fingerprint == NULL && s->ncrumbs == 0;
}

/*
 * Merge the object obj into map i key by key: a null value removes the
 * key, any other value replaces the key's old value whole (for contexts,
 * the whole context of that name), in its old place; a new key goes at
 * the end.  The map is parsed, changed and printed back; a map left with
 * no key is freed.
 */
static void
scope_map_set(struct scope *s, enum scope_map i, const cJSON *obj)
{
	const cJSON	*v;
	cJSON		*map, *nv;

	if (s->map[i] != NULL)
		map = scope_parse(s->map[i]);
	else if ((map = cJSON_CreateObject()) == NULL)
		fatalx("%s: out of memory", __func__);

	cJSON_ArrayForEach(v, obj) {
		if (v->string == NULL)
			continue;
		if (cJSON_IsNull(v)) {
			cJSON_DeleteItemFromObjectCaseSensitive(map,
			    v->string);
			continue;
		}
		if (i == SCOPE_TAGS)
			nv = scope_tag_value(v);
		else
			nv = scope_dup(v);
		if (cJSON_GetObjectItemCaseSensitive(map, v->string) != NULL)
			cJSON_ReplaceItemInObjectCaseSensitive(map, v->string,
			    nv);
		else
			cJSON_AddItemToObject(map, v->string, nv);
	}

	free(s->map[i]);
	s->map[i] = map->child != NULL ? scope_print(map) : NULL;
	cJSON_Delete(map);
}

void
scope_set(struct scope *s, const struct msg *m)
{
	const cJSON	*f;
	size_t		 i;

	for (i = 0; i < SCOPE_NMAPS; i++) {
		if ((f = m->field[scope_map_fields[i]]) == NULL)
			continue;
		if (cJSON_IsNull(f)) {
			free(s->map[i]);
			s->map[i] = NULL;
		} else if (cJSON_IsObject(f))
			scope_map_set(s, i, f);
	}

	if ((f = m->field[MSG_F_LEVEL]) != NULL) {
		free(s->level);
		s->level = NULL;
		if (cJSON_IsString(f))
			s->level = xstrdup(f->valuestring);
	}
	if ((f = m->field[MSG_F_TRANSACTION]) != NULL) {
		free(s->transaction);
		s->transaction = NULL;
		if (cJSON_IsString(f))
			s->transaction = xstrdup(f->valuestring);
	}
	if ((f = m->field[MSG_F_FINGERPRINT]) != NULL) {
		free(s->fingerprint);
		s->fingerprint = NULL;
		if (cJSON_IsArray(f))
			s->fingerprint = scope_print(f);
	}
}

/* The byte offset of crumb record n (crumbs_len when n is ncrumbs). */
static size_t
scope_crumbs_skip(const struct scope *s, size_t n)
{
	size_t	off = 0;

	while (n-- > 0)
		off += SCOPE_SEQ_LEN + strlen(s->crumbs + off +
		    SCOPE_SEQ_LEN) + 1;
	return off;
}

/*
 * Append a copy of crumb with "timestamp" filled (a JSON number, Unix
 * seconds with fraction) when it has none or a null one.  The scope keeps
 * the newest max crumbs; returns 1 if any crumb (an old one, or this one
 * when max is 0) was dropped, else 0.
 */
int
scope_crumb(struct scope *s, const cJSON *crumb, double now, uint64_t seq,
    size_t max)
{
	cJSON	*copy, *ts, *num;
	char	*text;
	size_t	 drop = 0, off, len;

	if (max == 0) {
		free(s->crumbs);
		s->crumbs = NULL;
		s->crumbs_len = 0;
		s->ncrumbs = 0;
		return 1;
	}

	copy = scope_dup(crumb);
	ts = cJSON_GetObjectItemCaseSensitive(copy, "timestamp");
	if (ts == NULL || cJSON_IsNull(ts)) {
		if ((num = cJSON_CreateNumber(now)) == NULL)
			fatalx("%s: out of memory", __func__);
		if (ts != NULL)
			cJSON_ReplaceItemInObjectCaseSensitive(copy,
			    "timestamp", num);
		else
			cJSON_AddItemToObject(copy, "timestamp", num);
	}
	if ((text = cJSON_PrintUnformatted(copy)) == NULL)
		fatalx("%s: out of memory", __func__);
	cJSON_Delete(copy);
	len = strlen(text) + 1;

	/* Make room: keep at most max - 1 old crumbs. */
	if (s->ncrumbs >= max) {
		drop = s->ncrumbs - (max - 1);
		off = scope_crumbs_skip(s, drop);
		memmove(s->crumbs, s->crumbs + off, s->crumbs_len - off);
		s->crumbs_len -= off;
		s->ncrumbs -= drop;
	}
	if (SIZE_MAX - s->crumbs_len < SCOPE_SEQ_LEN + len)
		fatalx("%s: breadcrumbs too large", __func__);
	s->crumbs = xrealloc(s->crumbs, s->crumbs_len + SCOPE_SEQ_LEN + len);
	memcpy(s->crumbs + s->crumbs_len, &seq, SCOPE_SEQ_LEN);
	memcpy(s->crumbs + s->crumbs_len + SCOPE_SEQ_LEN, text, len);
	s->crumbs_len += SCOPE_SEQ_LEN + len;
	s->ncrumbs++;
	cJSON_free(text);
	return drop > 0;
}

int
scope_crumb_next(const struct scope *s, size_t *pos, struct scope_crumb *c)
{
	if (*pos >= s->crumbs_len)
		return 0;
	memcpy(&c->seq, s->crumbs + *pos, SCOPE_SEQ_LEN);
	c->json = s->crumbs + *pos + SCOPE_SEQ_LEN;
	*pos += SCOPE_SEQ_LEN + strlen(c->json) + 1;
	return 1;
}

cJSON *
scope_map_json(const struct scope *s, enum scope_map i)
{
	return s->map[i] != NULL ? scope_parse(s->map[i]) : NULL;
}

cJSON *
scope_fingerprint_json(const struct scope *s)
{
	return s->fingerprint != NULL ? scope_parse(s->fingerprint) : NULL;
}

/*
 * The bytes of heap the scope's content takes (allocator overhead not
 * counted): 0 for an empty scope.
 */
size_t
scope_memory(const struct scope *s)
{
	size_t	i, n = 0;

	for (i = 0; i < SCOPE_NMAPS; i++)
		if (s->map[i] != NULL)
			n += strlen(s->map[i]) + 1;
	if (s->level != NULL)
		n += strlen(s->level) + 1;
	if (s->transaction != NULL)
		n += strlen(s->transaction) + 1;
	if (s->fingerprint != NULL)
		n += strlen(s->fingerprint) + 1;
	return n + s->crumbs_len;
}

/*
 * The scope as one JSON object holding only the members that are set:
 * tags, extra, contexts, user (objects), level, transaction (strings),
 * fingerprint (array) and breadcrumbs (array of objects, oldest first).
 * The caller frees it with cJSON_Delete.
 */
cJSON *
scope_to_json(const struct scope *s)
{
	struct scope_crumb	 c;
	cJSON			*o, *a;
	size_t			 i, pos = 0;

	if ((o = cJSON_CreateObject()) == NULL)
		fatalx("%s: out of memory", __func__);
	for (i = 0; i < SCOPE_NMAPS; i++)
		if (s->map[i] != NULL)
			cJSON_AddItemToObject(o, scope_map_names[i],
			    scope_parse(s->map[i]));
	if (s->level != NULL &&
	    cJSON_AddStringToObject(o, "level", s->level) == NULL)
		fatalx("%s: out of memory", __func__);
	if (s->transaction != NULL &&
	    cJSON_AddStringToObject(o, "transaction", s->transaction) == NULL)
		fatalx("%s: out of memory", __func__);
	if (s->fingerprint != NULL)
		cJSON_AddItemToObject(o, "fingerprint",
		    scope_parse(s->fingerprint));
	if (s->ncrumbs > 0) {
		if ((a = cJSON_AddArrayToObject(o, "breadcrumbs")) == NULL)
			fatalx("%s: out of memory", __func__);
		while (scope_crumb_next(s, &pos, &c))
			cJSON_AddItemToArray(a, scope_parse(c.json));
	}
	return o;
}
