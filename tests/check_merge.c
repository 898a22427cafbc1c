/*
 * check_merge.c -- unit tests of daemon/merge.c against SPEC §4 and the
 * "Scopes and merge" details of §11: layer precedence key by key, null
 * removing a key from one layer only, contexts replaced per name, level,
 * transaction and fingerprint from the nearest layer, breadcrumbs in
 * receive order then the event's own, the fill-ins, event_id
 * normalisation, pass-through of every other field, the tag sanitiser and
 * the size limit.
 *
 * Scopes are filled through scope_set/scope_crumb with hand-built
 * messages; each test starts from empty process and fiber scopes and the
 * global layer below.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "daemon/merge.h"
#include "daemon/scope.h"
#include "proto/msg.h"
#include "tests/check_run.h"

#define NOW	1700000123.5

static const char *const set_names[MSG_F_COUNT] = {
	"tags", "extra", "contexts", "user", "level", "transaction",
	"fingerprint"
};

static struct scope		P;	/* process scope */
static struct scope		F;	/* fiber scope */
static struct merge_global	G;
static struct merge_limits	L;
static struct merge_counts	C;
static char			last_id[33];
static size_t			last_len;

static void
setup(void)
{
	scope_init(&P);
	scope_init(&F);
	memset(&G, 0, sizeof G);
	G.environment = "prod";
	G.release = "1.2.3";
	G.server_name = "host-a";
	G.tags = NULL;
	L.max_breadcrumbs = 100;
	L.max_event_bytes = 1024 * 1024;
	memset(&C, 0, sizeof C);
	memset(last_id, 0, sizeof last_id);
}

static void
teardown(void)
{
	scope_clear(&P);
	scope_clear(&F);
	cJSON_Delete(G.tags);
	G.tags = NULL;
}

/* Apply a `set` whose fields are the members of the JSON object text. */
static void
apply_set(struct scope *s, const char *json)
{
	struct msg	m;
	size_t		i;

	memset(&m, 0, sizeof m);
	m.op = MSG_SET;
	m.root = cJSON_Parse(json);
	ck_assert_ptr_nonnull(m.root);
	for (i = 0; i < MSG_F_COUNT; i++)
		m.field[i] = cJSON_GetObjectItemCaseSensitive(m.root,
		    set_names[i]);
	scope_set(s, &m);
	cJSON_Delete(m.root);
}

static void
add_crumb(struct scope *s, const char *json, uint64_t seq)
{
	cJSON	*c;

	c = cJSON_Parse(json);
	ck_assert_ptr_nonnull(c);
	scope_crumb(s, c, NOW, seq, 100);
	cJSON_Delete(c);
}

/*
 * Merge the event text over the given scopes; returns merge_event's
 * result and, on success, the output parsed into *res (else NULL).
 */
static int
try_merge(const struct scope *proc, const struct scope *fiber,
    const char *event_json, const char *event_id, cJSON **res)
{
	cJSON	*ev;
	char	*out = NULL;
	size_t	 outlen = 0;
	int	 r;

	ev = cJSON_Parse(event_json);
	ck_assert_ptr_nonnull(ev);
	r = merge_event(&G, proc, fiber, ev, event_id, NOW, &L, &C, &out,
	    &outlen, last_id);
	cJSON_Delete(ev);
	*res = NULL;
	if (r == 0) {
		ck_assert_ptr_nonnull(out);
		ck_assert_uint_eq(outlen, strlen(out));
		last_len = outlen;
		*res = cJSON_Parse(out);
		ck_assert_ptr_nonnull(*res);
		free(out);
	} else
		ck_assert_ptr_null(out);
	return r;
}

/* Merge over both scopes, which must succeed. */
static cJSON *
merge(const char *event_json)
{
	cJSON	*res;

	ck_assert_int_eq(try_merge(&P, &F, event_json, NULL, &res), 0);
	return res;
}

