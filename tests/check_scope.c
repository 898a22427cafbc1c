/*
 * check_scope.c -- unit tests of daemon/scope.c: the `set` rules of SPEC
 * §3 and §11 (null key removes, null field clears, contexts replaced per
 * name, numbers and booleans stored as text), breadcrumbs (cap, order,
 * timestamp filled at receipt), deep copies and the JSON view.
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

/* The string value of map[key], or NULL. */
static const char *
map_str(const struct scope *s, enum scope_map i, const char *key)
{
	const cJSON	*v;

	if (s->map[i] == NULL)
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(s->map[i], key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 1 if map[key] equals the JSON text. */
static int
map_equals(const struct scope *s, enum scope_map i, const char *key,
    const char *json)
{
	const cJSON	*v;
	cJSON		*want;
	int		 eq;

	if (s->map[i] == NULL)
		return 0;
	if ((v = cJSON_GetObjectItemCaseSensitive(s->map[i], key)) == NULL)
		return 0;
	want = cJSON_Parse(json);
	ck_assert_ptr_nonnull(want);
	eq = cJSON_Compare(v, want, 1);
	cJSON_Delete(want);
	return eq;
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
	ck_assert_int_eq(cJSON_GetArraySize(s.map[SCOPE_TAGS]), 6);
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
	ck_assert_int_eq(cJSON_GetArraySize(s.map[SCOPE_TAGS]), 3);
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
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(
	    s.map[SCOPE_EXTRA], "x"));
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
	cJSON		*want;

	scope_init(&s);
	apply_set(&s, "{\"level\":\"info\",\"transaction\":\"GET /a\","
	    "\"fingerprint\":[\"{{ default }}\",\"x\"]}");
	ck_assert_str_eq(s.level, "info");
	ck_assert_str_eq(s.transaction, "GET /a");
	want = cJSON_Parse("[\"{{ default }}\",\"x\"]");
	ck_assert(cJSON_Compare(s.fingerprint, want, 1));
	cJSON_Delete(want);
	apply_set(&s, "{\"level\":\"fatal\",\"fingerprint\":[\"y\"]}");
	ck_assert_str_eq(s.level, "fatal");
	ck_assert_str_eq(s.transaction, "GET /a");
	ck_assert_int_eq(cJSON_GetArraySize(s.fingerprint), 1);
	ck_assert_str_eq(cJSON_GetArrayItem(s.fingerprint, 0)->valuestring,
	    "y");
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
	}
	ck_assert_uint_eq(s.ncrumbs, 3);
	for (i = 0; i < 3; i++) {
		ck_assert_uint_eq(s.crumbs[i].seq, (uint64_t)((i + 3) * 10));
		c = cJSON_Parse(s.crumbs[i].json);
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
	ck_assert_uint_eq(s.crumbs[0].seq, 50);
	ck_assert_uint_eq(s.crumbs[1].seq, 60);
	/* A cap of 0 keeps none. */
	r = add_crumb(&s, "{\"message\":\"m7\"}", 201, 70, 0);
	ck_assert_int_eq(r, 1);
	ck_assert_uint_eq(s.ncrumbs, 0);
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
	c = cJSON_Parse(s.crumbs[0].json);
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
	ck_assert_ptr_null(strchr(s.crumbs[0].json, ' '));
	ck_assert_ptr_null(strchr(s.crumbs[0].json, '\n'));

	/* A timestamp that is there is kept as is. */
	add_crumb(&s, "{\"message\":\"a\",\"timestamp\":12.5}", 99, 2, 100);
	add_crumb(&s, "{\"message\":\"b\",\"timestamp\":"
	    "\"2024-01-02T03:04:05Z\"}", 99, 3, 100);
	c = cJSON_Parse(s.crumbs[1].json);
	ck_assert(cJSON_GetObjectItemCaseSensitive(c,
	    "timestamp")->valuedouble == 12.5);
	cJSON_Delete(c);
	c = cJSON_Parse(s.crumbs[2].json);
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
	ck_assert_ptr_ne(b.crumbs[0].json, a.crumbs[0].json);
	ck_assert_str_eq(b.crumbs[0].json, a.crumbs[0].json);

	/* Changing the source does not reach the copy, and back. */
	apply_set(&a, "{\"tags\":{\"t\":\"2\"},\"contexts\":{\"os\":null},"
	    "\"level\":\"error\"}");
	add_crumb(&a, "{\"message\":\"c2\"}", 2, 2, 10);
	ck_assert_str_eq(map_str(&b, SCOPE_TAGS, "t"), "1");
	ck_assert(map_equals(&b, SCOPE_CONTEXTS, "os", "{\"name\":\"linux\"}"));
	ck_assert_str_eq(b.level, "info");
	ck_assert_uint_eq(b.ncrumbs, 1);
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
	return s;
}

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	sr = srunner_create(scope_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
