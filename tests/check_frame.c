/*
 * check_frame.c -- unit tests for proto/frame.c, the newline framing.
 *
 * Besides hand-written cases, a reference model (split the whole input on
 * '\n' and judge each line by its length) is compared with the push
 * parser fed the same bytes in random-sized pieces.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "proto/frame.h"
#include "tests/check_run.h"

/* One item as the tests record it. */
struct item {
	enum frame_kind	 kind;
	char		*text;		/* FRAME_LINE only */
	size_t		 len;
	uint64_t	 lineno;
};

struct items {
	struct item	*v;
	size_t		 n;
	size_t		 cap;
};

static void
items_add(struct items *it, enum frame_kind kind, const char *text,
    size_t len, uint64_t lineno)
{
	struct item	*x;

	if (it->n == it->cap) {
		it->cap = it->cap == 0 ? 16 : it->cap * 2;
		it->v = realloc(it->v, it->cap * sizeof *it->v);
		ck_assert_ptr_nonnull(it->v);
	}
	x = &it->v[it->n++];
	x->kind = kind;
	x->len = len;
	x->lineno = lineno;
	x->text = NULL;
	if (kind == FRAME_LINE) {
		x->text = malloc(len + 1);
		ck_assert_ptr_nonnull(x->text);
		memcpy(x->text, text, len);
		x->text[len] = '\0';
	}
}

static void
items_free(struct items *it)
{
	size_t	 i;

	for (i = 0; i < it->n; i++)
		free(it->v[i].text);
	free(it->v);
	memset(it, 0, sizeof *it);
}

/* Pull every item frame_next has, into it. */
static void
drain(struct frame *f, struct items *it)
{
	enum frame_kind	 k;
	const char	*line;
	size_t		 len;
	uint64_t	 no;

	while ((k = frame_next(f, &line, &len, &no)) != FRAME_NONE)
		items_add(it, k, line, len, no);
}

/* Drain, then collect what frame_finish gives at end of input. */
static void
finish(struct frame *f, struct items *it)
{
	enum frame_kind	 k;
	const char	*line;
	size_t		 len;
	uint64_t	 no;

	drain(f, it);
	while ((k = frame_finish(f, &line, &len, &no)) != FRAME_NONE)
		items_add(it, k, line, len, no);
}

static void
expect_line(const struct items *it, size_t i, const char *text, uint64_t no)
{
	ck_assert_uint_lt(i, it->n);
	ck_assert_int_eq(it->v[i].kind, FRAME_LINE);
	ck_assert_uint_eq(it->v[i].len, strlen(text));
	ck_assert_mem_eq(it->v[i].text, text, strlen(text));
	ck_assert_uint_eq(it->v[i].lineno, no);
}

static void
expect_too_long(const struct items *it, size_t i, uint64_t no)
{
	ck_assert_uint_lt(i, it->n);
	ck_assert_int_eq(it->v[i].kind, FRAME_TOO_LONG);
	ck_assert_uint_eq(it->v[i].lineno, no);
}

START_TEST(test_whole_lines)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const char	*in = "{\"op\":\"end\"}\nsecond\n";

	frame_init(&f, 100);
	frame_push(&f, in, strlen(in));
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	expect_line(&it, 0, "{\"op\":\"end\"}", 1);
	expect_line(&it, 1, "second", 2);
	ck_assert_uint_eq(frame_buffered(&f), 0);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_byte_by_byte)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const char	*in = "ab\ncd\r\n\n\nxyz\n";
	size_t		 i;

	frame_init(&f, 100);
	for (i = 0; i < strlen(in); i++) {
		frame_push(&f, in + i, 1);
		drain(&f, &it);
	}
	ck_assert_uint_eq(it.n, 5);
	expect_line(&it, 0, "ab", 1);
	expect_line(&it, 1, "cd\r", 2);		/* CR kept */
	expect_line(&it, 2, "", 3);		/* blank lines count */
	expect_line(&it, 3, "", 4);
	expect_line(&it, 4, "xyz", 5);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_none_until_newline)
{
	struct frame	 f;
	const char	*line;
	size_t		 len;
	uint64_t	 no;

	frame_init(&f, 100);
	ck_assert_int_eq(frame_next(&f, &line, &len, &no), FRAME_NONE);
	frame_push(&f, "abc", 3);
	ck_assert_int_eq(frame_next(&f, &line, &len, &no), FRAME_NONE);
	ck_assert_uint_eq(frame_buffered(&f), 3);
	frame_push(&f, "d\n", 2);
	ck_assert_int_eq(frame_next(&f, &line, &len, &no), FRAME_LINE);
	ck_assert_uint_eq(len, 4);
	ck_assert_mem_eq(line, "abcd", 4);
	ck_assert_uint_eq(no, 1);
	ck_assert_int_eq(frame_next(&f, &line, &len, &no), FRAME_NONE);
	frame_free(&f);
}
END_TEST