/* The string at res[field][key], or NULL. */
static const char *
get_str(const cJSON *res, const char *field, const char *key)
{
	const cJSON	*v;

	v = cJSON_GetObjectItemCaseSensitive(res, field);
	if (key != NULL)
		v = cJSON_GetObjectItemCaseSensitive(v, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 1 if res[field][key] (or res[field] when key is NULL) equals json. */
static int
equals(const cJSON *res, const char *field, const char *key,
    const char *json)
{
	const cJSON	*v;
	cJSON		*want;
	int		 eq;

	v = cJSON_GetObjectItemCaseSensitive(res, field);
	if (key != NULL)
		v = cJSON_GetObjectItemCaseSensitive(v, key);
	if (v == NULL)
		return 0;
	want = cJSON_Parse(json);
	ck_assert_ptr_nonnull(want);
	eq = cJSON_Compare(v, want, 1);
	cJSON_Delete(want);
	return eq;
}

/* The breadcrumb messages of res, space-separated, in order. */
static void
crumb_messages(const cJSON *res, char *buf, size_t size)
{
	const cJSON	*bc, *values, *c, *msg;
	size_t		 len;

	buf[0] = '\0';
	bc = cJSON_GetObjectItemCaseSensitive(res, "breadcrumbs");
	ck_assert(cJSON_IsObject(bc));
	values = cJSON_GetObjectItemCaseSensitive(bc, "values");
	ck_assert(cJSON_IsArray(values));
	cJSON_ArrayForEach(c, values) {
		msg = cJSON_GetObjectItemCaseSensitive(c, "message");
		ck_assert(cJSON_IsString(msg));
		len = strlen(buf);
		snprintf(buf + len, size - len, "%s%s", len ? " " : "",
		    msg->valuestring);
	}
}

static int
is_uuid4_hex(const char *s)
{
	size_t	i;

	if (s == NULL || strlen(s) != 32)
		return 0;
	for (i = 0; i < 32; i++)
		if (strchr("0123456789abcdef", s[i]) == NULL)
			return 0;
	return s[12] == '4' && strchr("89ab", s[16]) != NULL;
}

/* A string of n copies of unit. */
static char *
repeat(const char *unit, size_t n)
{
	size_t	 ulen = strlen(unit), i;
	char	*s;

	s = malloc(ulen * n + 1);
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < n; i++)
		memcpy(s + i * ulen, unit, ulen);
	s[ulen * n] = '\0';
	return s;
}

static char	*fmt(const char *, ...) __attribute__((format(printf, 1, 2)));

/* A new string formatted as by printf (test helper; the caller frees). */
static char *
fmt(const char *f, ...)
{
	va_list	 ap;
	char	*s;
	int	 n;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	s = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(s);
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

/* ---------------------------------------------------------------- maps */

START_TEST(test_tags_layer_precedence)
{
	cJSON	*res;

	G.tags = cJSON_Parse("{\"t1\":\"G\",\"t2\":\"G\",\"t3\":\"G\","
	    "\"t4\":\"G\"}");
	apply_set(&P, "{\"tags\":{\"t2\":\"P\",\"t3\":\"P\",\"t4\":\"P\","
	    "\"p\":\"P\"}}");
	apply_set(&F, "{\"tags\":{\"t3\":\"F\",\"t4\":\"F\",\"f\":\"F\"}}");
	res = merge("{\"tags\":{\"t4\":\"E\",\"e\":\"E\"}}");
	ck_assert_str_eq(get_str(res, "tags", "t1"), "G");
	ck_assert_str_eq(get_str(res, "tags", "t2"), "P");
	ck_assert_str_eq(get_str(res, "tags", "t3"), "F");
	ck_assert_str_eq(get_str(res, "tags", "t4"), "E");
	ck_assert_str_eq(get_str(res, "tags", "p"), "P");
	ck_assert_str_eq(get_str(res, "tags", "f"), "F");
	ck_assert_str_eq(get_str(res, "tags", "e"), "E");
	ck_assert_int_eq(cJSON_GetArraySize(
	    cJSON_GetObjectItemCaseSensitive(res, "tags")), 7);
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_maps_layer_precedence)
{
	static const char *const maps[] = { "extra", "user", "contexts" };
	char	 buf[512];
	cJSON	*res;
	size_t	 i;

	for (i = 0; i < 3; i++) {
		scope_clear(&P);
		scope_clear(&F);
		snprintf(buf, sizeof buf, "{\"%s\":{\"k2\":{\"l\":\"P\"},"
		    "\"k3\":{\"l\":\"P\"},\"k4\":{\"l\":\"P\"}}}", maps[i]);
		apply_set(&P, buf);
		snprintf(buf, sizeof buf, "{\"%s\":{\"k3\":{\"l\":\"F\"},"
		    "\"k4\":{\"l\":\"F\"}}}", maps[i]);
		apply_set(&F, buf);
		snprintf(buf, sizeof buf, "{\"%s\":{\"k4\":{\"l\":\"E\"},"
		    "\"k5\":{\"l\":\"E\"}}}", maps[i]);
		res = merge(buf);
		ck_assert(equals(res, maps[i], "k2", "{\"l\":\"P\"}"));
		ck_assert(equals(res, maps[i], "k3", "{\"l\":\"F\"}"));
		ck_assert(equals(res, maps[i], "k4", "{\"l\":\"E\"}"));
		ck_assert(equals(res, maps[i], "k5", "{\"l\":\"E\"}"));
		ck_assert_int_eq(cJSON_GetArraySize(
		    cJSON_GetObjectItemCaseSensitive(res, maps[i])), 4);
		cJSON_Delete(res);
	}
}
END_TEST

/*
 * A merge reads the scopes and leaves them as they were: merging twice
 * gives the same event, and the scopes' JSON views do not change.  Keys
 * keep their first layer's place: lower layers' keys first, a higher
 * layer's new keys after them.  Values stored by the scopes come out as
 * they went in.
 */
START_TEST(test_merge_leaves_scopes_alone)
{
	static const char	 id[] = "0123456789abcdef0123456789abcdef";
	cJSON			*pb, *fb, *pa, *fa, *r1, *r2, *tags, *t;
	const char		*order[] = { "g", "both", "p", "f", "e" };
	size_t			 i;

	G.tags = cJSON_Parse("{\"g\":\"G\",\"both\":\"G\"}");
	apply_set(&P, "{\"tags\":{\"p\":\"P\",\"both\":\"P\"},"
	    "\"extra\":{\"x\":{\"deep\":[1,2.5,\"\\u00e9\\n\"]},\"n\":0.1},"
	    "\"fingerprint\":[\"fp\"]}");
	apply_set(&F, "{\"tags\":{\"f\":\"F\",\"both\":\"F\"},"
	    "\"user\":{\"id\":\"u1\",\"ip_address\":\"10.0.0.1\"}}");
	add_crumb(&P, "{\"message\":\"p1\"}", 1);
	add_crumb(&F, "{\"message\":\"f2\"}", 2);
	pb = scope_to_json(&P);
	fb = scope_to_json(&F);

	ck_assert_int_eq(try_merge(&P, &F, "{\"tags\":{\"e\":\"E\"}}", id,
	    &r1), 0);
	ck_assert_int_eq(try_merge(&P, &F, "{\"tags\":{\"e\":\"E\"}}", id,
	    &r2), 0);
	ck_assert(cJSON_Compare(r1, r2, 1));

	pa = scope_to_json(&P);
	fa = scope_to_json(&F);
	ck_assert(cJSON_Compare(pa, pb, 1));
	ck_assert(cJSON_Compare(fa, fb, 1));

	tags = cJSON_GetObjectItemCaseSensitive(r1, "tags");
	ck_assert_int_eq(cJSON_GetArraySize(tags), 5);
	for (i = 0, t = tags->child; i < 5; i++, t = t->next)
		ck_assert_str_eq(t->string, order[i]);
	ck_assert_str_eq(get_str(r1, "tags", "both"), "F");
	ck_assert(equals(r1, "extra", "x",
	    "{\"deep\":[1,2.5,\"\\u00e9\\n\"]}"));
	ck_assert(equals(r1, "extra", "n", "0.1"));
	ck_assert_str_eq(get_str(r1, "user", "ip_address"), "10.0.0.1");
	ck_assert(equals(r1, "fingerprint", NULL, "[\"fp\"]"));

	cJSON_Delete(pb);
	cJSON_Delete(fb);
	cJSON_Delete(pa);
	cJSON_Delete(fa);
	cJSON_Delete(r1);
	cJSON_Delete(r2);
}
END_TEST

START_TEST(test_null_removes_in_one_layer_only)
{
	cJSON	*res;

	G.tags = cJSON_Parse("{\"g\":\"G\"}");
	apply_set(&P, "{\"tags\":{\"a\":\"P\",\"g\":\"P\"},"
	    "\"extra\":{\"x\":1},\"user\":{\"id\":\"P\"},"
	    "\"contexts\":{\"os\":{\"name\":\"P\"}}}");
	apply_set(&F, "{\"tags\":{\"a\":\"F\",\"g\":\"F\"},"
	    "\"extra\":{\"x\":2},\"user\":{\"id\":\"F\"},"
	    "\"contexts\":{\"os\":{\"name\":\"F\"}}}");
	apply_set(&F, "{\"tags\":{\"a\":null},\"extra\":{\"x\":null},"
	    "\"user\":{\"id\":null},\"contexts\":{\"os\":null}}");
	apply_set(&P, "{\"tags\":{\"g\":null}}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "tags", "a"), "P");
	/* g removed from the process scope only: the fiber's still wins. */
	ck_assert_str_eq(get_str(res, "tags", "g"), "F");
	ck_assert(equals(res, "extra", "x", "1"));
	ck_assert_str_eq(get_str(res, "user", "id"), "P");
	ck_assert(equals(res, "contexts", "os", "{\"name\":\"P\"}"));
	cJSON_Delete(res);

	/* Removed from both scopes, the global value shows through. */
	apply_set(&F, "{\"tags\":{\"g\":null}}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "tags", "g"), "G");
	cJSON_Delete(res);

	/* A whole field cleared in the fiber: the process's shows. */
	apply_set(&F, "{\"tags\":{\"z\":\"F\"}}");
	apply_set(&F, "{\"tags\":null}");
	res = merge("{}");
	ck_assert_ptr_null(get_str(res, "tags", "z"));
	ck_assert_str_eq(get_str(res, "tags", "a"), "P");
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_contexts_whole_replace)
{
	cJSON	*res;

	apply_set(&P, "{\"contexts\":{\"os\":{\"name\":\"linux\","
	    "\"version\":\"6.1\"},\"app\":{\"build\":7}}}");
	apply_set(&F, "{\"contexts\":{\"os\":{\"name\":\"freebsd\"}}}");
	res = merge("{\"contexts\":{\"runtime\":{\"name\":\"ruby\"}}}");
	ck_assert(equals(res, "contexts", "os", "{\"name\":\"freebsd\"}"));
	ck_assert(equals(res, "contexts", "app", "{\"build\":7}"));
	ck_assert(equals(res, "contexts", "runtime", "{\"name\":\"ruby\"}"));
	cJSON_Delete(res);

	/* The event's context of the same name replaces the scopes' whole. */
	res = merge("{\"contexts\":{\"os\":{\"kernel\":\"k\"}}}");
	ck_assert(equals(res, "contexts", NULL,
	    "{\"os\":{\"kernel\":\"k\"},\"app\":{\"build\":7}}"));
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_event_tags_text_and_null)
{
	cJSON	*res;

	apply_set(&P, "{\"tags\":{\"lower\":\"P\",\"n\":\"P\"}}");
	res = merge("{\"tags\":{\"n\":42,\"b\":false,\"t\":true,\"f\":2.5,"
	    "\"lower\":null,\"gone\":null}}");
	ck_assert_str_eq(get_str(res, "tags", "n"), "42");
	ck_assert_str_eq(get_str(res, "tags", "b"), "false");
	ck_assert_str_eq(get_str(res, "tags", "t"), "true");
	ck_assert_str_eq(get_str(res, "tags", "f"), "2.5");
	/* A null in the event sets nothing: the lower layer shows. */
	ck_assert_str_eq(get_str(res, "tags", "lower"), "P");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(res, "tags"), "gone"));
	cJSON_Delete(res);

	/* Sentry's other tags form: a list of [key, value] pairs. */
	res = merge("{\"tags\":[[\"n\",\"E\"],[\"k\",7]]}");
	ck_assert(equals(res, "tags", NULL,
	    "{\"lower\":\"P\",\"n\":\"E\",\"k\":\"7\"}"));
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_event_null_sets_nothing)
{
	cJSON	*res;

	apply_set(&P, "{\"extra\":{\"x\":1},\"user\":{\"id\":\"P\"},"
	    "\"contexts\":{\"os\":{\"name\":\"P\"}}}");
	res = merge("{\"extra\":{\"x\":null,\"y\":null},"
	    "\"user\":{\"id\":null},\"contexts\":{\"os\":null}}");
	ck_assert(equals(res, "extra", NULL, "{\"x\":1}"));
	ck_assert(equals(res, "user", NULL, "{\"id\":\"P\"}"));
	ck_assert(equals(res, "contexts", NULL, "{\"os\":{\"name\":\"P\"}}"));
	cJSON_Delete(res);

	/* A whole map that is null: the lower layer shows through... */
	res = merge("{\"user\":null}");
	ck_assert(equals(res, "user", NULL, "{\"id\":\"P\"}"));
	cJSON_Delete(res);
}
END_TEST

/* ...and with no layer holding it, the event carries no member at all. */
START_TEST(test_event_null_map_alone)
{
	cJSON	*res;

	res = merge("{\"user\":null,\"extra\":null,\"message\":\"m\"}");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res, "user"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res, "extra"));
	cJSON_Delete(res);
	/* an explicit empty map is the event's own and is kept */
	res = merge("{\"user\":{}}");
	ck_assert(equals(res, "user", NULL, "{}"));
	cJSON_Delete(res);
}
END_TEST

