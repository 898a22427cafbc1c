/*
 * check_scope.c -- unit tests of daemon/scope.c: the `set` rules of SPEC
 * §3 and §11 (null key removes, null field clears, contexts replaced per
 * name, numbers and booleans stored as text), breadcrumbs (cap, order,
 * timestamp filled at receipt), deep copies and the JSON view, and the
 * compact storage (maps kept as JSON text read back exactly as set, a set
 * rewriting only the maps it names, crumbs in one buffer).
 *
 * Messages are built by hand (msg_parse lives elsewhere): the JSON is
 * parsed with cJSON and the struct msg fields are pointed into it.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "daemon/scope.h"
#include "proto/msg.h"
#include "tests/check_run.h"

static const char *const set_names[MSG_F_COUNT] = {
	"tags", "extra", "contexts", "user", "level", "transaction",
	"fingerprint"
};

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

/* Add a crumb given as JSON text. */
static int
add_crumb(struct scope *s, const char *json, double now, uint64_t seq,
    size_t max)
{
	cJSON	*c;
	int	 r;

	c = cJSON_Parse(json);
	ck_assert_ptr_nonnull(c);
	r = scope_crumb(s, c, now, seq, max);
	cJSON_Delete(c);
	return r;
}

/*
 * The string value of map[key], or NULL.  The map is parsed afresh each
 * time; the returned string stays valid until the next call.
 */
static const char *
map_str(const struct scope *s, enum scope_map i, const char *key)
{
	static char	 buf[256];
	const cJSON	*v;
	cJSON		*map;
	const char	*r = NULL;

	if ((map = scope_map_json(s, i)) == NULL)
		return NULL;
	ck_assert(cJSON_IsObject(map));
	v = cJSON_GetObjectItemCaseSensitive(map, key);
	if (cJSON_IsString(v)) {
		ck_assert_uint_lt(strlen(v->valuestring), sizeof buf);
		memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
		r = buf;
	}
	cJSON_Delete(map);
	return r;
}

/* The number of keys of map i (0 when it is not set). */
static int
map_size(const struct scope *s, enum scope_map i)
{
	cJSON	*map;
	int	 n;

	if ((map = scope_map_json(s, i)) == NULL)
		return 0;
	n = cJSON_GetArraySize(map);
	cJSON_Delete(map);
	return n;
}

/* 1 if map[key] exists. */
static int
map_has(const struct scope *s, enum scope_map i, const char *key)
{
	cJSON	*map;
	int	 has;

	if ((map = scope_map_json(s, i)) == NULL)
		return 0;
	has = cJSON_GetObjectItemCaseSensitive(map, key) != NULL;
	cJSON_Delete(map);
	return has;
}

/* 1 if map[key] equals the JSON text. */
static int
map_equals(const struct scope *s, enum scope_map i, const char *key,
    const char *json)
{
	const cJSON	*v;
	cJSON		*map, *want;
	int		 eq;

	if ((map = scope_map_json(s, i)) == NULL)
		return 0;
	if ((v = cJSON_GetObjectItemCaseSensitive(map, key)) == NULL) {
		cJSON_Delete(map);
		return 0;
	}
	want = cJSON_Parse(json);
	ck_assert_ptr_nonnull(want);
	eq = cJSON_Compare(v, want, 1);
	cJSON_Delete(want);
	cJSON_Delete(map);
	return eq;
}

/* Crumb n (0: the oldest) of s; fails the test if there is none. */
static struct scope_crumb
crumb_at(const struct scope *s, size_t n)
{
	struct scope_crumb	c;
	size_t			pos = 0, i;

	for (i = 0; i <= n; i++)
		ck_assert_int_eq(scope_crumb_next(s, &pos, &c), 1);
	return c;
}

/* The number of crumbs a walk of s sees. */
static size_t
crumb_count(const struct scope *s)
{
	struct scope_crumb	c;
	size_t			pos = 0, n = 0;

	while (scope_crumb_next(s, &pos, &c))
		n++;
	return n;
}

