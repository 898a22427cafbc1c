/*
 * merge.c -- merge the scope layers into an event (SPEC §4).
 *
 * Layers, lowest first: global < process < fiber < the event.  The keyed
 * maps (tags, extra, contexts, user) are merged key by key, the higher
 * layer's value replacing the lower's whole (a context is replaced per
 * name, never merged inside); level, transaction and fingerprint come from
 * the event, else the nearest scope; breadcrumbs are the scope crumbs in
 * receive order followed by the event's own, newest kept.  A few fields
 * are filled when absent, the tags are sanitised the way Sentry's ingest
 * would otherwise do silently, and every other field of the event passes
 * through untouched.  The event object is changed in place and printed
 * compact.  The scopes keep their maps as JSON text (see scope.h): each
 * map a layer has is parsed once here and its members moved into the
 * result, so a merge costs one parse per map set, no more.  Pure code: the
 * caller passes the time in; only merge_uuid4 reads the kernel's random
 * source.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/merge.h"
#include "daemon/scope.h"

static const char *const merge_map_names[SCOPE_NMAPS] = {
	"tags", "extra", "contexts", "user"
};

static void	 merge_oom(const char *) __attribute__((noreturn));
static void	 merge_put(cJSON *, const char *, cJSON *);
static void	 merge_put_string(cJSON *, const char *, const char *);
static cJSON	*merge_tag_value(const cJSON *);
static void	 merge_layer(cJSON *, const cJSON *, int, int);
static void	 merge_layer_scope(cJSON *, const struct scope *,
		    enum scope_map);
static void	 merge_event_tags(cJSON *, const cJSON *);
static cJSON	*merge_map(enum scope_map, const struct merge_global *,
		    const struct scope *, const struct scope *, const cJSON *);
static size_t	 merge_utf8_prefix(const char *, size_t, size_t, size_t *);
static void	 merge_sanitise_tags(cJSON *, struct merge_counts *);
static void	 merge_single(cJSON *, const struct scope *,
		    const struct scope *);
static void	 merge_breadcrumbs(cJSON *, const struct scope *,
		    const struct scope *, size_t);

static void
merge_oom(const char *where)
{
	fatalx("%s: out of memory", where);
}

/*
 * Set obj[key] = item (item is taken over): replace the first member of
 * that name in place, so the event keeps its field order, and remove any
 * later duplicate.
 */
static void
merge_put(cJSON *obj, const char *key, cJSON *item)
{
	cJSON	*old, *next;

	if (item == NULL)
		merge_oom(__func__);
	if ((old = cJSON_GetObjectItemCaseSensitive(obj, key)) == NULL) {
		cJSON_AddItemToObject(obj, key, item);
		return;
	}
	for (old = old->next; old != NULL; old = next) {
		next = old->next;
		if (old->string != NULL && strcmp(old->string, key) == 0)
			cJSON_Delete(cJSON_DetachItemViaPointer(obj, old));
	}
	cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
}

static void
merge_put_string(cJSON *obj, const char *key, const char *s)
{
	merge_put(obj, key, cJSON_CreateString(s));
}

/*
 * A tag value as stored: a string as itself, a number or boolean as its
 * JSON text (anything else, which msg_parse does not let through, as its
 * compact JSON text too).  Returns a new string item.
 */
static cJSON *
merge_tag_value(const cJSON *v)
{
	cJSON	*item;
	char	*text;

	if (cJSON_IsString(v))
		item = cJSON_CreateString(v->valuestring);
	else {
		if ((text = cJSON_PrintUnformatted(v)) == NULL)
			merge_oom(__func__);
		item = cJSON_CreateString(text);
		cJSON_free(text);
	}
	if (item == NULL)
		merge_oom(__func__);
	return item;
}

/*
 * Lay the object layer over dst, key by key: each key of layer replaces
 * the same key of dst whole.  With skip_null, a null value leaves dst's
 * key alone (the event's null hides nothing); with tags, values become
 * strings.
 */
static void
merge_layer(cJSON *dst, const cJSON *layer, int skip_null, int tags)
{
	const cJSON	*v;
	cJSON		*nv;

	if (!cJSON_IsObject(layer))
		return;
	cJSON_ArrayForEach(v, layer) {
		if (v->string == NULL)
			continue;
		if (skip_null && cJSON_IsNull(v))
			continue;
		if (tags)
			nv = merge_tag_value(v);
		else if ((nv = cJSON_Duplicate(v, 1)) == NULL)
			merge_oom(__func__);
		merge_put(dst, v->string, nv);
	}
}

