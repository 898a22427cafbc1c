/*
 * check_msg.c -- unit tests for proto/msg.c and proto/reply.c: message
 * parsing and validation (SPEC §3, §11 "Lines and codes") and the exact
 * text of reply lines.
 *
 * Every line is handed to msg_parse in a buffer of exactly its length, with
 * no NUL after it, so that AddressSanitizer catches any read past the end.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "proto/msg.h"
#include "proto/reply.h"
#include "tests/check_run.h"

/* Parse s (its strlen) from an exact-size copy. */
static int
parse_n(const char *s, size_t n, struct msg *m, struct msg_error *e)
{
	char	*copy;
	int	 rc;

	copy = malloc(n == 0 ? 1 : n);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, s, n);
	rc = msg_parse(copy, n, m, e);
	free(copy);
	return rc;
}

static int
parse(const char *s, struct msg *m, struct msg_error *e)
{
	return parse_n(s, strlen(s), m, e);
}

/* Expect s to parse; *m must be freed by the caller. */
static void
ok(const char *s, struct msg *m)
{
	struct msg_error	 e;

	if (parse(s, m, &e) != 0) {
		ck_abort_msg("rejected (%s: %s): %s", msg_err_name(e.code),
		    e.text, s);
	}
}

/*
 * Expect s to fail with code, echoing id_json (NULL: no id), with a
 * message that mentions word (NULL: any non-empty message).
 */
static void
bad_n(const char *s, size_t n, enum msg_err code, const char *id_json,
    const char *word)
{
	struct msg	 m;
	struct msg_error e;

	if (parse_n(s, n, &m, &e) == 0) {
		msg_free(&m);
		ck_abort_msg("accepted: %s", s);
	}
	ck_assert_msg(e.code == code, "%s: got %s (%s), want %s", s,
	    msg_err_name(e.code), e.text, msg_err_name(code));
	if (id_json == NULL)
		ck_assert_msg(e.id_json == NULL, "%s: id %s echoed", s,
		    e.id_json);
	else {
		ck_assert_msg(e.id_json != NULL, "%s: id not echoed", s);
		ck_assert_str_eq(e.id_json, id_json);
	}
	ck_assert_uint_gt(strlen(e.text), 0);
	if (word != NULL)
		ck_assert_msg(strstr(e.text, word) != NULL,
		    "%s: message \"%s\" does not name %s", s, e.text, word);
	/* A failed parse leaves nothing to free in m. */
	ck_assert_ptr_null(m.root);
	ck_assert_ptr_null(m.id_json);
	msg_error_free(&e);
	ck_assert_ptr_null(e.id_json);
}

static void
bad(const char *s, enum msg_err code, const char *id_json, const char *word)
{
	bad_n(s, strlen(s), code, id_json, word);
}

/* A message with depth levels of nesting (the top-level object is 1). */
static char *
nested(int depth)
{
	char	*s, *p;
	int	 i;

	s = malloc(64 + (size_t)depth * 8);
	ck_assert_ptr_nonnull(s);
	p = s + sprintf(s, "{\"op\":\"set\",\"extra\":");
	for (i = 0; i < depth - 2; i++)
		p += sprintf(p, "{\"a\":");
	p += sprintf(p, "{}");
	for (i = 0; i < depth - 2; i++)
		*p++ = '}';
	strcpy(p, "}");
	return s;
}

/* ------------------------------------------------------------ names */

START_TEST(test_err_names)
{
	ck_assert_str_eq(msg_err_name(MSG_E_BAD_JSON), "bad_json");
	ck_assert_str_eq(msg_err_name(MSG_E_LINE_TOO_LONG), "line_too_long");
	ck_assert_str_eq(msg_err_name(MSG_E_BAD_OP), "bad_op");
	ck_assert_str_eq(msg_err_name(MSG_E_BAD_FIELD), "bad_field");
	ck_assert_str_eq(msg_err_name(MSG_E_TOO_LARGE), "too_large");
	ck_assert_str_eq(msg_err_name(MSG_E_SPOOL_FULL), "spool_full");
	ck_assert_str_eq(msg_err_name(MSG_E_SHUTTING_DOWN), "shutting_down");
}
END_TEST

START_TEST(test_op_field_names)
{
	ck_assert_str_eq(msg_op_name(MSG_HELLO), "hello");
	ck_assert_str_eq(msg_op_name(MSG_SET), "set");
	ck_assert_str_eq(msg_op_name(MSG_CRUMB), "crumb");
	ck_assert_str_eq(msg_op_name(MSG_FORK), "fork");
	ck_assert_str_eq(msg_op_name(MSG_END), "end");
	ck_assert_str_eq(msg_op_name(MSG_EVENT), "event");
	ck_assert_str_eq(msg_field_name(MSG_F_TAGS), "tags");
	ck_assert_str_eq(msg_field_name(MSG_F_EXTRA), "extra");
	ck_assert_str_eq(msg_field_name(MSG_F_CONTEXTS), "contexts");
	ck_assert_str_eq(msg_field_name(MSG_F_USER), "user");
	ck_assert_str_eq(msg_field_name(MSG_F_LEVEL), "level");
	ck_assert_str_eq(msg_field_name(MSG_F_TRANSACTION), "transaction");
	ck_assert_str_eq(msg_field_name(MSG_F_FINGERPRINT), "fingerprint");
}
END_TEST

/* ------------------------------------------------------------ helpers */

