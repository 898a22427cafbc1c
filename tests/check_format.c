/*
 * check_format.c -- tests for daemon/format.c: NDJSON bodies, Sentry
 * envelopes, RFC 3339 times and gzip (checked by inflating with zlib).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>
#include <zlib.h>

#include "daemon/format.h"
#include "tests/check_run.h"

START_TEST(test_rfc3339)
{
	char	out[32];

	format_rfc3339(0, out);
	ck_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
	format_rfc3339(1700000000.5, out);
	ck_assert_str_eq(out, "2023-11-14T22:13:20.500Z");
	/* 2000-02-29 (a leap day) 12:00:00 UTC is 951825600. */
	format_rfc3339(951825600.123, out);
	ck_assert_str_eq(out, "2000-02-29T12:00:00.123Z");
	/* 59.9996 s rounds up into the next minute. */
	format_rfc3339(59.9996, out);
	ck_assert_str_eq(out, "1970-01-01T00:01:00.000Z");
}
END_TEST

START_TEST(test_ndjson)
{
	const char	*bodies[] = { "{\"a\":1}", "{\"b\":2}", "{}" };
	size_t		 lens[3], len, i, nl = 0;
	char		*out;

	for (i = 0; i < 3; i++)
		lens[i] = strlen(bodies[i]);
	out = format_ndjson(bodies, lens, 3, &len);
	ck_assert_uint_eq(len, 7 + 1 + 7 + 1 + 2 + 1);
	ck_assert_str_eq(out, "{\"a\":1}\n{\"b\":2}\n{}\n");
	for (i = 0; i < len; i++)
		nl += out[i] == '\n';
	ck_assert_uint_eq(nl, 3);
	free(out);

	out = format_ndjson(NULL, NULL, 0, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, 0);
	free(out);
}
END_TEST

START_TEST(test_envelope)
{
	const char	*id = "0123456789abcdef0123456789abcdef";
	const char	*body = "{\"message\":\"h\\u00e9llo\",\"x\":\"\xc3\xa9\"}";
	char		*out, *nl1, *nl2, *line;
	size_t		 len, blen = strlen(body);
	cJSON		*hdr, *item, *v;

	out = format_envelope(id, body, blen, 1700000000.5, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), len);
	/* Three lines: header, item header, payload; ends with '\n'. */
	ck_assert_int_eq(out[len - 1], '\n');
	nl1 = strchr(out, '\n');
	ck_assert_ptr_nonnull(nl1);
	nl2 = strchr(nl1 + 1, '\n');
	ck_assert_ptr_nonnull(nl2);
	ck_assert_ptr_eq(strchr(nl2 + 1, '\n'), out + len - 1);

	line = strndup(out, (size_t)(nl1 - out));
	hdr = cJSON_Parse(line);
	free(line);
	ck_assert_ptr_nonnull(hdr);
	v = cJSON_GetObjectItemCaseSensitive(hdr, "event_id");
	ck_assert(cJSON_IsString(v));
	ck_assert_str_eq(v->valuestring, id);
	v = cJSON_GetObjectItemCaseSensitive(hdr, "sent_at");
	ck_assert(cJSON_IsString(v));
	ck_assert_str_eq(v->valuestring, "2023-11-14T22:13:20.500Z");
	cJSON_Delete(hdr);

	line = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
	item = cJSON_Parse(line);
	free(line);
	ck_assert_ptr_nonnull(item);
	v = cJSON_GetObjectItemCaseSensitive(item, "type");
	ck_assert(cJSON_IsString(v));
	ck_assert_str_eq(v->valuestring, "event");
	v = cJSON_GetObjectItemCaseSensitive(item, "length");
	ck_assert(cJSON_IsNumber(v));
	/* The length is in bytes (the é is two), and matches the payload. */
	ck_assert_int_eq(v->valueint, (int)blen);
	ck_assert_int_eq(v->valueint, (int)(out + len - 1 - (nl2 + 1)));
	cJSON_Delete(item);

	ck_assert_int_eq(memcmp(nl2 + 1, body, blen), 0);
	free(out);
}
END_TEST

/* Inflate a gzip stream with zlib; returns a new buffer or NULL. */
static char *
gunzip(const char *in, size_t len, size_t *outlen)
{
	z_stream	 zs;
	size_t		 cap = 1024;
	char		*out = malloc(cap);
	int		 rc;

	memset(&zs, 0, sizeof zs);
	if (out == NULL || inflateInit2(&zs, 15 + 16) != Z_OK) {
		free(out);
		return NULL;
	}
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	do {
		if (zs.total_out == cap) {
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		zs.next_out = (Bytef *)out + zs.total_out;
		zs.avail_out = (uInt)(cap - zs.total_out);
		rc = inflate(&zs, Z_NO_FLUSH);
	} while (rc == Z_OK);
	*outlen = zs.total_out;
	inflateEnd(&zs);
	if (rc != Z_STREAM_END) {
		free(out);
		return NULL;
	}
	return out;
}

START_TEST(test_gzip)
{
	char	*in, *z, *back;
	size_t	 n = 200000, zlen, blen, i;

	in = malloc(n);
	ck_assert_ptr_nonnull(in);
	for (i = 0; i < n; i++)
		in[i] = (char)("{\"event\":1}\n"[i % 12] + (i % 7 == 0));
	z = format_gzip(in, n, &zlen);
	ck_assert_ptr_nonnull(z);
	/* The gzip magic, and smaller than the input. */
	ck_assert_int_eq((unsigned char)z[0], 0x1f);
	ck_assert_int_eq((unsigned char)z[1], 0x8b);
	ck_assert_uint_lt(zlen, n);
	back = gunzip(z, zlen, &blen);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(blen, n);
	ck_assert_int_eq(memcmp(back, in, n), 0);
	free(back);
	free(z);
	free(in);

	/* Empty input is a valid, empty gzip stream. */
	z = format_gzip("", 0, &zlen);
	ck_assert_ptr_nonnull(z);
	back = gunzip(z, zlen, &blen);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(blen, 0);
	free(back);
	free(z);
}
END_TEST

START_TEST(test_gzip_incompressible)
{
	char		*in, *z, *back;
	size_t		 n = 65536, zlen, blen, i;
	uint32_t	 x = 2463534242u;

	in = malloc(n);
	ck_assert_ptr_nonnull(in);
	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		in[i] = (char)x;
	}
	z = format_gzip(in, n, &zlen);
	ck_assert_ptr_nonnull(z);
	back = gunzip(z, zlen, &blen);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(blen, n);
	ck_assert_int_eq(memcmp(back, in, n), 0);
	free(back);
	free(z);
	free(in);
}
END_TEST

static Suite *
format_suite(void)
{
	Suite	*s = suite_create("format");
	TCase	*tc;

	tc = tcase_create("time");
	tcase_add_test(tc, test_rfc3339);
	suite_add_tcase(s, tc);

	tc = tcase_create("bodies");
	tcase_add_test(tc, test_ndjson);
	tcase_add_test(tc, test_envelope);
	suite_add_tcase(s, tc);

	tc = tcase_create("gzip");
	tcase_add_test(tc, test_gzip);
	tcase_add_test(tc, test_gzip_incompressible);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(format_suite());
}