/*
 * Lay map i of scope s (NULL, or without that map: nothing) over dst,
 * key by key.  The stored map is parsed and its members are moved into
 * dst, each replacing the same key whole (dst, built by merge_put and
 * this function only, never holds a key twice); stored tag values are
 * strings already and a stored map holds no null.
 */
static void
merge_layer_scope(cJSON *dst, const struct scope *s, enum scope_map i)
{
	cJSON	*layer, *v, *old;

	if (s == NULL || (layer = scope_map_json(s, i)) == NULL)
		return;
	while ((v = layer->child) != NULL) {
		cJSON_DetachItemViaPointer(layer, v);
		old = cJSON_GetObjectItemCaseSensitive(dst, v->string);
		if (old != NULL)
			cJSON_ReplaceItemViaPointer(dst, old, v);
		else	/* v keeps its key: appending it is enough */
			cJSON_AddItemToArray(dst, v);
	}
	cJSON_Delete(layer);
}

/*
 * The event's own tags over dst: an object, or Sentry's other form, a
 * list of [key, value] pairs.  Null values are skipped.
 */
static void
merge_event_tags(cJSON *dst, const cJSON *tags)
{
	const cJSON	*pair, *k, *v;

	if (cJSON_IsObject(tags)) {
		merge_layer(dst, tags, 1, 1);
		return;
	}
	if (!cJSON_IsArray(tags))
		return;
	cJSON_ArrayForEach(pair, tags) {
		if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2)
			continue;
		k = cJSON_GetArrayItem(pair, 0);
		v = cJSON_GetArrayItem(pair, 1);
		if (!cJSON_IsString(k) || cJSON_IsNull(v))
			continue;
		merge_put(dst, k->valuestring, merge_tag_value(v));
	}
}

/*
 * The merged map i: global (tags only) < proc < fiber < the event's own
 * field ev (may be NULL).  Returns a new object, possibly empty.
 */
static cJSON *
merge_map(enum scope_map i, const struct merge_global *g,
    const struct scope *proc, const struct scope *fiber, const cJSON *ev)
{
	cJSON	*dst;
	int	 tags = i == SCOPE_TAGS;

	if ((dst = cJSON_CreateObject()) == NULL)
		merge_oom(__func__);
	if (tags && g->tags != NULL)
		merge_layer(dst, g->tags, 1, 1);
	merge_layer_scope(dst, proc, i);
	merge_layer_scope(dst, fiber, i);
	if (ev != NULL) {
		if (tags)
			merge_event_tags(dst, ev);
		else
			merge_layer(dst, ev, 1, 0);
	}
	return dst;
}

/*
 * The byte length of the first max code points of the UTF-8 string s of
 * len bytes (len itself when it has no more); *ncp gets the number of code
 * points in the whole of s.  A code point starts at each byte that is not
 * a continuation byte, so a cut there never splits one.
 */
static size_t
merge_utf8_prefix(const char *s, size_t len, size_t max, size_t *ncp)
{
	size_t	i, n = 0, cut = len;

	for (i = 0; i < len; i++) {
		if (((unsigned char)s[i] & 0xc0) == 0x80)
			continue;
		if (n == max)
			cut = i;
		n++;
	}
	*ncp = n;
	return cut;
}

/*
 * Sanitise the merged tags in place: a key of more than MERGE_TAG_MAX
 * characters is dropped, a value of more is cut to MERGE_TAG_MAX, and a
 * newline (LF or CR) left in a value becomes a space.  Each is counted.
 */
static void
merge_sanitise_tags(cJSON *tags, struct merge_counts *counts)
{
	cJSON	*t, *next;
	char	*v, *p;
	size_t	 len, cut, ncp;
	int	 nl;

	for (t = tags->child; t != NULL; t = next) {
		next = t->next;
		len = strlen(t->string);
		(void)merge_utf8_prefix(t->string, len, MERGE_TAG_MAX, &ncp);
		if (ncp > MERGE_TAG_MAX) {
			cJSON_Delete(cJSON_DetachItemViaPointer(tags, t));
			counts->tag_keys_dropped++;
			continue;
		}
		if (!cJSON_IsString(t))
			continue;
		v = t->valuestring;
		len = strlen(v);
		cut = merge_utf8_prefix(v, len, MERGE_TAG_MAX, &ncp);
		if (cut < len) {
			v[cut] = '\0';	/* shortening in place is safe */
			counts->tag_values_cut++;
		}
		nl = 0;
		for (p = v; *p != '\0'; p++)
			if (*p == '\n' || *p == '\r') {
				*p = ' ';
				nl = 1;
			}
		if (nl)
			counts->tag_newlines++;
	}
}