START_TEST(test_set_tags_text)
{
	struct scope	s;

	scope_init(&s);
	apply_set(&s, "{\"tags\":{\"a\":\"x\",\"n\":42,\"b\":true,"
	    "\"f\":1.5,\"z\":false,\"neg\":-7}}");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "a"), "x");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "n"), "42");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "b"), "true");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "f"), "1.5");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "z"), "false");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "neg"), "-7");
	ck_assert_int_eq(map_size(&s, SCOPE_TAGS), 6);
	scope_clear(&s);
}
END_TEST

START_TEST(test_set_merges_keys)
{
	struct scope	s;

	scope_init(&s);
	apply_set(&s, "{\"tags\":{\"a\":\"1\",\"b\":\"2\"}}");
	apply_set(&s, "{\"tags\":{\"b\":\"3\",\"c\":\"4\"}}");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "a"), "1");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "b"), "3");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "c"), "4");
	ck_assert_int_eq(map_size(&s, SCOPE_TAGS), 3);
	/* Keys are case-sensitive. */
	apply_set(&s, "{\"tags\":{\"A\":\"5\"}}");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "a"), "1");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "A"), "5");
	scope_clear(&s);
}
END_TEST

START_TEST(test_set_null_key_removes)
{
	struct scope	s;

	scope_init(&s);
	apply_set(&s, "{\"tags\":{\"a\":\"1\",\"b\":\"2\"},"
	    "\"extra\":{\"x\":{\"deep\":1},\"y\":2},\"user\":{\"id\":\"u1\","
	    "\"email\":\"e@x\"}}");
	apply_set(&s, "{\"tags\":{\"a\":null},\"extra\":{\"x\":null},"
	    "\"user\":{\"email\":null}}");
	ck_assert_ptr_null(map_str(&s, SCOPE_TAGS, "a"));
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "b"), "2");
	ck_assert_int_eq(map_has(&s, SCOPE_EXTRA, "x"), 0);
	ck_assert(map_equals(&s, SCOPE_EXTRA, "y", "2"));
	ck_assert_str_eq(map_str(&s, SCOPE_USER, "id"), "u1");
	ck_assert_ptr_null(map_str(&s, SCOPE_USER, "email"));
	/* Removing a key nobody set is harmless. */
	apply_set(&s, "{\"tags\":{\"never\":null},\"contexts\":{\"os\":null}}");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "b"), "2");
	ck_assert_ptr_null(s.map[SCOPE_CONTEXTS]);
	/* Removing the last key leaves nothing set. */
	apply_set(&s, "{\"tags\":{\"b\":null},\"extra\":{\"y\":null},"
	    "\"user\":{\"id\":null}}");
	ck_assert_int_eq(scope_empty(&s), 1);
	scope_clear(&s);
}
END_TEST

START_TEST(test_set_null_field_clears)
{
	struct scope	s;

	scope_init(&s);
	apply_set(&s, "{\"tags\":{\"a\":\"1\"},\"extra\":{\"e\":1},"
	    "\"contexts\":{\"os\":{\"name\":\"linux\"}},\"user\":{\"id\":1},"
	    "\"level\":\"warning\",\"transaction\":\"/x\","
	    "\"fingerprint\":[\"a\",\"b\"]}");
	ck_assert_int_eq(scope_empty(&s), 0);
	apply_set(&s, "{\"tags\":null,\"level\":null,\"fingerprint\":null}");
	ck_assert_ptr_null(s.map[SCOPE_TAGS]);
	ck_assert_ptr_null(s.level);
	ck_assert_ptr_null(s.fingerprint);
	ck_assert_ptr_null(scope_fingerprint_json(&s));
	/* The fields not named are untouched. */
	ck_assert(map_equals(&s, SCOPE_EXTRA, "e", "1"));
	ck_assert(map_equals(&s, SCOPE_CONTEXTS, "os", "{\"name\":\"linux\"}"));
	ck_assert(map_equals(&s, SCOPE_USER, "id", "1"));
	ck_assert_str_eq(s.transaction, "/x");
	apply_set(&s, "{\"extra\":null,\"contexts\":null,\"user\":null,"
	    "\"transaction\":null}");
	ck_assert_int_eq(scope_empty(&s), 1);
	scope_clear(&s);
}
END_TEST