/* ------------------------------------------------------- single values */

START_TEST(test_level)
{
	cJSON	*res;

	res = merge("{}");
	ck_assert_str_eq(get_str(res, "level", NULL), "error");
	cJSON_Delete(res);

	apply_set(&P, "{\"level\":\"warning\"}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "level", NULL), "warning");
	cJSON_Delete(res);

	apply_set(&F, "{\"level\":\"info\"}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "level", NULL), "info");
	cJSON_Delete(res);

	res = merge("{\"level\":\"fatal\"}");
	ck_assert_str_eq(get_str(res, "level", NULL), "fatal");
	cJSON_Delete(res);

	/* Without a fiber scope, the process's. */
	ck_assert_int_eq(try_merge(&P, NULL, "{}", NULL, &res), 0);
	ck_assert_str_eq(get_str(res, "level", NULL), "warning");
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_transaction_fingerprint)
{
	cJSON	*res;

	res = merge("{}");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res,
	    "transaction"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res,
	    "fingerprint"));
	cJSON_Delete(res);

	apply_set(&P, "{\"transaction\":\"P\",\"fingerprint\":[\"P\"]}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "transaction", NULL), "P");
	ck_assert(equals(res, "fingerprint", NULL, "[\"P\"]"));
	cJSON_Delete(res);

	apply_set(&F, "{\"transaction\":\"F\",\"fingerprint\":[\"F\",\"x\"]}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "transaction", NULL), "F");
	ck_assert(equals(res, "fingerprint", NULL, "[\"F\",\"x\"]"));
	cJSON_Delete(res);

	res = merge("{\"transaction\":\"E\",\"fingerprint\":[\"E\"]}");
	ck_assert_str_eq(get_str(res, "transaction", NULL), "E");
	ck_assert(equals(res, "fingerprint", NULL, "[\"E\"]"));
	cJSON_Delete(res);

	/* Cleared in the fiber: the process's is the nearest. */
	apply_set(&F, "{\"transaction\":null,\"fingerprint\":null}");
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "transaction", NULL), "P");
	ck_assert(equals(res, "fingerprint", NULL, "[\"P\"]"));
	cJSON_Delete(res);
}
END_TEST