START_TEST(test_exact_limit)
{
	struct frame	 f;
	struct items	 it = { 0 };

	frame_init(&f, 8);
	frame_push(&f, "12345678\n", 9);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 1);
	expect_line(&it, 0, "12345678", 1);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_exact_limit_unterminated)
{
	struct frame	 f;
	struct items	 it = { 0 };

	/* max_line bytes with no newline yet is not too long. */
	frame_init(&f, 8);
	frame_push(&f, "12345678", 8);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 0);
	frame_push(&f, "\r", 1);		/* the CR counts: 9 bytes */
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 1);
	expect_too_long(&it, 0, 1);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_limit_plus_one)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const char	*in = "123456789\nok\n";

	frame_init(&f, 8);
	frame_push(&f, in, strlen(in));
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	expect_too_long(&it, 0, 1);
	expect_line(&it, 1, "ok", 2);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_too_long_before_newline)
{
	struct frame	 f;
	struct items	 it = { 0 };

	/* Reported as soon as the line passes the limit, and only once. */
	frame_init(&f, 4);
	frame_push(&f, "a\n", 2);
	frame_push(&f, "12345", 5);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	expect_line(&it, 0, "a", 1);
	expect_too_long(&it, 1, 2);
	frame_push(&f, "6789", 4);
	frame_push(&f, "0123", 4);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	frame_push(&f, "45\n\nlast\n", 9);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 4);
	expect_line(&it, 2, "", 3);
	expect_line(&it, 3, "last", 4);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_huge_line_bounded)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const size_t	 max = 1024 * 1024, chunk = 4096;
	const size_t	 total = 10 * 1024 * 1024;
	char		*buf;
	size_t		 sent = 0, n;

	buf = malloc(chunk);
	ck_assert_ptr_nonnull(buf);
	memset(buf, 'x', chunk);
	frame_init(&f, max);
	frame_push(&f, "before\n", 7);
	while (sent < total) {
		n = total - sent < chunk ? total - sent : chunk;
		frame_push(&f, buf, n);
		ck_assert_uint_le(frame_buffered(&f), max + chunk);
		drain(&f, &it);
		ck_assert_uint_le(frame_buffered(&f), max);
		sent += n;
	}
	/* The allocation stays near the limit too. */
	ck_assert_uint_le(f.cap, 2 * (max + chunk) + 1);
	frame_push(&f, "tail of it\nafter\n", 17);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 3);
	expect_line(&it, 0, "before", 1);
	expect_too_long(&it, 1, 2);
	expect_line(&it, 2, "after", 3);
	items_free(&it);
	free(buf);
	frame_free(&f);
}
END_TEST

