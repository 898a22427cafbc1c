/*
 * check_dsn.c -- tests for daemon/dsn.c: Sentry DSNs parsed as the SDKs
 * parse them, the envelope URL, the redacted form and the auth header.
 * Keys must never show up in a cause or in the redacted form.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "daemon/dsn.h"
#include "tests/check_run.h"

START_TEST(test_plain)
{
	struct dsn	 d;
	char		*cause = NULL;

	ck_assert_int_eq(dsn_parse("https://abc123@o1.ingest.sentry.io/42",
	    &d, &cause), 0);
	ck_assert_ptr_null(cause);
	ck_assert_int_eq(d.set, 1);
	ck_assert_str_eq(d.scheme, "https");
	ck_assert_str_eq(d.public_key, "abc123");
	ck_assert_ptr_null(d.secret_key);
	ck_assert_str_eq(d.host, "o1.ingest.sentry.io");
	ck_assert_str_eq(d.path, "");
	ck_assert_str_eq(d.project_id, "42");
	ck_assert_str_eq(d.envelope_url,
	    "https://o1.ingest.sentry.io/api/42/envelope/");
	ck_assert_str_eq(d.redacted, "https://o1.ingest.sentry.io/42");
	dsn_free(&d);
	ck_assert_int_eq(d.set, 0);
	ck_assert_ptr_null(d.public_key);
}
END_TEST

START_TEST(test_secret_port_prefix)
{
	struct dsn	 d;
	char		*cause = NULL;

	ck_assert_int_eq(dsn_parse(
	    "http://pub:sec@sentry.local:9000/sub/path/7", &d, &cause), 0);
	ck_assert_str_eq(d.scheme, "http");
	ck_assert_str_eq(d.public_key, "pub");
	ck_assert_str_eq(d.secret_key, "sec");
	ck_assert_str_eq(d.host, "sentry.local:9000");
	ck_assert_str_eq(d.path, "/sub/path");
	ck_assert_str_eq(d.project_id, "7");
	ck_assert_str_eq(d.envelope_url,
	    "http://sentry.local:9000/sub/path/api/7/envelope/");
	ck_assert_str_eq(d.redacted, "http://sentry.local:9000/sub/path/7");
	ck_assert_ptr_null(strstr(d.redacted, "pub"));
	ck_assert_ptr_null(strstr(d.redacted, "sec"));
	dsn_free(&d);
}
END_TEST

START_TEST(test_trailing_slash_and_query)
{
	struct dsn	 d;

	ck_assert_int_eq(dsn_parse("https://k@h.example/12/", &d, NULL), 0);
	ck_assert_str_eq(d.project_id, "12");
	ck_assert_str_eq(d.path, "");
	ck_assert_str_eq(d.envelope_url, "https://h.example/api/12/envelope/");
	dsn_free(&d);

	/* A query is ignored, as the SDKs ignore it. */
	ck_assert_int_eq(dsn_parse("https://k@h.example/p/12?x=1", &d, NULL),
	    0);
	ck_assert_str_eq(d.project_id, "12");
	ck_assert_str_eq(d.path, "/p");
	dsn_free(&d);

	/* Non-numeric project ids (slugs) are accepted. */
	ck_assert_int_eq(dsn_parse("HTTPS://k@h/my-proj_1", &d, NULL), 0);
	ck_assert_str_eq(d.scheme, "https");
	ck_assert_str_eq(d.project_id, "my-proj_1");
	dsn_free(&d);

	/* IPv6 literal with a port. */
	ck_assert_int_eq(dsn_parse("http://k@[::1]:9000/3", &d, NULL), 0);
	ck_assert_str_eq(d.host, "[::1]:9000");
	ck_assert_str_eq(d.envelope_url, "http://[::1]:9000/api/3/envelope/");
	dsn_free(&d);
}
END_TEST