/* --------------------------------------------------------- breadcrumbs */

/*
 * Scope crumbs received as p1 f2 p3 f4 p5 (sequence numbers), with
 * timestamps deliberately in the opposite order.
 */
static void
five_crumbs(void)
{
	add_crumb(&P, "{\"message\":\"p1\",\"timestamp\":500}", 1);
	add_crumb(&F, "{\"message\":\"f2\",\"timestamp\":400}", 2);
	add_crumb(&P, "{\"message\":\"p3\",\"timestamp\":300}", 3);
	add_crumb(&F, "{\"message\":\"f4\",\"timestamp\":200}", 4);
	add_crumb(&P, "{\"message\":\"p5\",\"timestamp\":100}", 5);
}

START_TEST(test_crumbs_interleave_then_event)
{
	char	 buf[256];
	cJSON	*res;

	five_crumbs();
	res = merge("{\"breadcrumbs\":[{\"message\":\"e1\",\"timestamp\":50},"
	    "{\"message\":\"e2\",\"timestamp\":1000}]}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "p1 f2 p3 f4 p5 e1 e2");
	/* A scope crumb comes out as it went in. */
	ck_assert(equals(res, "breadcrumbs", "values",
	    "[{\"message\":\"p1\",\"timestamp\":500},"
	    "{\"message\":\"f2\",\"timestamp\":400},"
	    "{\"message\":\"p3\",\"timestamp\":300},"
	    "{\"message\":\"f4\",\"timestamp\":200},"
	    "{\"message\":\"p5\",\"timestamp\":100},"
	    "{\"message\":\"e1\",\"timestamp\":50},"
	    "{\"message\":\"e2\",\"timestamp\":1000}]"));
	cJSON_Delete(res);

	/* Scope crumbs alone. */
	res = merge("{}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "p1 f2 p3 f4 p5");
	cJSON_Delete(res);

	/* Only the process's when there is no fiber scope. */
	ck_assert_int_eq(try_merge(&P, NULL, "{}", NULL, &res), 0);
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "p1 p3 p5");
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_crumbs_list_or_values)
{
	char	 buf[256];
	cJSON	*res;

	res = merge("{\"breadcrumbs\":[{\"message\":\"a\"},"
	    "{\"message\":\"b\"}]}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "a b");
	ck_assert(equals(res, "breadcrumbs", NULL,
	    "{\"values\":[{\"message\":\"a\"},{\"message\":\"b\"}]}"));
	cJSON_Delete(res);

	res = merge("{\"breadcrumbs\":{\"values\":[{\"message\":\"a\"},"
	    "{\"message\":\"b\"}]}}");
	ck_assert(equals(res, "breadcrumbs", NULL,
	    "{\"values\":[{\"message\":\"a\"},{\"message\":\"b\"}]}"));
	cJSON_Delete(res);

	/* With scope crumbs too, both forms come after them. */
	add_crumb(&F, "{\"message\":\"s\"}", 1);
	res = merge("{\"breadcrumbs\":{\"values\":[{\"message\":\"a\"}]}}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "s a");
	cJSON_Delete(res);
	res = merge("{\"breadcrumbs\":[{\"message\":\"a\"}]}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "s a");
	cJSON_Delete(res);

	/* An empty list stays an (empty) values list. */
	scope_clear(&F);
	res = merge("{\"breadcrumbs\":[]}");
	ck_assert(equals(res, "breadcrumbs", NULL, "{\"values\":[]}"));
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_crumbs_newest_kept)
{
	char		 buf[256];
	cJSON		*res;
	const char	*ev = "{\"breadcrumbs\":[{\"message\":\"e1\"},"
	    "{\"message\":\"e2\"}]}";

	five_crumbs();
	L.max_breadcrumbs = 3;
	res = merge(ev);
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "p5 e1 e2");
	cJSON_Delete(res);

	L.max_breadcrumbs = 6;
	res = merge(ev);
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "f2 p3 f4 p5 e1 e2");
	cJSON_Delete(res);

	L.max_breadcrumbs = 1;
	res = merge(ev);
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "e2");
	cJSON_Delete(res);

	L.max_breadcrumbs = 4;
	res = merge("{}");
	crumb_messages(res, buf, sizeof buf);
	ck_assert_str_eq(buf, "f2 p3 f4 p5");
	cJSON_Delete(res);
}
END_TEST

/* ------------------------------------------------------------ fill-ins */

START_TEST(test_fill_ins)
{
	const cJSON	*ts;
	cJSON		*res;

	res = merge("{}");
	ck_assert(is_uuid4_hex(get_str(res, "event_id", NULL)));
	ck_assert_str_eq(get_str(res, "event_id", NULL), last_id);
	ts = cJSON_GetObjectItemCaseSensitive(res, "timestamp");
	ck_assert(cJSON_IsNumber(ts));
	ck_assert(fabs(ts->valuedouble - NOW) < 1e-6);
	ck_assert_str_eq(get_str(res, "platform", NULL), "other");
	ck_assert_str_eq(get_str(res, "server_name", NULL), "host-a");
	ck_assert_str_eq(get_str(res, "environment", NULL), "prod");
	ck_assert_str_eq(get_str(res, "release", NULL), "1.2.3");
	ck_assert_str_eq(get_str(res, "level", NULL), "error");
	cJSON_Delete(res);

	/* Present values are kept. */
	res = merge("{\"timestamp\":\"2024-05-06T07:08:09Z\","
	    "\"platform\":\"ruby\",\"server_name\":\"web1\","
	    "\"environment\":\"staging\",\"release\":\"r9\"}");
	ck_assert_str_eq(get_str(res, "timestamp", NULL),
	    "2024-05-06T07:08:09Z");
	ck_assert_str_eq(get_str(res, "platform", NULL), "ruby");
	ck_assert_str_eq(get_str(res, "server_name", NULL), "web1");
	ck_assert_str_eq(get_str(res, "environment", NULL), "staging");
	ck_assert_str_eq(get_str(res, "release", NULL), "r9");
	cJSON_Delete(res);

	/* No environment or release in the global layer: none added. */
	G.environment = NULL;
	G.release = NULL;
	res = merge("{}");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res,
	    "environment"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(res, "release"));
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_event_id_kept_normalised)
{
	const char	*norm = "abcdef0123456789abcdef0123456789";
	cJSON		*res;

	ck_assert_int_eq(try_merge(&P, &F,
	    "{\"event_id\":\"ABCDEF01-2345-6789-ABCD-EF0123456789\"}", norm,
	    &res), 0);
	ck_assert_str_eq(get_str(res, "event_id", NULL), norm);
	ck_assert_str_eq(last_id, norm);
	cJSON_Delete(res);

	/* Not a uuid4 at all: an id given is never replaced. */
	ck_assert_int_eq(try_merge(&P, &F,
	    "{\"event_id\":\"00000000000000000000000000000000\"}",
	    "00000000000000000000000000000000", &res), 0);
	ck_assert_str_eq(get_str(res, "event_id", NULL),
	    "00000000000000000000000000000000");
	cJSON_Delete(res);

	/* Generated ids differ. */
	res = merge("{}");
	ck_assert_str_ne(get_str(res, "event_id", NULL), norm);
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_uuid4)
{
	char	ids[300][33];
	int	i, j;

	for (i = 0; i < 300; i++) {
		merge_uuid4(ids[i]);
		ck_assert(is_uuid4_hex(ids[i]));
		for (j = 0; j < i; j++)
			ck_assert_str_ne(ids[i], ids[j]);
	}
}
END_TEST