START_TEST(test_set_contexts_replace_per_name)
{
	struct scope	s;

	scope_init(&s);
	apply_set(&s, "{\"contexts\":{\"os\":{\"name\":\"linux\","
	    "\"version\":\"6.1\"},\"app\":{\"build\":7}}}");
	apply_set(&s, "{\"contexts\":{\"os\":{\"name\":\"freebsd\"}}}");
	/* os replaced whole: its old "version" is gone. */
	ck_assert(map_equals(&s, SCOPE_CONTEXTS, "os",
	    "{\"name\":\"freebsd\"}"));
	ck_assert(map_equals(&s, SCOPE_CONTEXTS, "app", "{\"build\":7}"));
	/* extra values are replaced whole too, never merged inside. */
	apply_set(&s, "{\"extra\":{\"x\":{\"a\":1,\"b\":2}}}");
	apply_set(&s, "{\"extra\":{\"x\":{\"c\":3}}}");
	ck_assert(map_equals(&s, SCOPE_EXTRA, "x", "{\"c\":3}"));
	scope_clear(&s);
}
END_TEST

START_TEST(test_set_single_values)
{
	struct scope	s;
	cJSON		*want, *fp;

	scope_init(&s);
	apply_set(&s, "{\"level\":\"info\",\"transaction\":\"GET /a\","
	    "\"fingerprint\":[\"{{ default }}\",\"x\"]}");
	ck_assert_str_eq(s.level, "info");
	ck_assert_str_eq(s.transaction, "GET /a");
	want = cJSON_Parse("[\"{{ default }}\",\"x\"]");
	fp = scope_fingerprint_json(&s);
	ck_assert(cJSON_Compare(fp, want, 1));
	cJSON_Delete(fp);
	cJSON_Delete(want);
	apply_set(&s, "{\"level\":\"fatal\",\"fingerprint\":[\"y\"]}");
	ck_assert_str_eq(s.level, "fatal");
	ck_assert_str_eq(s.transaction, "GET /a");
	fp = scope_fingerprint_json(&s);
	ck_assert_int_eq(cJSON_GetArraySize(fp), 1);
	ck_assert_str_eq(cJSON_GetArrayItem(fp, 0)->valuestring, "y");
	cJSON_Delete(fp);
	scope_clear(&s);
	ck_assert_int_eq(scope_empty(&s), 1);
	/* A cleared scope can be used again. */
	apply_set(&s, "{\"level\":\"debug\"}");
	ck_assert_str_eq(s.level, "debug");
	scope_clear(&s);
}
END_TEST