START_TEST(test_huge_line_undrained)
{
	struct frame	 f;
	struct items	 it = { 0 };
	char		 buf[1000];
	int		 i;

	/*
	 * Once skipping, pushes are dropped at once even if the caller does
	 * not call frame_next in between.
	 */
	memset(buf, 'y', sizeof buf);
	frame_init(&f, 100);
	frame_push(&f, buf, sizeof buf);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 1);
	expect_too_long(&it, 0, 1);
	for (i = 0; i < 1000; i++)
		frame_push(&f, buf, sizeof buf);
	ck_assert_uint_eq(frame_buffered(&f), 0);
	frame_push(&f, "\nz\n", 3);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	expect_line(&it, 1, "z", 2);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_linear_scan)
{
	struct frame	 f;
	const char	*line;
	size_t		 len, i, bad = 0;
	uint64_t	 no;
	const size_t	 n = 256 * 1024;

	/*
	 * A long line arriving byte by byte: after each FRAME_NONE the
	 * parser has recorded that everything buffered is free of '\n', so
	 * it never searches those bytes again.
	 */
	frame_init(&f, n);
	for (i = 0; i < n; i++) {
		frame_push(&f, "q", 1);
		if (frame_next(&f, &line, &len, &no) != FRAME_NONE ||
		    f.scan != frame_buffered(&f))
			bad++;
	}
	ck_assert_uint_eq(bad, 0);
	frame_push(&f, "\n", 1);
	ck_assert_int_eq(frame_next(&f, &line, &len, &no), FRAME_LINE);
	ck_assert_uint_eq(len, n);
	ck_assert_uint_eq(no, 1);
	ck_assert_int_eq(line[0], 'q');
	ck_assert_int_eq(line[n - 1], 'q');
	frame_free(&f);
}
END_TEST

START_TEST(test_finish_unterminated)
{
	struct frame	 f;
	struct items	 it = { 0 };

	frame_init(&f, 100);
	frame_push(&f, "a\n\nlast", 7);
	finish(&f, &it);
	ck_assert_uint_eq(it.n, 3);
	expect_line(&it, 0, "a", 1);
	expect_line(&it, 1, "", 2);
	expect_line(&it, 2, "last", 3);
	ck_assert_uint_eq(frame_buffered(&f), 0);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_finish_nothing)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const char	*line;
	size_t		 len;
	uint64_t	 no;

	frame_init(&f, 100);
	ck_assert_int_eq(frame_finish(&f, &line, &len, &no), FRAME_NONE);
	frame_push(&f, "x\n", 2);
	finish(&f, &it);
	ck_assert_uint_eq(it.n, 1);
	expect_line(&it, 0, "x", 1);
	ck_assert_int_eq(frame_finish(&f, &line, &len, &no), FRAME_NONE);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_finish_while_skipping)
{
	struct frame	 f;
	struct items	 it = { 0 };

	frame_init(&f, 3);
	frame_push(&f, "ok\nlonger", 9);
	finish(&f, &it);
	ck_assert_uint_eq(it.n, 2);
	expect_line(&it, 0, "ok", 1);
	expect_too_long(&it, 1, 2);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_finish_after_lines_pending)
{
	struct frame	 f;
	struct items	 it = { 0 };
	const char	*line;
	size_t		 len;
	uint64_t	 no;

	/* Called without draining first, frame_finish still keeps order. */
	frame_init(&f, 100);
	frame_push(&f, "one\ntwo", 7);
	while (frame_finish(&f, &line, &len, &no) != FRAME_NONE)
		items_add(&it, FRAME_LINE, line, len, no);
	ck_assert_uint_eq(it.n, 2);
	expect_line(&it, 0, "one", 1);
	expect_line(&it, 1, "two", 2);
	items_free(&it);
	frame_free(&f);
}
END_TEST

START_TEST(test_reuse_after_big_line)
{
	struct frame	 f;
	struct items	 it = { 0 };
	char		*big;
	const size_t	 n = 200 * 1024;

	/* A buffer grown for one big line is released once it is empty. */
	big = malloc(n + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'b', n);
	big[n] = '\n';
	frame_init(&f, n);
	frame_push(&f, big, n + 1);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 1);
	ck_assert_uint_eq(it.v[0].len, n);
	frame_push(&f, "s\n", 2);
	ck_assert_uint_le(f.cap, 64 * 1024);
	drain(&f, &it);
	expect_line(&it, 1, "s", 2);
	items_free(&it);
	free(big);
	frame_free(&f);
}
END_TEST

START_TEST(test_zero_limit)
{
	struct frame	 f;
	struct items	 it = { 0 };

	frame_init(&f, 0);
	frame_push(&f, "\nx\n\n", 4);
	drain(&f, &it);
	ck_assert_uint_eq(it.n, 3);
	expect_line(&it, 0, "", 1);
	expect_too_long(&it, 1, 2);
	expect_line(&it, 2, "", 3);
	items_free(&it);
	frame_free(&f);
}
END_TEST