START_TEST(test_pass_through)
{
	const char	*fields[] = { "exception", "message", "custom",
	    "request", "sdk", "modules", "logentry" };
	const char	*ev = "{\"exception\":{\"values\":[{\"type\":\"E\","
	    "\"value\":\"boom\",\"stacktrace\":{\"frames\":"
	    "[{\"lineno\":3}]}}]},\"message\":\"hello world\","
	    "\"custom\":[1,\"a\",null,{\"z\":false},1.25],"
	    "\"request\":{\"url\":\"http://x/\",\"headers\":{\"A\":\"b\"}},"
	    "\"sdk\":{\"name\":\"errrelay.ruby\",\"version\":\"0.1\"},"
	    "\"modules\":{},\"logentry\":{\"formatted\":\"x\\ny\"}}";
	cJSON		*res, *orig;
	size_t		 i;

	apply_set(&P, "{\"tags\":{\"a\":\"b\"}}");
	res = merge(ev);
	orig = cJSON_Parse(ev);
	for (i = 0; i < sizeof fields / sizeof fields[0]; i++)
		ck_assert_msg(cJSON_Compare(
		    cJSON_GetObjectItemCaseSensitive(res, fields[i]),
		    cJSON_GetObjectItemCaseSensitive(orig, fields[i]), 1),
		    "field %s changed", fields[i]);
	cJSON_Delete(orig);
	cJSON_Delete(res);
}
END_TEST