START_TEST(test_crumbs_cap_and_order)
{
	struct scope	 s;
	char		 buf[64];
	cJSON		*c;
	int		 i, r;

	scope_init(&s);
	for (i = 1; i <= 5; i++) {
		snprintf(buf, sizeof buf, "{\"message\":\"m%d\"}", i);
		r = add_crumb(&s, buf, 100.0 + i, (uint64_t)(i * 10), 3);
		/* The 4th and 5th each push out the oldest. */
		ck_assert_int_eq(r, i > 3);
		ck_assert_uint_le(s.ncrumbs, 3);
		ck_assert_uint_eq(crumb_count(&s), s.ncrumbs);
	}
	ck_assert_uint_eq(s.ncrumbs, 3);
	for (i = 0; i < 3; i++) {
		ck_assert_uint_eq(crumb_at(&s, (size_t)i).seq,
		    (uint64_t)((i + 3) * 10));
		c = cJSON_Parse(crumb_at(&s, (size_t)i).json);
		ck_assert_ptr_nonnull(c);
		snprintf(buf, sizeof buf, "m%d", i + 3);
		ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(c,
		    "message")->valuestring, buf);
		cJSON_Delete(c);
	}
	/* A smaller cap keeps only the newest. */
	r = add_crumb(&s, "{\"message\":\"m6\"}", 200, 60, 2);
	ck_assert_int_eq(r, 1);
	ck_assert_uint_eq(s.ncrumbs, 2);
	ck_assert_uint_eq(crumb_count(&s), 2);
	ck_assert_uint_eq(crumb_at(&s, 0).seq, 50);
	ck_assert_uint_eq(crumb_at(&s, 1).seq, 60);
	ck_assert_ptr_nonnull(strstr(crumb_at(&s, 0).json, "\"m5\""));
	ck_assert_ptr_nonnull(strstr(crumb_at(&s, 1).json, "\"m6\""));
	/* A cap of 0 keeps none. */
	r = add_crumb(&s, "{\"message\":\"m7\"}", 201, 70, 0);
	ck_assert_int_eq(r, 1);
	ck_assert_uint_eq(s.ncrumbs, 0);
	ck_assert_uint_eq(crumb_count(&s), 0);
	ck_assert_int_eq(scope_empty(&s), 1);
	scope_clear(&s);
}
END_TEST

START_TEST(test_crumb_timestamp)
{
	struct scope	 s;
	cJSON		*c, *ts, *in;

	scope_init(&s);
	in = cJSON_Parse("{\"message\":\"hi\",\"category\":\"http\","
	    "\"data\":{\"url\":\"/x\"}}");
	ck_assert_ptr_nonnull(in);
	ck_assert_int_eq(scope_crumb(&s, in, 1700000000.25, 1, 100), 0);
	/* The caller's crumb is not touched. */
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(in, "timestamp"));
	cJSON_Delete(in);
	c = cJSON_Parse(crumb_at(&s, 0).json);
	ts = cJSON_GetObjectItemCaseSensitive(c, "timestamp");
	ck_assert(cJSON_IsNumber(ts));
	ck_assert(fabs(ts->valuedouble - 1700000000.25) < 1e-6);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(c,
	    "category")->valuestring, "http");
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c, "data"), "url")->valuestring,
	    "/x");
	cJSON_Delete(c);
	/* Stored compact: no whitespace outside strings. */
	ck_assert_ptr_null(strchr(crumb_at(&s, 0).json, ' '));
	ck_assert_ptr_null(strchr(crumb_at(&s, 0).json, '\n'));

	/* A timestamp that is there is kept as is. */
	add_crumb(&s, "{\"message\":\"a\",\"timestamp\":12.5}", 99, 2, 100);
	add_crumb(&s, "{\"message\":\"b\",\"timestamp\":"
	    "\"2024-01-02T03:04:05Z\"}", 99, 3, 100);
	c = cJSON_Parse(crumb_at(&s, 1).json);
	ck_assert(cJSON_GetObjectItemCaseSensitive(c,
	    "timestamp")->valuedouble == 12.5);
	cJSON_Delete(c);
	c = cJSON_Parse(crumb_at(&s, 2).json);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(c,
	    "timestamp")->valuestring, "2024-01-02T03:04:05Z");
	cJSON_Delete(c);
	scope_clear(&s);
}
END_TEST