START_TEST(test_utf8)
{
	ck_assert_int_eq(msg_utf8_valid("", 0), 1);
	ck_assert_int_eq(msg_utf8_valid("plain", 5), 1);
	/* Two, three and four bytes, the top code point, U+D7FF. */
	ck_assert_int_eq(msg_utf8_valid("\xc3\xa9", 2), 1);
	ck_assert_int_eq(msg_utf8_valid("\xe2\x82\xac", 3), 1);
	ck_assert_int_eq(msg_utf8_valid("\xf0\x9f\x98\x80", 4), 1);
	ck_assert_int_eq(msg_utf8_valid("\xf4\x8f\xbf\xbf", 4), 1);
	ck_assert_int_eq(msg_utf8_valid("\xed\x9f\xbf", 3), 1);
	ck_assert_int_eq(msg_utf8_valid("\xff", 1), 0);
	ck_assert_int_eq(msg_utf8_valid("\x80", 1), 0);		/* lone tail */
	ck_assert_int_eq(msg_utf8_valid("\xc3", 1), 0);		/* cut short */
	ck_assert_int_eq(msg_utf8_valid("\xe2\x82", 2), 0);
	/* Overlong forms. */
	ck_assert_int_eq(msg_utf8_valid("\xc0\xaf", 2), 0);
	ck_assert_int_eq(msg_utf8_valid("\xc1\xbf", 2), 0);
	ck_assert_int_eq(msg_utf8_valid("\xe0\x80\xaf", 3), 0);
	ck_assert_int_eq(msg_utf8_valid("\xf0\x80\x80\xaf", 4), 0);
	ck_assert_int_eq(msg_utf8_valid("\xed\xa0\x80", 3), 0);	/* surrogate */
	ck_assert_int_eq(msg_utf8_valid("\xed\xbf\xbf", 3), 0);
	/* Above U+10FFFF. */
	ck_assert_int_eq(msg_utf8_valid("\xf4\x90\x80\x80", 4), 0);
	ck_assert_int_eq(msg_utf8_valid("\xf5\x80\x80\x80", 4), 0);
	ck_assert_int_eq(msg_utf8_valid("a\xc3(", 3), 0);
	/* The length is honoured: a NUL is an ordinary byte. */
	ck_assert_int_eq(msg_utf8_valid("a\0b", 3), 1);
	ck_assert_int_eq(msg_utf8_valid("ok\xff", 2), 1);
}
END_TEST

START_TEST(test_event_id_normalise)
{
	char	 out[33];

	ck_assert_int_eq(msg_event_id_normalise(
	    "8F0C6D4E-1B2A-4C3D-9E8F-0A1B2C3D4E5F", out), 0);
	ck_assert_str_eq(out, "8f0c6d4e1b2a4c3d9e8f0a1b2c3d4e5f");
	ck_assert_int_eq(msg_event_id_normalise(
	    "0123456789abcdef0123456789abcdef", out), 0);
	ck_assert_str_eq(out, "0123456789abcdef0123456789abcdef");
	ck_assert_int_eq(msg_event_id_normalise(
	    "0123456789abcdef0123456789abcde", out), -1);	/* 31 */
	ck_assert_int_eq(msg_event_id_normalise(
	    "0123456789abcdef0123456789abcdef0", out), -1);	/* 33 */
	ck_assert_int_eq(msg_event_id_normalise(
	    "0123456789abcdef0123456789abcdeg", out), -1);
	ck_assert_int_eq(msg_event_id_normalise(
	    "{0123456789abcdef0123456789abcdef}", out), -1);
	ck_assert_int_eq(msg_event_id_normalise("", out), -1);
	ck_assert_int_eq(msg_event_id_normalise("--------", out), -1);
}
END_TEST

/* ------------------------------------------------------------ bad_json */

START_TEST(test_bad_json)
{
	bad("", MSG_E_BAD_JSON, NULL, NULL);
	bad("   \t\r", MSG_E_BAD_JSON, NULL, NULL);
	bad("not json", MSG_E_BAD_JSON, NULL, NULL);
	bad("{", MSG_E_BAD_JSON, NULL, NULL);
	bad("{\"op\":\"end\",\"fiber\":\"a\"", MSG_E_BAD_JSON, NULL, NULL);
	bad("{\"op\":\"end\",}", MSG_E_BAD_JSON, NULL, NULL);
	bad("{'op':'end'}", MSG_E_BAD_JSON, NULL, NULL);
	bad("{\"op\":\"end\",\"fiber\":\"a\"} x", MSG_E_BAD_JSON, NULL, NULL);
	bad("{\"op\":\"end\",\"fiber\":\"a\"}{}", MSG_E_BAD_JSON, NULL, NULL);
	bad("{\"op\":\"set\",\"extra\":{\"s\":\"\\q\"}}", MSG_E_BAD_JSON,
	    NULL, NULL);
	/* A lone surrogate escape is not a character. */
	bad("{\"op\":\"set\",\"extra\":{\"s\":\"\\ud800\"}}", MSG_E_BAD_JSON,
	    NULL, NULL);
	/* An id does not survive a line that is not JSON. */
	bad("{\"id\":7,\"op\":\"end\"", MSG_E_BAD_JSON, NULL, NULL);
}
END_TEST