/*
 * level, transaction, fingerprint: the event's when present and not null,
 * else the nearest scope's (fiber, then process); level defaults to
 * "error".
 */
static void
merge_single(cJSON *event, const struct scope *proc,
    const struct scope *fiber)
{
	const cJSON	*v;
	const char	*s;
	cJSON		*fp;

	v = cJSON_GetObjectItemCaseSensitive(event, "level");
	if (v == NULL || cJSON_IsNull(v)) {
		s = "error";
		if (fiber != NULL && fiber->level != NULL)
			s = fiber->level;
		else if (proc != NULL && proc->level != NULL)
			s = proc->level;
		merge_put_string(event, "level", s);
	}

	v = cJSON_GetObjectItemCaseSensitive(event, "transaction");
	if (v == NULL || cJSON_IsNull(v)) {
		s = NULL;
		if (fiber != NULL && fiber->transaction != NULL)
			s = fiber->transaction;
		else if (proc != NULL && proc->transaction != NULL)
			s = proc->transaction;
		if (s != NULL)
			merge_put_string(event, "transaction", s);
	}

	v = cJSON_GetObjectItemCaseSensitive(event, "fingerprint");
	if (v == NULL || cJSON_IsNull(v)) {
		fp = NULL;
		if (fiber != NULL && fiber->fingerprint != NULL)
			fp = scope_fingerprint_json(fiber);
		else if (proc != NULL && proc->fingerprint != NULL)
			fp = scope_fingerprint_json(proc);
		if (fp != NULL)
			merge_put(event, "fingerprint", fp);
	}
}

/*
 * breadcrumbs: the process and fiber crumbs interleaved by receive
 * sequence, then the event's own (a list or {"values": [...]}), of which
 * the newest max are kept, as {"values": [...]}.  The event's crumbs are
 * moved, the scope crumbs go in as their stored text.  An event without
 * breadcrumbs and scopes without crumbs get none.
 */
static void
merge_breadcrumbs(cJSON *event, const struct scope *proc,
    const struct scope *fiber, size_t max)
{
	static const struct scope	 none;	/* stands for a missing scope */
	cJSON				*old, *evc = NULL, *values, *wrap, *c;
	cJSON				*next;
	struct scope_crumb		 pc, fc, *take;
	size_t				 ne = 0, total, skip, k = 0;
	size_t				 ppos = 0, fpos = 0;
	int				 hp, hf;

	if (proc == NULL)
		proc = &none;
	if (fiber == NULL)
		fiber = &none;
	old = cJSON_GetObjectItemCaseSensitive(event, "breadcrumbs");
	if (old == NULL && proc->ncrumbs + fiber->ncrumbs == 0)
		return;
	if (cJSON_IsArray(old))
		evc = old;
	else if (cJSON_IsObject(old)) {
		evc = cJSON_GetObjectItemCaseSensitive(old, "values");
		if (!cJSON_IsArray(evc))
			evc = NULL;
	}
	if (evc != NULL)
		ne = (size_t)cJSON_GetArraySize(evc);

	total = proc->ncrumbs + fiber->ncrumbs + ne;
	skip = total > max ? total - max : 0;
	if ((values = cJSON_CreateArray()) == NULL)
		merge_oom(__func__);
	hp = scope_crumb_next(proc, &ppos, &pc);
	hf = scope_crumb_next(fiber, &fpos, &fc);
	while (hp || hf) {
		take = !hf || (hp && pc.seq <= fc.seq) ? &pc : &fc;
		if (k++ >= skip) {
			if ((c = cJSON_CreateRaw(take->json)) == NULL)
				merge_oom(__func__);
			cJSON_AddItemToArray(values, c);
		}
		if (take == &pc)
			hp = scope_crumb_next(proc, &ppos, &pc);
		else
			hf = scope_crumb_next(fiber, &fpos, &fc);
	}
	if (evc != NULL) {
		for (c = evc->child; c != NULL; c = next) {
			next = c->next;
			if (k++ < skip)
				continue;
			cJSON_AddItemToArray(values,
			    cJSON_DetachItemViaPointer(evc, c));
		}
	}
	if ((wrap = cJSON_CreateObject()) == NULL)
		merge_oom(__func__);
	cJSON_AddItemToObject(wrap, "values", values);
	merge_put(event, "breadcrumbs", wrap);
}

/*
 * A buffered pool of kernel randomness: one getrandom(2) per 32 ids
 * (/dev/urandom if the kernel lacks getrandom).  The daemon is single
 * threaded and never forks, so the pool needs no lock.
 */