START_TEST(test_copy_is_deep)
{
	struct scope	a, b;

	scope_init(&a);
	scope_init(&b);
	apply_set(&a, "{\"tags\":{\"t\":\"1\"},\"contexts\":{\"os\":"
	    "{\"name\":\"linux\"}},\"level\":\"info\",\"transaction\":\"tx\","
	    "\"fingerprint\":[\"f\"]}");
	add_crumb(&a, "{\"message\":\"c1\"}", 1, 1, 10);
	/* b's old content is replaced, not merged. */
	apply_set(&b, "{\"tags\":{\"old\":\"x\"},\"user\":{\"id\":9}}");
	scope_copy(&b, &a);
	ck_assert_ptr_null(map_str(&b, SCOPE_TAGS, "old"));
	ck_assert_ptr_null(b.map[SCOPE_USER]);
	ck_assert_str_eq(map_str(&b, SCOPE_TAGS, "t"), "1");
	ck_assert_ptr_ne(b.map[SCOPE_TAGS], a.map[SCOPE_TAGS]);
	ck_assert_ptr_ne(b.level, a.level);
	ck_assert_uint_eq(b.ncrumbs, 1);
	ck_assert_ptr_ne(b.crumbs, a.crumbs);
	ck_assert_ptr_ne(crumb_at(&b, 0).json, crumb_at(&a, 0).json);
	ck_assert_str_eq(crumb_at(&b, 0).json, crumb_at(&a, 0).json);
	ck_assert_uint_eq(crumb_at(&b, 0).seq, 1);

	/* Changing the source does not reach the copy, and back. */
	apply_set(&a, "{\"tags\":{\"t\":\"2\"},\"contexts\":{\"os\":null},"
	    "\"level\":\"error\"}");
	add_crumb(&a, "{\"message\":\"c2\"}", 2, 2, 10);
	ck_assert_str_eq(map_str(&b, SCOPE_TAGS, "t"), "1");
	ck_assert(map_equals(&b, SCOPE_CONTEXTS, "os", "{\"name\":\"linux\"}"));
	ck_assert_str_eq(b.level, "info");
	ck_assert_uint_eq(b.ncrumbs, 1);
	ck_assert_uint_eq(crumb_count(&b), 1);
	apply_set(&b, "{\"transaction\":\"other\"}");
	ck_assert_str_eq(a.transaction, "tx");

	/* The copy outlives its source. */
	scope_clear(&a);
	ck_assert_str_eq(b.transaction, "other");
	ck_assert_str_eq(map_str(&b, SCOPE_TAGS, "t"), "1");
	/* Copying an empty scope empties the destination. */
	scope_copy(&b, &a);
	ck_assert_int_eq(scope_empty(&b), 1);
	scope_clear(&b);
}
END_TEST

START_TEST(test_to_json)
{
	struct scope	 s;
	cJSON		*j, *want;

	scope_init(&s);
	j = scope_to_json(&s);
	ck_assert(cJSON_IsObject(j));
	ck_assert_ptr_null(j->child);
	cJSON_Delete(j);
	ck_assert_uint_eq(scope_memory(&s), 0);

	apply_set(&s, "{\"tags\":{\"a\":1},\"level\":\"info\"}");
	add_crumb(&s, "{\"message\":\"m\",\"timestamp\":5}", 1, 1, 10);
	ck_assert_uint_gt(scope_memory(&s), 0);
	j = scope_to_json(&s);
	want = cJSON_Parse("{\"tags\":{\"a\":\"1\"},\"level\":\"info\","
	    "\"breadcrumbs\":[{\"message\":\"m\",\"timestamp\":5}]}");
	ck_assert(cJSON_Compare(j, want, 1));
	cJSON_Delete(want);
	cJSON_Delete(j);
	scope_clear(&s);
}
END_TEST

/*
 * Stored as text, values read back as they were set: strings exactly
 * (escapes, control characters, non-ASCII text), and every value prints
 * as the value that was set prints, which is what a merged event and the
 * JSON view show (numbers not exact in binary, large and negative ones,
 * nested objects and arrays, booleans, and nulls nested in a value: a
 * null at the top removes the key).
 */
