/*
 * scope.c -- one scope: the context a process or a fiber has set (SPEC §3).
 *
 * A scope is a handful of cJSON trees and strings, changed only by `set`
 * and `crumb` messages that msg_parse has already validated, so nothing
 * here can fail except allocation, which is fatal.  Breadcrumbs are kept
 * as compact JSON text in an array, oldest first; the cap is small (100 by
 * default), so dropping the oldest is a memmove.  Maps never stay empty:
 * a map whose last key is removed is freed, so scope_empty is cheap.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/scope.h"
#include "proto/msg.h"

static const char *const scope_map_names[SCOPE_NMAPS] = {
	"tags", "extra", "contexts", "user"
};

/* The set field of each map, in enum scope_map order. */
static const enum msg_field scope_map_fields[SCOPE_NMAPS] = {
	MSG_F_TAGS, MSG_F_EXTRA, MSG_F_CONTEXTS, MSG_F_USER
};

static cJSON	*scope_dup(const cJSON *);
static char	*scope_print(const cJSON *);
static char	*scope_tag_text(const cJSON *);
static void	 scope_map_set(struct scope *, enum scope_map, const cJSON *);
static size_t	 scope_json_memory(const cJSON *);

/* A deep copy of item; allocation failure is fatal. */
static cJSON *
scope_dup(const cJSON *item)
{
	cJSON	*copy;

	if ((copy = cJSON_Duplicate(item, 1)) == NULL)
		fatalx("%s: out of memory", __func__);
	return copy;
}

/* Compact JSON text of item (caller frees); allocation failure is fatal. */
static char *
scope_print(const cJSON *item)
{
	char	*text;

	if ((text = cJSON_PrintUnformatted(item)) == NULL)
		fatalx("%s: out of memory", __func__);
	return text;
}

/*
 * The text a tag value is stored as: a string as itself, anything else
 * (numbers, booleans) as its compact JSON text.  Returns an xmalloc'd
 * string.
 */
static char *
scope_tag_text(const cJSON *v)
{
	char	*text, *copy;

	if (cJSON_IsString(v))
		return xstrdup(v->valuestring);
	text = scope_print(v);
	copy = xstrdup(text);
	cJSON_free(text);
	return copy;
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
		cJSON_Delete(s->map[i]);
	free(s->level);
	free(s->transaction);
	cJSON_Delete(s->fingerprint);
	for (i = 0; i < s->ncrumbs; i++)
		free(s->crumbs[i].json);
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
		if (src->map[i] != NULL)
			dst->map[i] = scope_dup(src->map[i]);
	if (src->level != NULL)
		dst->level = xstrdup(src->level);
	if (src->transaction != NULL)
		dst->transaction = xstrdup(src->transaction);
	if (src->fingerprint != NULL)
		dst->fingerprint = scope_dup(src->fingerprint);
	if (src->ncrumbs > 0) {
		dst->crumbs = xreallocarray(NULL, src->ncrumbs,
		    sizeof *dst->crumbs);
		dst->crumbs_cap = src->ncrumbs;
		for (i = 0; i < src->ncrumbs; i++) {
			dst->crumbs[i].seq = src->crumbs[i].seq;
			dst->crumbs[i].json = xstrdup(src->crumbs[i].json);
		}
		dst->ncrumbs = src->ncrumbs;
	}
}

int
scope_empty(const struct scope *s)
{
	size_t	i;

	for (i = 0; i < SCOPE_NMAPS; i++)
		if (s->map[i] != NULL && s->map[i]->child != NULL)
			return 0;
	return s->level == NULL && s->transaction == NULL &&
	    s->fingerprint == NULL && s->ncrumbs == 0;
}

/*
 * Merge the object obj into map i key by key: a null value removes the
 * key, any other value replaces the key's old value whole (for contexts,
 * the whole context of that name).  A map left with no key is freed.
 */