/* ------------------------------------------------------------ sanitise */

START_TEST(test_tag_cut_code_points)
{
	char	*e250, *e200, *mixed, *want, *ev;
	cJSON	*res;

	e250 = repeat("\xc3\xa9", 250);		/* é: 2 bytes */
	e200 = repeat("\xc3\xa9", 200);
	/* 199 ASCII then three 3-byte euro signs: 202 code points. */
	mixed = malloc(199 + 9 + 1);
	ck_assert_ptr_nonnull(mixed);
	memset(mixed, 'a', 199);
	strcpy(mixed + 199, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
	want = malloc(199 + 3 + 1);
	ck_assert_ptr_nonnull(want);
	memset(want, 'a', 199);
	strcpy(want + 199, "\xe2\x82\xac");

	ev = fmt("{\"tags\":{\"long\":\"%s\","
	    "\"exact\":\"%s\",\"mixed\":\"%s\"}}", e250, e200, mixed);
	res = merge(ev);
	ck_assert_str_eq(get_str(res, "tags", "long"), e200);
	ck_assert_uint_eq(strlen(get_str(res, "tags", "long")), 400);
	/* 200 code points in 400 bytes is not too long. */
	ck_assert_str_eq(get_str(res, "tags", "exact"), e200);
	ck_assert_str_eq(get_str(res, "tags", "mixed"), want);
	ck_assert_uint_eq(C.tag_values_cut, 2);
	cJSON_Delete(res);
	free(ev);

	/* Scope tags are sanitised too. */
	ev = fmt("{\"tags\":{\"s\":\"%s\"}}", e250);
	apply_set(&F, ev);
	free(ev);
	res = merge("{}");
	ck_assert_str_eq(get_str(res, "tags", "s"), e200);
	ck_assert_uint_eq(C.tag_values_cut, 3);
	cJSON_Delete(res);

	free(e250);
	free(e200);
	free(mixed);
	free(want);
}
END_TEST

START_TEST(test_tag_newline)
{
	cJSON	*res;

	apply_set(&P, "{\"tags\":{\"p\":\"x\\ny\"}}");
	res = merge("{\"tags\":{\"e\":\"a\\nb\\rc\",\"ok\":\"plain\"}}");
	ck_assert_str_eq(get_str(res, "tags", "e"), "a b c");
	ck_assert_str_eq(get_str(res, "tags", "p"), "x y");
	ck_assert_str_eq(get_str(res, "tags", "ok"), "plain");
	ck_assert_uint_eq(C.tag_newlines, 2);
	ck_assert_uint_eq(C.tag_values_cut, 0);
	ck_assert_uint_eq(C.tag_keys_dropped, 0);
	cJSON_Delete(res);
}
END_TEST

START_TEST(test_tag_long_key)
{
	char	*k201, *k200, *ke200, *ev;
	cJSON	*res, *tags;

	k201 = repeat("k", 201);
	k200 = repeat("k", 200);
	ke200 = repeat("\xc3\xa9", 200);
	ev = fmt("{\"tags\":{\"%s\":\"v1\","
	    "\"%s\":\"v2\",\"%s\":\"v3\",\"short\":\"v4\"}}", k201, k200,
	    ke200);
	res = merge(ev);
	tags = cJSON_GetObjectItemCaseSensitive(res, "tags");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(tags, k201));
	ck_assert_str_eq(get_str(res, "tags", k200), "v2");
	ck_assert_str_eq(get_str(res, "tags", ke200), "v3");
	ck_assert_str_eq(get_str(res, "tags", "short"), "v4");
	ck_assert_int_eq(cJSON_GetArraySize(tags), 3);
	ck_assert_uint_eq(C.tag_keys_dropped, 1);
	cJSON_Delete(res);
	free(ev);
	free(k201);
	free(k200);
	free(ke200);
}
END_TEST