START_TEST(test_compact_round_trip)
{
	static const char *const values[] = {
		"\"quote \\\" backslash \\\\ slash /\"",
		"\"tab\\t nl\\n cr\\r bell\\u0007 \\u001f\"",
		"\"h\\u00e9llo \u00e9t\u00e9 \u65e5\u672c \\ud83d\\ude00\"",
		"0.1", "-0.30000000000000004", "1e300", "-2.5e-300",
		"9007199254740993", "123456789012345678901234567890",
		"3.141592653589793", "-7", "0",
		"true", "false", "{\"n\":null}", "[null,1]",
		"{\"a\":[1,\"two\",{\"three\":[]}],\"b\":{}}",
		"[]", "\"\""
	};
	struct scope	 s;
	char		 buf[512], *got_text, *want_text;
	size_t		 i;
	cJSON		*v, *map, *want;

	scope_init(&s);
	for (i = 0; i < sizeof values / sizeof values[0]; i++) {
		snprintf(buf, sizeof buf, "{\"extra\":{\"k%zu\":%s}}", i,
		    values[i]);
		apply_set(&s, buf);
	}
	map = scope_map_json(&s, SCOPE_EXTRA);
	ck_assert_ptr_nonnull(map);
	ck_assert_int_eq(cJSON_GetArraySize(map),
	    (int)(sizeof values / sizeof values[0]));
	for (i = 0; i < sizeof values / sizeof values[0]; i++) {
		snprintf(buf, sizeof buf, "k%zu", i);
		v = cJSON_GetObjectItemCaseSensitive(map, buf);
		ck_assert_ptr_nonnull(v);
		want = cJSON_Parse(values[i]);
		ck_assert_ptr_nonnull(want);
		ck_assert_msg(cJSON_Compare(v, want, 1), "value %zu", i);
		got_text = cJSON_PrintUnformatted(v);
		want_text = cJSON_PrintUnformatted(want);
		ck_assert_str_eq(got_text, want_text);
		if (cJSON_IsString(want))
			ck_assert_str_eq(v->valuestring, want->valuestring);
		cJSON_free(got_text);
		cJSON_free(want_text);
		cJSON_Delete(want);
	}
	/* Keys keep the order they were first set in. */
	ck_assert_str_eq(map->child->string, "k0");
	ck_assert_str_eq(map->child->next->string, "k1");
	cJSON_Delete(map);

	/* Tags too: string values back exactly, escapes and all. */
	apply_set(&s, "{\"tags\":{\"q\":\"a\\\"b\\\\c\\nd\",\"u\":\"\u00fc\","
	    "\"t\":true,\"n\":-12.25}}");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "q"), "a\"b\\c\nd");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "u"), "\u00fc");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "t"), "true");
	ck_assert_str_eq(map_str(&s, SCOPE_TAGS, "n"), "-12.25");
	scope_clear(&s);
}
END_TEST

/*
 * Each map is one compact text: a set rewrites only the maps it names
 * (the others keep their very buffer), and a map is freed with its last
 * key.
 */
START_TEST(test_compact_set_touches_named_maps)
{
	struct scope	 s;
	char		*extra, *user;

	scope_init(&s);
	apply_set(&s, "{\"tags\":{\"a\":\"1\"},\"extra\":{\"e\":[1, 2]},"
	    "\"user\":{\"id\":\"u\"}}");
	ck_assert_str_eq(s.map[SCOPE_TAGS], "{\"a\":\"1\"}");
	ck_assert_str_eq(s.map[SCOPE_EXTRA], "{\"e\":[1,2]}");
	extra = s.map[SCOPE_EXTRA];
	user = s.map[SCOPE_USER];
	apply_set(&s, "{\"tags\":{\"b\":\"2\"},\"level\":\"info\"}");
	ck_assert_ptr_eq(s.map[SCOPE_EXTRA], extra);
	ck_assert_ptr_eq(s.map[SCOPE_USER], user);
	ck_assert_str_eq(s.map[SCOPE_TAGS], "{\"a\":\"1\",\"b\":\"2\"}");
	/* A crumb touches no map either. */
	add_crumb(&s, "{\"message\":\"m\"}", 1, 1, 10);
	ck_assert_ptr_eq(s.map[SCOPE_EXTRA], extra);
	ck_assert_ptr_eq(s.map[SCOPE_USER], user);
	/* The last key gone, the map is gone. */
	apply_set(&s, "{\"user\":{\"id\":null}}");
	ck_assert_ptr_null(s.map[SCOPE_USER]);
	ck_assert_ptr_null(scope_map_json(&s, SCOPE_USER));
	ck_assert_ptr_eq(s.map[SCOPE_EXTRA], extra);
	scope_clear(&s);
}
END_TEST