static void
scope_map_set(struct scope *s, enum scope_map i, const cJSON *obj)
{
	const cJSON	*v;
	cJSON		*nv;

	cJSON_ArrayForEach(v, obj) {
		if (v->string == NULL)
			continue;
		if (cJSON_IsNull(v)) {
			if (s->map[i] != NULL)
				cJSON_DeleteItemFromObjectCaseSensitive(
				    s->map[i], v->string);
			continue;
		}
		if (i == SCOPE_TAGS) {
			char	*text = scope_tag_text(v);

			nv = cJSON_CreateString(text);
			free(text);
		} else
			nv = cJSON_Duplicate(v, 1);
		if (nv == NULL)
			fatalx("%s: out of memory", __func__);
		if (s->map[i] == NULL &&
		    (s->map[i] = cJSON_CreateObject()) == NULL)
			fatalx("%s: out of memory", __func__);
		if (cJSON_GetObjectItemCaseSensitive(s->map[i],
		    v->string) != NULL)
			cJSON_ReplaceItemInObjectCaseSensitive(s->map[i],
			    v->string, nv);
		else
			cJSON_AddItemToObject(s->map[i], v->string, nv);
	}
	if (s->map[i] != NULL && s->map[i]->child == NULL) {
		cJSON_Delete(s->map[i]);
		s->map[i] = NULL;
	}
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
			cJSON_Delete(s->map[i]);
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
		cJSON_Delete(s->fingerprint);
		s->fingerprint = NULL;
		if (cJSON_IsArray(f))
			s->fingerprint = scope_dup(f);
	}
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
	size_t	 drop = 0, i;

	if (max == 0) {
		for (i = 0; i < s->ncrumbs; i++)
			free(s->crumbs[i].json);
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
	text = scope_print(copy);
	cJSON_Delete(copy);

	/* Make room: keep at most max - 1 old crumbs. */
	if (s->ncrumbs >= max) {
		drop = s->ncrumbs - (max - 1);
		for (i = 0; i < drop; i++)
			free(s->crumbs[i].json);
		memmove(s->crumbs, s->crumbs + drop,
		    (s->ncrumbs - drop) * sizeof *s->crumbs);
		s->ncrumbs -= drop;
	}
	if (s->ncrumbs == s->crumbs_cap) {
		size_t	ncap = s->crumbs_cap == 0 ? 4 : s->crumbs_cap * 2;

		if (ncap > max)
			ncap = max;
		s->crumbs = xreallocarray(s->crumbs, ncap, sizeof *s->crumbs);
		s->crumbs_cap = ncap;
	}
	s->crumbs[s->ncrumbs].seq = seq;
	s->crumbs[s->ncrumbs].json = xstrdup(text);
	s->ncrumbs++;
	cJSON_free(text);
	return drop > 0;
}

/* Rough heap bytes of a cJSON tree. */
static size_t
scope_json_memory(const cJSON *item)
{
	const cJSON	*c;
	size_t		 n;

	if (item == NULL)
		return 0;
	n = sizeof *item;
	if (item->string != NULL)
		n += strlen(item->string) + 1;
	if (item->valuestring != NULL)
		n += strlen(item->valuestring) + 1;
	for (c = item->child; c != NULL; c = c->next)
		n += scope_json_memory(c);
	return n;
}

size_t
scope_memory(const struct scope *s)
{
	size_t	i, n = 0;

	for (i = 0; i < SCOPE_NMAPS; i++)
		n += scope_json_memory(s->map[i]);
	if (s->level != NULL)
		n += strlen(s->level) + 1;
	if (s->transaction != NULL)
		n += strlen(s->transaction) + 1;
	n += scope_json_memory(s->fingerprint);
	n += s->crumbs_cap * sizeof *s->crumbs;
	for (i = 0; i < s->ncrumbs; i++)
		n += strlen(s->crumbs[i].json) + 1;
	return n;
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
	cJSON	*o, *a, *c;
	size_t	 i;

	if ((o = cJSON_CreateObject()) == NULL)
		fatalx("%s: out of memory", __func__);
	for (i = 0; i < SCOPE_NMAPS; i++)
		if (s->map[i] != NULL)
			cJSON_AddItemToObject(o, scope_map_names[i],
			    scope_dup(s->map[i]));
	if (s->level != NULL &&
	    cJSON_AddStringToObject(o, "level", s->level) == NULL)
		fatalx("%s: out of memory", __func__);
	if (s->transaction != NULL &&
	    cJSON_AddStringToObject(o, "transaction", s->transaction) == NULL)
		fatalx("%s: out of memory", __func__);
	if (s->fingerprint != NULL)
		cJSON_AddItemToObject(o, "fingerprint",
		    scope_dup(s->fingerprint));
	if (s->ncrumbs > 0) {
		if ((a = cJSON_AddArrayToObject(o, "breadcrumbs")) == NULL)
			fatalx("%s: out of memory", __func__);
		for (i = 0; i < s->ncrumbs; i++) {
			/* Our own text: it parses unless memory ran out. */
			if ((c = cJSON_Parse(s->crumbs[i].json)) == NULL)
				fatalx("%s: cannot parse a crumb", __func__);
			cJSON_AddItemToArray(a, c);
		}
	}
	return o;
}