/* xorshift64: a fixed, reproducible sequence. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The reference: split the whole input on '\n', judge each line. */
static void
model(const char *in, size_t n, size_t max, struct items *it)
{
	size_t		 start = 0, i;
	uint64_t	 no = 0;

	for (i = 0; i < n; i++) {
		if (in[i] != '\n')
			continue;
		no++;
		if (i - start > max)
			items_add(it, FRAME_TOO_LONG, NULL, 0, no);
		else
			items_add(it, FRAME_LINE, in + start, i - start, no);
		start = i + 1;
	}
	if (start < n) {
		no++;
		if (n - start > max)
			items_add(it, FRAME_TOO_LONG, NULL, 0, no);
		else
			items_add(it, FRAME_LINE, in + start, n - start, no);
	}
}

/* One random input, pushed in random pieces, against the model. */
static void
random_round(uint64_t seed)
{
	static const char	 alphabet[] = "ab\n\n\r{}";
	struct frame		 f;
	struct items		 got = { 0 }, want = { 0 };
	char			 in[4000];
	size_t			 n, max, off, k, i, since = 0;

	n = rnd(&seed) % sizeof in;
	for (i = 0; i < n; i++) {
		/* Runs of letters, so that some lines get long. */
		if (rnd(&seed) % 8 == 0)
			in[i] = alphabet[rnd(&seed) % (sizeof alphabet - 1)];
		else
			in[i] = 'x';
	}
	max = rnd(&seed) % 24;
	model(in, n, max, &want);

	frame_init(&f, max);
	for (off = 0; off < n; off += k) {
		k = 1 + rnd(&seed) % 40;
		if (k > n - off)
			k = n - off;
		frame_push(&f, in + off, k);
		since += k;
		/* Drained, at most max bytes stay; then pushes add to it. */
		ck_assert_uint_le(frame_buffered(&f), max + since);
		if (rnd(&seed) % 3 != 0) {
			drain(&f, &got);
			ck_assert_uint_le(frame_buffered(&f), max);
			since = 0;
		}
	}
	finish(&f, &got);

	ck_assert_uint_eq(got.n, want.n);
	for (i = 0; i < want.n; i++) {
		ck_assert_int_eq(got.v[i].kind, want.v[i].kind);
		ck_assert_uint_eq(got.v[i].lineno, want.v[i].lineno);
		ck_assert_uint_eq(got.v[i].len, want.v[i].len);
		if (want.v[i].kind == FRAME_LINE)
			ck_assert_mem_eq(got.v[i].text, want.v[i].text,
			    want.v[i].len);
	}
	items_free(&got);
	items_free(&want);
	frame_free(&f);
}

START_TEST(test_random_against_model)
{
	uint64_t	 i;

	for (i = 1; i <= 300; i++)
		random_round(0x9e3779b97f4a7c15ULL * i);
}
END_TEST

static Suite *
frame_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("frame");

	tc = tcase_create("lines");
	tcase_add_test(tc, test_whole_lines);
	tcase_add_test(tc, test_byte_by_byte);
	tcase_add_test(tc, test_none_until_newline);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_test(tc, test_exact_limit);
	tcase_add_test(tc, test_exact_limit_unterminated);
	tcase_add_test(tc, test_limit_plus_one);
	tcase_add_test(tc, test_too_long_before_newline);
	tcase_add_test(tc, test_zero_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_test(tc, test_huge_line_bounded);
	tcase_add_test(tc, test_huge_line_undrained);
	tcase_add_test(tc, test_linear_scan);
	tcase_add_test(tc, test_reuse_after_big_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("finish");
	tcase_add_test(tc, test_finish_unterminated);
	tcase_add_test(tc, test_finish_nothing);
	tcase_add_test(tc, test_finish_while_skipping);
	tcase_add_test(tc, test_finish_after_lines_pending);
	suite_add_tcase(s, tc);

	tc = tcase_create("model");
	tcase_add_test(tc, test_random_against_model);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return check_run(frame_suite());
}