START_TEST(test_too_large)
{
	const char	*ev = "{\"event_id\":"
	    "\"0123456789abcdef0123456789abcdef\","
	    "\"timestamp\":5,\"message\":\"hello\"}";
	const char	*id = "0123456789abcdef0123456789abcdef";
	cJSON		*res;
	size_t		 len;

	apply_set(&P, "{\"tags\":{\"a\":\"b\"}}");
	ck_assert_int_eq(try_merge(&P, &F, ev, id, &res), 0);
	cJSON_Delete(res);
	len = last_len;

	/* Exactly at the limit is fine; one byte over is rejected. */
	L.max_event_bytes = len;
	ck_assert_int_eq(try_merge(&P, &F, ev, id, &res), 0);
	ck_assert_uint_eq(last_len, len);
	cJSON_Delete(res);
	ck_assert_uint_eq(C.too_large, 0);

	L.max_event_bytes = len - 1;
	ck_assert_int_eq(try_merge(&P, &F, ev, id, &res), -1);
	ck_assert_ptr_null(res);
	ck_assert_uint_eq(C.too_large, 1);
	ck_assert_int_eq(try_merge(&P, &F, ev, id, &res), -1);
	ck_assert_uint_eq(C.too_large, 2);
}
END_TEST

START_TEST(test_compact_and_no_scopes)
{
	cJSON	*ev;
	char	*out = NULL;
	size_t	 outlen;

	G.tags = cJSON_Parse("{\"region\":\"eu\"}");
	ev = cJSON_Parse("{ \"message\" : \"x\" ,\n"
	    " \"extra\" : { \"k\" : 1 } }");
	ck_assert_int_eq(merge_event(&G, NULL, NULL, ev, NULL, NOW, &L, &C,
	    &out, &outlen, last_id), 0);
	cJSON_Delete(ev);
	ck_assert_ptr_null(strchr(out, ' '));
	ck_assert_ptr_null(strchr(out, '\n'));
	ck_assert_ptr_nonnull(strstr(out, "\"tags\":{\"region\":\"eu\"}"));
	ck_assert_ptr_nonnull(strstr(out, "\"extra\":{\"k\":1}"));
	ck_assert_ptr_nonnull(strstr(out, "\"level\":\"error\""));
	ck_assert_ptr_null(strstr(out, "breadcrumbs"));
	free(out);
}
END_TEST