START_TEST(test_bad_json_strict)
{
	/* What cJSON alone would let through. */
	bad("{\"op\":\"set\",\"extra\":{\"n\":01}}", MSG_E_BAD_JSON, NULL,
	    NULL);
	bad("{\"op\":\"set\",\"extra\":{\"n\":1.}}", MSG_E_BAD_JSON, NULL,
	    NULL);
	bad("{\"op\":\"set\",\"extra\":{\"n\":-}}", MSG_E_BAD_JSON, NULL,
	    NULL);
	bad("{\"op\":\"set\",\"extra\":{\"n\":1e}}", MSG_E_BAD_JSON, NULL,
	    NULL);
	bad("{\"op\":\"set\",\"extra\":{\"s\":\"a\tb\"}}", MSG_E_BAD_JSON,
	    NULL, NULL);
	bad("\x01{\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_JSON, NULL, NULL);
	/* cJSON would read a malformed \u escape as \u0000. */
	bad("{\"op\":\"end\",\"fiber\":\"a\\u0e9 \"}", MSG_E_BAD_JSON, NULL,
	    "escape");
	bad("{\"op\":\"end\",\"fiber\":\"a\\u00g0\"}", MSG_E_BAD_JSON, NULL,
	    "escape");
	bad("{\"op\":\"end\",\"fiber\":\"a\\u12\"}", MSG_E_BAD_JSON, NULL,
	    NULL);
	bad_n("{\"op\":\"end\",\"fiber\":\"a\0\"}",
	    sizeof("{\"op\":\"end\",\"fiber\":\"a\0\"}") - 1, MSG_E_BAD_JSON,
	    NULL, NULL);
}
END_TEST

START_TEST(test_top_level_not_object)
{
	bad("[1,2]", MSG_E_BAD_JSON, NULL, "object");
	bad("\"op\"", MSG_E_BAD_JSON, NULL, "object");
	bad("42", MSG_E_BAD_JSON, NULL, "object");
	bad("null", MSG_E_BAD_JSON, NULL, "object");
	bad("true", MSG_E_BAD_JSON, NULL, "object");
	bad("[{\"op\":\"end\",\"fiber\":\"a\"}]", MSG_E_BAD_JSON, NULL,
	    "object");
}
END_TEST

START_TEST(test_invalid_utf8)
{
	bad("{\"op\":\"set\",\"tags\":{\"k\":\"\xff\"}}", MSG_E_BAD_JSON,
	    NULL, "UTF-8");
	bad("{\"op\":\"set\",\"tags\":{\"k\":\"\xc0\xaf\"}}", MSG_E_BAD_JSON,
	    NULL, "UTF-8");
	bad("{\"op\":\"set\",\"tags\":{\"k\":\"\xed\xa0\x80\"}}",
	    MSG_E_BAD_JSON, NULL, "UTF-8");
	bad("{\"id\":1,\"op\":\"end\",\"fiber\":\"\xe2\x82\"}", MSG_E_BAD_JSON,
	    NULL, "UTF-8");
}
END_TEST

START_TEST(test_nesting)
{
	struct msg	 m;
	char		*s;
	cJSON		*x;
	int		 levels;

	s = nested(64);
	ok(s, &m);
	/* Count the levels of what was parsed: root plus 63. */
	levels = 1;
	for (x = m.field[MSG_F_EXTRA]; x != NULL; x = x->child)
		levels++;
	ck_assert_int_eq(levels, 64);
	msg_free(&m);
	free(s);

	s = nested(65);
	bad(s, MSG_E_BAD_JSON, NULL, "64");
	free(s);

	/* Brackets inside strings do not count. */
	ok("{\"op\":\"set\",\"extra\":{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{\\\"[[["
	    "\"}}", &m);
	msg_free(&m);
}
END_TEST

START_TEST(test_nesting_arrays)
{
	struct msg	 m;
	char		 s[512], *p;
	int		 i;

	/* {"op":"set","fingerprint":[[[...]]]} deep: 1 + n array levels. */
	p = s + sprintf(s, "{\"op\":\"set\",\"extra\":{\"a\":");
	for (i = 0; i < 62; i++)
		*p++ = '[';
	for (i = 0; i < 62; i++)
		*p++ = ']';
	strcpy(p, "}}");
	ok(s, &m);				/* 1 + 1 + 62 = 64 */
	msg_free(&m);

	p = s + sprintf(s, "{\"op\":\"set\",\"extra\":{\"a\":");
	for (i = 0; i < 63; i++)
		*p++ = '[';
	for (i = 0; i < 63; i++)
		*p++ = ']';
	strcpy(p, "}}");
	bad(s, MSG_E_BAD_JSON, NULL, "64");	/* 65 */
}
END_TEST

START_TEST(test_whitespace_around)
{
	struct msg	 m;

	ok("  {\"op\":\"end\",\"fiber\":\"a\"}  \r", &m);
	ck_assert_int_eq(m.op, MSG_END);
	msg_free(&m);
	ok("\t{ \"op\" : \"end\" , \"fiber\" : 1 }\r", &m);
	ck_assert_str_eq(m.fiber, "1");
	msg_free(&m);
}
END_TEST

/* ------------------------------------------------------------ bad_op */

START_TEST(test_bad_op)
{
	bad("{}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"fiber\":\"a\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":5}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":null}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":[\"set\"]}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":\"nope\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":\"\"}", MSG_E_BAD_OP, NULL, "op");
	/* Names are case-sensitive, field names and op values alike. */
	bad("{\"Op\":\"set\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"OP\":\"set\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":\"SET\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":\"Hello\"}", MSG_E_BAD_OP, NULL, "op");
	bad("{\"op\":\"set \"}", MSG_E_BAD_OP, NULL, "op");
}
END_TEST

START_TEST(test_case_sensitive_fields)
{
	struct msg	 m;

	/* "Fiber" is an unknown field, so end has no fiber. */
	bad("{\"op\":\"end\",\"Fiber\":\"a\"}", MSG_E_BAD_FIELD, NULL,
	    "fiber");
	/* "Tags" is ignored, not validated and not taken. */
	ok("{\"op\":\"set\",\"Tags\":{\"k\":{}}}", &m);
	ck_assert_ptr_null(m.field[MSG_F_TAGS]);
	msg_free(&m);
	/* "ID" is not the id. */
	bad("{\"ID\":7,\"op\":\"x\"}", MSG_E_BAD_OP, NULL, NULL);
}
END_TEST

/* ------------------------------------------------------------ id */

START_TEST(test_id_valid)
{
	struct msg	 m;
	char		 s[256];

	ok("{\"id\":7,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "7");
	msg_free(&m);
	ok("{\"id\":0,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "0");
	msg_free(&m);
	ok("{\"id\":-3,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "-3");
	msg_free(&m);
	/* Integral values written otherwise echo as plain integers. */
	ok("{\"id\":1.0,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "1");
	msg_free(&m);
	ok("{\"id\":1e2,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "100");
	msg_free(&m);
	ok("{\"id\":-0,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "0");
	msg_free(&m);
	ok("{\"id\":9007199254740992,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "9007199254740992");
	msg_free(&m);
	ok("{\"id\":-9007199254740992,\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "-9007199254740992");
	msg_free(&m);
	ok("{\"id\":\"req-1\",\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "\"req-1\"");
	msg_free(&m);
	ok("{\"id\":\"\",\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_str_eq(m.id_json, "\"\"");
	msg_free(&m);
	/* Every JSON escape is read. */
	ok("{\"op\":\"end\",\"fiber\":"
	    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00\"}", &m);
	ck_assert_str_eq(m.fiber,
	    "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
	msg_free(&m);
	/* A string id is re-escaped as compact JSON. */
	ok("{\"id\":\"a\\\"b\\\\c\\u0041\\n\",\"op\":\"end\",\"fiber\":\"a\"}",
	    &m);
	ck_assert_str_eq(m.id_json, "\"a\\\"b\\\\cA\\n\"");
	msg_free(&m);
	/* 64 bytes is the limit. */
	snprintf(s, sizeof s, "{\"id\":\"%064d\",\"op\":\"end\",\"fiber\":1}",
	    0);
	ok(s, &m);
	ck_assert_uint_eq(strlen(m.id_json), 66);
	msg_free(&m);
	/* No id: nothing to echo. */
	ok("{\"op\":\"end\",\"fiber\":\"a\"}", &m);
	ck_assert_ptr_null(m.id_json);
	msg_free(&m);
}
END_TEST

START_TEST(test_id_invalid_not_echoed)
{
	char	 s[256];

	bad("{\"id\":true,\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	bad("{\"id\":null,\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	bad("{\"id\":{},\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	bad("{\"id\":[7],\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	bad("{\"id\":1.5,\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	bad("{\"id\":9007199254740993,\"op\":\"end\",\"fiber\":\"a\"}",
	    MSG_E_BAD_FIELD, NULL, "id");
	bad("{\"id\":1e300,\"op\":\"end\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    NULL, "id");
	snprintf(s, sizeof s, "{\"id\":\"%065d\",\"op\":\"end\",\"fiber\":1}",
	    0);
	bad(s, MSG_E_BAD_FIELD, NULL, "id");
	/* The id is checked before the op. */
	bad("{\"id\":false,\"op\":\"nope\"}", MSG_E_BAD_FIELD, NULL, "id");
}
END_TEST

START_TEST(test_id_echoed_on_errors)
{
	bad("{\"id\":7,\"op\":\"nope\"}", MSG_E_BAD_OP, "7", NULL);
	bad("{\"op\":\"nope\",\"id\":\"x\"}", MSG_E_BAD_OP, "\"x\"", NULL);
	bad("{\"id\":7}", MSG_E_BAD_OP, "7", NULL);
	bad("{\"id\":8,\"op\":\"end\"}", MSG_E_BAD_FIELD, "8", "fiber");
	bad("{\"id\":\"q\",\"op\":\"set\",\"tags\":{\"k\":{}}}",
	    MSG_E_BAD_FIELD, "\"q\"", "tags");
	bad("{\"id\":9,\"op\":\"event\",\"event\":{\"event_id\":\"x\"}}",
	    MSG_E_BAD_FIELD, "9", "event_id");
	bad("{\"id\":10,\"op\":\"hello\",\"ack\":1}", MSG_E_BAD_FIELD, "10",
	    "ack");
	bad("{\"id\":11,\"op\":\"fork\",\"fiber\":\"a\"}", MSG_E_BAD_FIELD,
	    "11", "from");
	bad("{\"id\":12,\"op\":\"crumb\"}", MSG_E_BAD_FIELD, "12", "crumb");
	bad("{\"id\":13,\"op\":\"end\",\"fiber\":-1}", MSG_E_BAD_FIELD, "13",
	    "fiber");
}
END_TEST

/* ------------------------------------------------------------ fiber */

START_TEST(test_fiber)
{
	struct msg	 m;
	char		 s[512];

	/* 123 and "123" name the same fiber. */
	ok("{\"op\":\"end\",\"fiber\":123}", &m);
	ck_assert_int_eq(m.has_fiber, 1);
	ck_assert_str_eq(m.fiber, "123");
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":\"123\"}", &m);
	ck_assert_int_eq(m.has_fiber, 1);
	ck_assert_str_eq(m.fiber, "123");
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":0}", &m);
	ck_assert_str_eq(m.fiber, "0");
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":1.23e2}", &m);
	ck_assert_str_eq(m.fiber, "123");
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":9007199254740992}", &m);
	ck_assert_str_eq(m.fiber, "9007199254740992");
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":\"9007199254740993\"}", &m);
	ck_assert_str_eq(m.fiber, "9007199254740993");
	msg_free(&m);
	/* 128 bytes is fine. */
	snprintf(s, sizeof s, "{\"op\":\"end\",\"fiber\":\"%0128d\"}", 7);
	ok(s, &m);
	ck_assert_uint_eq(strlen(m.fiber), 128);
	ck_assert_int_eq(m.fiber[127], '7');
	msg_free(&m);
	/* UTF-8 is measured in bytes: 64 two-byte characters. */
	strcpy(s, "{\"op\":\"end\",\"fiber\":\"");
	for (int i = 0; i < 64; i++)
		strcat(s, "\xc3\xa9");
	strcat(s, "\"}");
	ok(s, &m);
	ck_assert_uint_eq(strlen(m.fiber), 128);
	msg_free(&m);
	/* Other numbers in the message do not confuse the fiber. */
	ok("{\"x\":[1,2],\"y\":5,\"op\":\"end\",\"z\":{\"n\":6},\"fiber\":42}",
	    &m);
	ck_assert_str_eq(m.fiber, "42");
	msg_free(&m);
	ok("{\"id\":3,\"op\":\"fork\",\"from\":17,\"fiber\":\"18\"}", &m);
	ck_assert_str_eq(m.id_json, "3");
	ck_assert_str_eq(m.fiber, "18");
	ck_assert_str_eq(m.from, "17");
	msg_free(&m);
}
END_TEST

START_TEST(test_fiber_bad)
{
	char	 s[512];

	snprintf(s, sizeof s, "{\"op\":\"end\",\"fiber\":\"%0129d\"}", 7);
	bad(s, MSG_E_BAD_FIELD, NULL, "fiber");
	strcpy(s, "{\"op\":\"end\",\"fiber\":\"a");
	for (int i = 0; i < 64; i++)
		strcat(s, "\xc3\xa9");
	strcat(s, "\"}");
	bad(s, MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":\"\"}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":9007199254740993}", MSG_E_BAD_FIELD,
	    NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":9007199254740992.5}", MSG_E_BAD_FIELD,
	    NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":1e16}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":-1}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":1.5}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":1.0000000000000001}", MSG_E_BAD_FIELD,
	    NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":true}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":null}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"end\",\"fiber\":{}}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"set\",\"fiber\":[1]}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"fork\",\"fiber\":1,\"from\":-2}", MSG_E_BAD_FIELD, NULL,
	    "from");
	bad("{\"op\":\"fork\",\"fiber\":1,\"from\":\"\"}", MSG_E_BAD_FIELD,
	    NULL, "from");
}
END_TEST

/* ------------------------------------------------------------ ops */

START_TEST(test_hello)
{
	struct msg	 m;
	char		 s[512];

	ok("{\"op\":\"hello\"}", &m);
	ck_assert_int_eq(m.op, MSG_HELLO);
	ck_assert_ptr_null(m.app);
	ck_assert_int_eq(m.has_ack, 0);
	ck_assert_ptr_null(m.sdk);
	msg_free(&m);
	ok("{\"op\":\"hello\",\"app\":\"shop\",\"ack\":true,\"sdk\":\"rb/1\"}",
	    &m);
	ck_assert_str_eq(m.app, "shop");
	ck_assert_int_eq(m.has_ack, 1);
	ck_assert_int_eq(m.ack, 1);
	ck_assert_str_eq(m.sdk, "rb/1");
	msg_free(&m);
	ok("{\"op\":\"hello\",\"ack\":false}", &m);
	ck_assert_int_eq(m.has_ack, 1);
	ck_assert_int_eq(m.ack, 0);
	msg_free(&m);
	snprintf(s, sizeof s, "{\"op\":\"hello\",\"app\":\"%0128d\"}", 1);
	ok(s, &m);
	msg_free(&m);

	snprintf(s, sizeof s, "{\"op\":\"hello\",\"app\":\"%0129d\"}", 1);
	bad(s, MSG_E_BAD_FIELD, NULL, "app");
	bad("{\"op\":\"hello\",\"app\":\"\"}", MSG_E_BAD_FIELD, NULL, "app");
	bad("{\"op\":\"hello\",\"app\":5}", MSG_E_BAD_FIELD, NULL, "app");
	bad("{\"op\":\"hello\",\"ack\":\"yes\"}", MSG_E_BAD_FIELD, NULL, "ack");
	bad("{\"op\":\"hello\",\"ack\":1}", MSG_E_BAD_FIELD, NULL, "ack");
	bad("{\"op\":\"hello\",\"sdk\":1}", MSG_E_BAD_FIELD, NULL, "sdk");
}
END_TEST

START_TEST(test_set)
{
	struct msg	 m;
	cJSON		*t;

	/* A set with no fields at all is fine. */
	ok("{\"op\":\"set\"}", &m);
	ck_assert_int_eq(m.op, MSG_SET);
	ck_assert_int_eq(m.has_fiber, 0);
	for (int f = 0; f < MSG_F_COUNT; f++)
		ck_assert_ptr_null(m.field[f]);
	msg_free(&m);

	ok("{\"op\":\"set\",\"fiber\":\"f\",\"tags\":{\"s\":\"v\",\"n\":1.5,"
	    "\"b\":true,\"z\":null},\"extra\":{\"deep\":{\"a\":[1,{}]}},"
	    "\"contexts\":{\"os\":{\"name\":\"linux\"},\"gone\":null},"
	    "\"user\":{\"id\":1},\"level\":\"warning\",\"transaction\":\"/x\","
	    "\"fingerprint\":[\"a\",\"b\"]}", &m);
	ck_assert_str_eq(m.fiber, "f");
	ck_assert(cJSON_IsObject(m.field[MSG_F_TAGS]));
	t = cJSON_GetObjectItemCaseSensitive(m.field[MSG_F_TAGS], "n");
	ck_assert(cJSON_IsNumber(t));
	ck_assert(cJSON_IsObject(m.field[MSG_F_EXTRA]));
	ck_assert(cJSON_IsObject(m.field[MSG_F_CONTEXTS]));
	ck_assert(cJSON_IsObject(m.field[MSG_F_USER]));
	ck_assert_str_eq(m.field[MSG_F_LEVEL]->valuestring, "warning");
	ck_assert_str_eq(m.field[MSG_F_TRANSACTION]->valuestring, "/x");
	ck_assert_int_eq(cJSON_GetArraySize(m.field[MSG_F_FINGERPRINT]), 2);
	msg_free(&m);

	/* null clears a whole field. */
	ok("{\"op\":\"set\",\"tags\":null,\"extra\":null,\"contexts\":null,"
	    "\"user\":null,\"level\":null,\"transaction\":null,"
	    "\"fingerprint\":null}", &m);
	for (int f = 0; f < MSG_F_COUNT; f++)
		ck_assert(cJSON_IsNull(m.field[f]));
	msg_free(&m);
	ok("{\"op\":\"set\",\"fingerprint\":[]}", &m);
	ck_assert(cJSON_IsArray(m.field[MSG_F_FINGERPRINT]));
	msg_free(&m);
}
END_TEST

START_TEST(test_set_bad)
{
	/* A tag value that is an object or an array. */
	bad("{\"op\":\"set\",\"tags\":{\"ok\":\"v\",\"k\":{}}}",
	    MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"set\",\"tags\":{\"k\":[1]}}", MSG_E_BAD_FIELD, NULL,
	    "tags");
	/* The message names the bad key. */
	bad("{\"op\":\"set\",\"tags\":{\"region\":{}}}", MSG_E_BAD_FIELD, NULL,
	    "region");
	bad("{\"op\":\"set\",\"tags\":[]}", MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"set\",\"tags\":\"a=b\"}", MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"set\",\"extra\":[1]}", MSG_E_BAD_FIELD, NULL, "extra");
	bad("{\"op\":\"set\",\"extra\":1}", MSG_E_BAD_FIELD, NULL, "extra");
	bad("{\"op\":\"set\",\"user\":\"bob\"}", MSG_E_BAD_FIELD, NULL, "user");
	bad("{\"op\":\"set\",\"contexts\":[]}", MSG_E_BAD_FIELD, NULL,
	    "contexts");
	bad("{\"op\":\"set\",\"contexts\":{\"os\":\"linux\"}}", MSG_E_BAD_FIELD,
	    NULL, "os");
	bad("{\"op\":\"set\",\"level\":1}", MSG_E_BAD_FIELD, NULL, "level");
	bad("{\"op\":\"set\",\"level\":{}}", MSG_E_BAD_FIELD, NULL, "level");
	bad("{\"op\":\"set\",\"transaction\":true}", MSG_E_BAD_FIELD, NULL,
	    "transaction");
	bad("{\"op\":\"set\",\"fingerprint\":\"a\"}", MSG_E_BAD_FIELD, NULL,
	    "fingerprint");
	bad("{\"op\":\"set\",\"fingerprint\":[\"a\",1]}", MSG_E_BAD_FIELD, NULL,
	    "fingerprint");
	bad("{\"op\":\"set\",\"fingerprint\":[null]}", MSG_E_BAD_FIELD, NULL,
	    "fingerprint");
}
END_TEST

START_TEST(test_crumb)
{
	struct msg	 m;

	ok("{\"op\":\"crumb\",\"fiber\":2,\"crumb\":{}}", &m);
	ck_assert_int_eq(m.op, MSG_CRUMB);
	ck_assert(cJSON_IsObject(m.crumb));
	ck_assert_str_eq(m.fiber, "2");
	msg_free(&m);
	ok("{\"op\":\"crumb\",\"crumb\":{\"message\":\"m\",\"category\":\"c\","
	    "\"level\":\"info\",\"type\":\"http\",\"data\":{\"u\":1},"
	    "\"timestamp\":1700000000.25,\"other\":[1]}}", &m);
	ck_assert_int_eq(m.has_fiber, 0);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(m.crumb,
	    "message")->valuestring, "m");
	msg_free(&m);
	ok("{\"op\":\"crumb\",\"crumb\":{\"timestamp\":"
	    "\"2024-01-01T00:00:00Z\"}}", &m);
	msg_free(&m);

	bad("{\"op\":\"crumb\"}", MSG_E_BAD_FIELD, NULL, "crumb");
	bad("{\"op\":\"crumb\",\"crumb\":\"x\"}", MSG_E_BAD_FIELD, NULL,
	    "crumb");
	bad("{\"op\":\"crumb\",\"crumb\":null}", MSG_E_BAD_FIELD, NULL,
	    "crumb");
	bad("{\"op\":\"crumb\",\"crumb\":{\"message\":1}}", MSG_E_BAD_FIELD,
	    NULL, "message");
	bad("{\"op\":\"crumb\",\"crumb\":{\"category\":[]}}", MSG_E_BAD_FIELD,
	    NULL, "category");
	bad("{\"op\":\"crumb\",\"crumb\":{\"level\":2}}", MSG_E_BAD_FIELD,
	    NULL, "level");
	bad("{\"op\":\"crumb\",\"crumb\":{\"type\":false}}", MSG_E_BAD_FIELD,
	    NULL, "type");
	bad("{\"op\":\"crumb\",\"crumb\":{\"data\":\"x\"}}", MSG_E_BAD_FIELD,
	    NULL, "data");
	bad("{\"op\":\"crumb\",\"crumb\":{\"timestamp\":true}}",
	    MSG_E_BAD_FIELD, NULL, "timestamp");
	bad("{\"op\":\"crumb\",\"crumb\":{\"timestamp\":1e999}}",
	    MSG_E_BAD_FIELD, NULL, "timestamp");
}
END_TEST

START_TEST(test_fork_end)
{
	struct msg	 m;

	ok("{\"op\":\"fork\",\"fiber\":1,\"from\":\"1\"}", &m);
	ck_assert_int_eq(m.op, MSG_FORK);
	ck_assert_int_eq(m.has_fiber, 1);
	ck_assert_int_eq(m.has_from, 1);
	ck_assert_str_eq(m.fiber, m.from);
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":\"x\"}", &m);
	ck_assert_int_eq(m.op, MSG_END);
	ck_assert_int_eq(m.has_from, 0);
	msg_free(&m);

	bad("{\"op\":\"fork\",\"fiber\":1}", MSG_E_BAD_FIELD, NULL, "from");
	bad("{\"op\":\"fork\",\"from\":1}", MSG_E_BAD_FIELD, NULL, "fiber");
	bad("{\"op\":\"fork\"}", MSG_E_BAD_FIELD, NULL, NULL);
	bad("{\"op\":\"end\"}", MSG_E_BAD_FIELD, NULL, "fiber");
}
END_TEST

START_TEST(test_event)
{
	struct msg	 m;

	ok("{\"op\":\"event\",\"event\":{}}", &m);
	ck_assert_int_eq(m.op, MSG_EVENT);
	ck_assert(cJSON_IsObject(m.event));
	ck_assert_int_eq(m.has_event_id, 0);
	msg_free(&m);

	/* event_id with dashes and capitals is normalised. */
	ok("{\"op\":\"event\",\"fiber\":\"w\",\"event\":{\"event_id\":"
	    "\"8F0C6D4E-1B2A-4C3D-9E8F-0A1B2C3D4E5F\",\"message\":\"boom\"}}",
	    &m);
	ck_assert_int_eq(m.has_event_id, 1);
	ck_assert_str_eq(m.event_id, "8f0c6d4e1b2a4c3d9e8f0a1b2c3d4e5f");
	ck_assert_str_eq(m.fiber, "w");
	msg_free(&m);

	ok("{\"op\":\"event\",\"event\":{\"tags\":{\"a\":\"b\",\"n\":2,"
	    "\"t\":false,\"z\":null},\"breadcrumbs\":[{\"message\":\"x\"}],"
	    "\"level\":\"fatal\",\"transaction\":\"t\",\"user\":{},"
	    "\"extra\":{},\"contexts\":{\"c\":{}},"
	    "\"exception\":{\"values\":[]}}}", &m);
	msg_free(&m);
	ok("{\"op\":\"event\",\"event\":{\"breadcrumbs\":{\"values\":[]}}}",
	    &m);
	msg_free(&m);

	/* Tags as a list of pairs, Sentry's other form. */
	ok("{\"op\":\"event\",\"event\":{\"tags\":[[\"a\",\"b\"],[\"n\",2]]}}",
	    &m);
	msg_free(&m);

	/* SDKs send null for members they do not have: that is absent. */
	ok("{\"op\":\"event\",\"event\":{\"event_id\":null,\"tags\":null,"
	    "\"breadcrumbs\":null,\"level\":null,\"transaction\":null,"
	    "\"user\":null,\"extra\":null,\"contexts\":null}}", &m);
	ck_assert_int_eq(m.has_event_id, 0);
	msg_free(&m);
}
END_TEST

START_TEST(test_event_bad)
{
	bad("{\"op\":\"event\"}", MSG_E_BAD_FIELD, NULL, "event");
	bad("{\"op\":\"event\",\"event\":\"boom\"}", MSG_E_BAD_FIELD, NULL,
	    "event");
	bad("{\"op\":\"event\",\"event\":[]}", MSG_E_BAD_FIELD, NULL, "event");
	/* event_id: 31, 33, non-hex, not a string. */
	bad("{\"op\":\"event\",\"event\":{\"event_id\":"
	    "\"0123456789abcdef0123456789abcde\"}}", MSG_E_BAD_FIELD, NULL,
	    "event_id");
	bad("{\"op\":\"event\",\"event\":{\"event_id\":"
	    "\"0123456789abcdef0123456789abcdef0\"}}", MSG_E_BAD_FIELD, NULL,
	    "event_id");
	bad("{\"op\":\"event\",\"event\":{\"event_id\":"
	    "\"0123456789abcdef0123456789abcdeg\"}}", MSG_E_BAD_FIELD, NULL,
	    "event_id");
	bad("{\"op\":\"event\",\"event\":{\"event_id\":12}}", MSG_E_BAD_FIELD,
	    NULL, "event_id");
	bad("{\"op\":\"event\",\"event\":{\"tags\":{\"k\":{}}}}",
	    MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"event\",\"event\":{\"tags\":{\"k\":[\"v\"]}}}",
	    MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"event\",\"event\":{\"tags\":\"k\"}}", MSG_E_BAD_FIELD,
	    NULL, "tags");
	bad("{\"op\":\"event\",\"event\":{\"tags\":[[\"k\"]]}}",
	    MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"event\",\"event\":{\"tags\":[[\"k\",{}]]}}",
	    MSG_E_BAD_FIELD, NULL, "tags");
	bad("{\"op\":\"event\",\"event\":{\"breadcrumbs\":\"x\"}}",
	    MSG_E_BAD_FIELD, NULL, "breadcrumbs");
	bad("{\"op\":\"event\",\"event\":{\"breadcrumbs\":{}}}",
	    MSG_E_BAD_FIELD, NULL, "breadcrumbs");
	bad("{\"op\":\"event\",\"event\":{\"breadcrumbs\":{\"values\":{}}}}",
	    MSG_E_BAD_FIELD, NULL, "breadcrumbs");
	bad("{\"op\":\"event\",\"event\":{\"level\":40}}", MSG_E_BAD_FIELD,
	    NULL, "level");
	bad("{\"op\":\"event\",\"event\":{\"transaction\":[]}}",
	    MSG_E_BAD_FIELD, NULL, "transaction");
	bad("{\"op\":\"event\",\"event\":{\"user\":\"bob\"}}", MSG_E_BAD_FIELD,
	    NULL, "user");
	bad("{\"op\":\"event\",\"event\":{\"extra\":[]}}", MSG_E_BAD_FIELD,
	    NULL, "extra");
	bad("{\"op\":\"event\",\"event\":{\"contexts\":1}}", MSG_E_BAD_FIELD,
	    NULL, "contexts");
}
END_TEST

START_TEST(test_unknown_fields_ignored)
{
	struct msg	 m;

	ok("{\"op\":\"end\",\"fiber\":\"a\",\"pid\":99,\"whatever\":{\"x\":[1,"
	    "{\"y\":null}]},\"app\":{}}", &m);
	ck_assert_int_eq(m.op, MSG_END);
	ck_assert_str_eq(m.fiber, "a");
	msg_free(&m);
	/* A field known to another op is not checked on this one. */
	ok("{\"op\":\"hello\",\"fiber\":{},\"tags\":7}", &m);
	ck_assert_int_eq(m.has_fiber, 0);
	msg_free(&m);
	ok("{\"op\":\"end\",\"fiber\":\"a\",\"tags\":{\"k\":{}}}", &m);
	ck_assert_ptr_null(m.field[MSG_F_TAGS]);
	msg_free(&m);
}
END_TEST

START_TEST(test_first_of_duplicates)
{
	struct msg	 m;

	/* Of two equal names the first counts, for text and numbers alike. */
	ok("{\"op\":\"end\",\"fiber\":5,\"fiber\":6}", &m);
	ck_assert_str_eq(m.fiber, "5");
	msg_free(&m);
	ok("{\"op\":\"end\",\"n\":1,\"fiber\":7,\"id\":3,\"fiber\":\"8\"}", &m);
	ck_assert_str_eq(m.fiber, "7");
	ck_assert_str_eq(m.id_json, "3");
	msg_free(&m);
}
END_TEST

/* ------------------------------------------------------------ reply */

static void
expect_reply(char *got, size_t len, const char *want)
{
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, want);
	ck_assert_uint_eq(len, strlen(want));
	free(got);
}

START_TEST(test_reply_ok)
{
	size_t	 len;
	char	*r;

	r = reply_ok("7", NULL, &len);
	expect_reply(r, len, "{\"id\":7,\"ok\":true}\n");
	r = reply_ok(NULL, NULL, &len);
	expect_reply(r, len, "{\"ok\":true}\n");
	r = reply_ok("\"a\"", "8f0c6d4e1b2a4c3d9e8f0a1b2c3d4e5f", &len);
	expect_reply(r, len, "{\"id\":\"a\",\"ok\":true,\"event_id\":"
	    "\"8f0c6d4e1b2a4c3d9e8f0a1b2c3d4e5f\"}\n");
	r = reply_ok(NULL, "0123456789abcdef0123456789abcdef", &len);
	expect_reply(r, len, "{\"ok\":true,\"event_id\":"
	    "\"0123456789abcdef0123456789abcdef\"}\n");
	r = reply_ok("-9007199254740992", NULL, NULL);	/* len is optional */
	ck_assert_str_eq(r, "{\"id\":-9007199254740992,\"ok\":true}\n");
	free(r);
}
END_TEST

START_TEST(test_reply_error)
{
	size_t	 len;
	char	*r;

	r = reply_error("7", 3, MSG_E_BAD_OP, "unknown op", &len);
	expect_reply(r, len, "{\"id\":7,\"ok\":false,\"error\":\"bad_op\","
	    "\"message\":\"unknown op\"}\n");
	r = reply_error(NULL, 12, MSG_E_BAD_JSON, "invalid JSON", &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"bad_json\","
	    "\"message\":\"invalid JSON\",\"line\":12}\n");
	r = reply_error(NULL, UINT64_MAX, MSG_E_LINE_TOO_LONG, "too long",
	    &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"line_too_long\","
	    "\"message\":\"too long\",\"line\":18446744073709551615}\n");
	r = reply_error("\"r-1\"", 1, MSG_E_SPOOL_FULL, "spool full", &len);
	expect_reply(r, len, "{\"id\":\"r-1\",\"ok\":false,\"error\":"
	    "\"spool_full\",\"message\":\"spool full\"}\n");
	r = reply_error("1", 1, MSG_E_TOO_LARGE, "", &len);
	expect_reply(r, len, "{\"id\":1,\"ok\":false,\"error\":\"too_large\","
	    "\"message\":\"\"}\n");
	r = reply_error(NULL, 4, MSG_E_SHUTTING_DOWN, NULL, &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"shutting_down\","
	    "\"message\":\"\",\"line\":4}\n");
	r = reply_error("2", 9, MSG_E_BAD_FIELD, "x", &len);
	expect_reply(r, len, "{\"id\":2,\"ok\":false,\"error\":\"bad_field\","
	    "\"message\":\"x\"}\n");
}
END_TEST

START_TEST(test_reply_escaping)
{
	size_t	 len;
	char	*r;
	cJSON	*j;

	r = reply_error(NULL, 1, MSG_E_BAD_FIELD,
	    "q\"b\\s/\n\r\t\b\f\x01\x1f \xc3\xa9", &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"bad_field\","
	    "\"message\":\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f "
	    "\xc3\xa9\",\"line\":1}\n");
	/* Bytes that are not UTF-8 become U+FFFD. */
	r = reply_error(NULL, 2, MSG_E_BAD_JSON, "a\xff" "b\xc3", &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"bad_json\","
	    "\"message\":\"a\\ufffdb\\ufffd\",\"line\":2}\n");
	r = reply_error(NULL, 3, MSG_E_BAD_JSON, "\xed\xa0\x80", &len);
	expect_reply(r, len, "{\"ok\":false,\"error\":\"bad_json\","
	    "\"message\":\"\\ufffd\\ufffd\\ufffd\",\"line\":3}\n");
	/* And the result is JSON that reads back to the same text. */
	r = reply_error("\"i\"", 1, MSG_E_BAD_OP, "x\"\\\n\x02y", &len);
	j = cJSON_ParseWithLength(r, len);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(cJSON_GetObjectItem(j, "message")->valuestring,
	    "x\"\\\n\x02y");
	ck_assert_str_eq(cJSON_GetObjectItem(j, "id")->valuestring, "i");
	cJSON_Delete(j);
	free(r);
}
END_TEST

START_TEST(test_reply_from_parse)
{
	struct msg	 m;
	struct msg_error e;
	size_t		 len;
	char		*r;

	/* The id a parse failure carries goes straight into the reply. */
	ck_assert_int_eq(parse("{\"id\":\"a\\\"b\",\"op\":\"no\"}", &m, &e),
	    -1);
	r = reply_error(e.id_json, 5, e.code, "m", &len);
	expect_reply(r, len, "{\"id\":\"a\\\"b\",\"ok\":false,\"error\":"
	    "\"bad_op\",\"message\":\"m\"}\n");
	msg_error_free(&e);

	ok("{\"id\":42,\"op\":\"event\",\"event\":{\"event_id\":"
	    "\"ABCDEF01-2345-6789-ABCD-EF0123456789\"}}", &m);
	r = reply_ok(m.id_json, m.event_id, &len);
	expect_reply(r, len, "{\"id\":42,\"ok\":true,\"event_id\":"
	    "\"abcdef0123456789abcdef0123456789\"}\n");
	msg_free(&m);
}
END_TEST

static Suite *
msg_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("msg");

	tc = tcase_create("names");
	tcase_add_test(tc, test_err_names);
	tcase_add_test(tc, test_op_field_names);
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_event_id_normalise);
	suite_add_tcase(s, tc);

	tc = tcase_create("bad_json");
	tcase_add_test(tc, test_bad_json);
	tcase_add_test(tc, test_bad_json_strict);
	tcase_add_test(tc, test_top_level_not_object);
	tcase_add_test(tc, test_invalid_utf8);
	tcase_add_test(tc, test_nesting);
	tcase_add_test(tc, test_nesting_arrays);
	tcase_add_test(tc, test_whitespace_around);
	suite_add_tcase(s, tc);

	tc = tcase_create("bad_op");
	tcase_add_test(tc, test_bad_op);
	tcase_add_test(tc, test_case_sensitive_fields);
	suite_add_tcase(s, tc);

	tc = tcase_create("id");
	tcase_add_test(tc, test_id_valid);
	tcase_add_test(tc, test_id_invalid_not_echoed);
	tcase_add_test(tc, test_id_echoed_on_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_test(tc, test_fiber);
	tcase_add_test(tc, test_fiber_bad);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_set_bad);
	tcase_add_test(tc, test_crumb);
	tcase_add_test(tc, test_fork_end);
	tcase_add_test(tc, test_event);
	tcase_add_test(tc, test_event_bad);
	tcase_add_test(tc, test_unknown_fields_ignored);
	tcase_add_test(tc, test_first_of_duplicates);
	suite_add_tcase(s, tc);

	tc = tcase_create("reply");
	tcase_add_test(tc, test_reply_ok);
	tcase_add_test(tc, test_reply_error);
	tcase_add_test(tc, test_reply_escaping);
	tcase_add_test(tc, test_reply_from_parse);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return check_run(msg_suite());
}