/*
 * The crumbs live in one buffer; scope_memory counts what the scope's
 * content takes: each text with its NUL, each crumb with its 8-byte
 * sequence number.
 */
START_TEST(test_compact_memory)
{
	struct scope	 s, c;
	struct scope_crumb cr;
	size_t		 pos = 0, want;

	scope_init(&s);
	scope_init(&c);
	ck_assert_int_eq(scope_crumb_next(&s, &pos, &cr), 0);
	apply_set(&s, "{\"tags\":{\"a\":\"1\"},\"level\":\"info\","
	    "\"fingerprint\":[\"x\"]}");
	add_crumb(&s, "{\"message\":\"m\",\"timestamp\":5}", 1, 7, 10);
	add_crumb(&s, "{\"timestamp\":6}", 1, 8, 10);
	want = sizeof "{\"a\":\"1\"}" + sizeof "info" + sizeof "[\"x\"]" +
	    8 + sizeof "{\"message\":\"m\",\"timestamp\":5}" +
	    8 + sizeof "{\"timestamp\":6}";
	ck_assert_uint_eq(scope_memory(&s), want);
	ck_assert_uint_eq(s.crumbs_len, 8 + sizeof "{\"message\":\"m\","
	    "\"timestamp\":5}" + 8 + sizeof "{\"timestamp\":6}");
	/* The walk sees both, in order, then stops. */
	ck_assert_int_eq(scope_crumb_next(&s, &pos, &cr), 1);
	ck_assert_uint_eq(cr.seq, 7);
	ck_assert_str_eq(cr.json, "{\"message\":\"m\",\"timestamp\":5}");
	ck_assert_int_eq(scope_crumb_next(&s, &pos, &cr), 1);
	ck_assert_uint_eq(cr.seq, 8);
	ck_assert_str_eq(cr.json, "{\"timestamp\":6}");
	ck_assert_int_eq(scope_crumb_next(&s, &pos, &cr), 0);
	/* A copy takes the same. */
	scope_copy(&c, &s);
	ck_assert_uint_eq(scope_memory(&c), want);
	scope_clear(&s);
	ck_assert_uint_eq(scope_memory(&s), 0);
	scope_clear(&c);
}
END_TEST

static Suite *
scope_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("scope");
	tc = tcase_create("set");
	tcase_add_test(tc, test_set_tags_text);
	tcase_add_test(tc, test_set_merges_keys);
	tcase_add_test(tc, test_set_null_key_removes);
	tcase_add_test(tc, test_set_null_field_clears);
	tcase_add_test(tc, test_set_contexts_replace_per_name);
	tcase_add_test(tc, test_set_single_values);
	suite_add_tcase(s, tc);
	tc = tcase_create("crumbs");
	tcase_add_test(tc, test_crumbs_cap_and_order);
	tcase_add_test(tc, test_crumb_timestamp);
	suite_add_tcase(s, tc);
	tc = tcase_create("copy");
	tcase_add_test(tc, test_copy_is_deep);
	tcase_add_test(tc, test_to_json);
	suite_add_tcase(s, tc);
	tc = tcase_create("compact");
	tcase_add_test(tc, test_compact_round_trip);
	tcase_add_test(tc, test_compact_set_touches_named_maps);
	tcase_add_test(tc, test_compact_memory);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(scope_suite());
}