/* Each bad DSN fails, with a cause that does not contain the key. */
static const struct {
	const char	*dsn;
	const char	*want;	/* substring of the cause */
} bad[] = {
	{ "", "empty" },
	{ "SECRETKEY", "not a URL" },
	{ "ftp://SECRETKEY@h/1", "scheme" },
	{ "httpx://SECRETKEY@h/1", "scheme" },
	{ "https://h.example/1", "public key" },
	{ "https://@h.example/1", "public key" },
	{ "https://:SECRETKEY@h.example/1", "public key" },
	{ "https://SECRETKEY@/1", "host" },
	{ "https://SECRETKEY@h.example", "project id" },
	{ "https://SECRETKEY@h.example/", "project id" },
	{ "https://SECRETKEY@h.example:0/1", "port" },
	{ "https://SECRETKEY@h.example:70000/1", "port" },
	{ "https://SECRETKEY@h.example:x/1", "port" },
	{ "https://SECRETKEY@h.example/1.5", "project id" },
	{ "https://SECR ETKEY@h.example/1", "public key" },
	{ "https://SECRETKEY@h ost/1", "host" },
};

START_TEST(test_bad)
{
	struct dsn	 d;
	char		*cause = NULL;

	ck_assert_int_eq(dsn_parse(bad[_i].dsn, &d, &cause), -1);
	ck_assert_ptr_nonnull(cause);
	ck_assert_msg(strstr(cause, bad[_i].want) != NULL,
	    "\"%s\": cause \"%s\" lacks \"%s\"", bad[_i].dsn, cause,
	    bad[_i].want);
	ck_assert_ptr_null(strstr(cause, "SECRETKEY"));
	ck_assert_ptr_null(strstr(cause, "ETKEY"));
	ck_assert_int_eq(d.set, 0);
	free(cause);
}
END_TEST

START_TEST(test_auth_header)
{
	struct dsn	 d;
	char		*h;

	ck_assert_int_eq(dsn_parse("https://pubkey@h/1", &d, NULL), 0);
	h = dsn_auth_header(&d, "errrelay/9.9", 1700000000.0);
	ck_assert_str_eq(h, "Sentry sentry_version=7, "
	    "sentry_client=errrelay/9.9, sentry_key=pubkey");
	free(h);
	h = dsn_auth_header(&d, NULL, 0);
	ck_assert_msg(strncmp(h, "Sentry sentry_version=7, "
	    "sentry_client=errrelay/", 48) == 0, "%s", h);
	ck_assert_ptr_nonnull(strstr(h, ", sentry_key=pubkey"));
	ck_assert_ptr_null(strstr(h, "sentry_secret"));
	free(h);
	dsn_free(&d);

	ck_assert_int_eq(dsn_parse("https://pubkey:seckey@h/1", &d, NULL), 0);
	h = dsn_auth_header(&d, "c/1", 0);
	ck_assert_str_eq(h, "Sentry sentry_version=7, sentry_client=c/1, "
	    "sentry_key=pubkey, sentry_secret=seckey");
	free(h);
	dsn_free(&d);
}
END_TEST

START_TEST(test_copy)
{
	struct dsn	 a, b;

	ck_assert_int_eq(dsn_parse("https://p:s@h:1/x/2", &a, NULL), 0);
	dsn_copy(&b, &a);
	dsn_free(&a);
	ck_assert_int_eq(b.set, 1);
	ck_assert_str_eq(b.public_key, "p");
	ck_assert_str_eq(b.secret_key, "s");
	ck_assert_str_eq(b.host, "h:1");
	ck_assert_str_eq(b.path, "/x");
	ck_assert_str_eq(b.project_id, "2");
	ck_assert_str_eq(b.envelope_url, "https://h:1/x/api/2/envelope/");
	ck_assert_str_eq(b.redacted, "https://h:1/x/2");
	dsn_free(&b);

	memset(&a, 0, sizeof a);
	dsn_copy(&b, &a);
	ck_assert_int_eq(b.set, 0);
	ck_assert_ptr_null(b.scheme);
}
END_TEST

static Suite *
dsn_suite(void)
{
	Suite	*s = suite_create("dsn");
	TCase	*tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, test_plain);
	tcase_add_test(tc, test_secret_port_prefix);
	tcase_add_test(tc, test_trailing_slash_and_query);
	suite_add_tcase(s, tc);

	tc = tcase_create("bad");
	tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof bad / sizeof bad[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("use");
	tcase_add_test(tc, test_auth_header);
	tcase_add_test(tc, test_copy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(dsn_suite());
}