static unsigned char	merge_pool[512];
static size_t		merge_pool_left;

static void
merge_pool_fill(void)
{
	size_t	 got = 0;
	ssize_t	 n;
	FILE	*f;

	while (got < sizeof merge_pool) {
		n = getrandom(merge_pool + got, sizeof merge_pool - got, 0);
		if (n > 0)
			got += (size_t)n;
		else if (n == -1 && errno == EINTR)
			continue;
		else
			break;
	}
	if (got < sizeof merge_pool) {
		if ((f = fopen("/dev/urandom", "rb")) == NULL)
			fatal("%s: no random source", __func__);
		got += fread(merge_pool + got, 1, sizeof merge_pool - got, f);
		fclose(f);
		if (got < sizeof merge_pool)
			fatalx("%s: short read from /dev/urandom", __func__);
	}
	merge_pool_left = sizeof merge_pool;
}

void
merge_uuid4(char out[33])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 b[16];
	size_t			 i;

	if (merge_pool_left < sizeof b)
		merge_pool_fill();
	memcpy(b, merge_pool + sizeof merge_pool - merge_pool_left, sizeof b);
	/* Used bytes are wiped: they were ids. */
	memset(merge_pool + sizeof merge_pool - merge_pool_left, 0, sizeof b);
	merge_pool_left -= sizeof b;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);	/* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	for (i = 0; i < sizeof b; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 0x0f];
	}
	out[32] = '\0';
}

/*
 * Merge the layers into event (changed in place) and print it compact.
 * Returns 0 with *out (caller frees), *outlen and out_id set, or -1 when
 * the result exceeds max_event_bytes (counted; *out untouched).
 */
int
merge_event(const struct merge_global *g, const struct scope *proc,
    const struct scope *fiber, cJSON *event, const char *event_id,
    double now, const struct merge_limits *limits,
    struct merge_counts *counts, char **out, size_t *outlen, char out_id[33])
{
	const cJSON	*v;
	cJSON		*m;
	char		*text;
	size_t		 i, len;

	/* event_id: the normalised one given, the event's own, or new. */
	v = cJSON_GetObjectItemCaseSensitive(event, "event_id");
	if (event_id != NULL) {
		memcpy(out_id, event_id, 32);
		out_id[32] = '\0';
	} else if (!cJSON_IsString(v) ||
	    msg_event_id_normalise(v->valuestring, out_id) == -1)
		merge_uuid4(out_id);
	merge_put_string(event, "event_id", out_id);

	for (i = 0; i < SCOPE_NMAPS; i++) {
		v = cJSON_GetObjectItemCaseSensitive(event, merge_map_names[i]);
		m = merge_map(i, g, proc, fiber, v);
		if (i == SCOPE_TAGS)
			merge_sanitise_tags(m, counts);
		if (m->child == NULL && (v == NULL || cJSON_IsNull(v))) {
			/* nothing anywhere: no member, not {} or null */
			cJSON_Delete(m);
			cJSON_DeleteItemFromObjectCaseSensitive(event,
			    merge_map_names[i]);
		} else
			merge_put(event, merge_map_names[i], m);
	}
	merge_single(event, proc, fiber);
	merge_breadcrumbs(event, proc, fiber, limits->max_breadcrumbs);

	v = cJSON_GetObjectItemCaseSensitive(event, "timestamp");
	if (v == NULL || cJSON_IsNull(v))
		merge_put(event, "timestamp", cJSON_CreateNumber(now));
	v = cJSON_GetObjectItemCaseSensitive(event, "platform");
	if (v == NULL || cJSON_IsNull(v))
		merge_put_string(event, "platform", "other");
	v = cJSON_GetObjectItemCaseSensitive(event, "server_name");
	if ((v == NULL || cJSON_IsNull(v)) && g->server_name != NULL)
		merge_put_string(event, "server_name", g->server_name);
	v = cJSON_GetObjectItemCaseSensitive(event, "environment");
	if ((v == NULL || cJSON_IsNull(v)) && g->environment != NULL)
		merge_put_string(event, "environment", g->environment);
	v = cJSON_GetObjectItemCaseSensitive(event, "release");
	if ((v == NULL || cJSON_IsNull(v)) && g->release != NULL)
		merge_put_string(event, "release", g->release);

	if ((text = cJSON_PrintUnformatted(event)) == NULL)
		merge_oom(__func__);
	len = strlen(text);
	if (len > limits->max_event_bytes) {
		cJSON_free(text);
		counts->too_large++;
		return -1;
	}
	*out = text;
	*outlen = len;
	return 0;
}