static Suite *
merge_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("merge");
	tc = tcase_create("maps");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_tags_layer_precedence);
	tcase_add_test(tc, test_maps_layer_precedence);
	tcase_add_test(tc, test_merge_leaves_scopes_alone);
	tcase_add_test(tc, test_null_removes_in_one_layer_only);
	tcase_add_test(tc, test_contexts_whole_replace);
	tcase_add_test(tc, test_event_tags_text_and_null);
	tcase_add_test(tc, test_event_null_sets_nothing);
	tcase_add_test(tc, test_event_null_map_alone);
	suite_add_tcase(s, tc);

	tc = tcase_create("single");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_level);
	tcase_add_test(tc, test_transaction_fingerprint);
	suite_add_tcase(s, tc);

	tc = tcase_create("breadcrumbs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_crumbs_interleave_then_event);
	tcase_add_test(tc, test_crumbs_list_or_values);
	tcase_add_test(tc, test_crumbs_newest_kept);
	suite_add_tcase(s, tc);

	tc = tcase_create("fill");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_fill_ins);
	tcase_add_test(tc, test_event_id_kept_normalised);
	tcase_add_test(tc, test_uuid4);
	tcase_add_test(tc, test_pass_through);
	tcase_add_test(tc, test_compact_and_no_scopes);
	suite_add_tcase(s, tc);

	tc = tcase_create("sanitise");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_tag_cut_code_points);
	tcase_add_test(tc, test_tag_newline);
	tcase_add_test(tc, test_tag_long_key);
	tcase_add_test(tc, test_too_large);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(merge_suite());
}
