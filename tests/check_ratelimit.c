/*
 * check_ratelimit.c -- tests for daemon/ratelimit.c: the
 * X-Sentry-Rate-Limits grammar (SPEC §5, §11 "Delivery": events are the
 * error category; empty categories mean all; longest limit wins) and
 * Retry-After.
 */
#include "config.h"

#include <stdlib.h>

#include <check.h>

#include "daemon/ratelimit.h"
#include "tests/check_run.h"

START_TEST(test_sentry_single)
{
	ck_assert_double_eq(ratelimit_sentry("2:error:organization"), 2);
	ck_assert_double_eq(ratelimit_sentry("60:default:project"), 60);
	/* Empty categories: all of them, events included. */
	ck_assert_double_eq(ratelimit_sentry("30::organization"), 30);
	/* Reason codes after the scope are allowed. */
	ck_assert_double_eq(ratelimit_sentry("45:error:key:quota_exceeded"),
	    45);
	ck_assert_double_eq(ratelimit_sentry(
	    "45:error:key:quota_exceeded:extra"), 45);
	/* A category list naming error among others. */
	ck_assert_double_eq(ratelimit_sentry(
	    "10:transaction;error;session:project"), 10);
	/* Category names are case-insensitive. */
	ck_assert_double_eq(ratelimit_sentry("7:ERROR:project"), 7);
}
END_TEST

START_TEST(test_sentry_other_categories)
{
	ck_assert_double_eq(ratelimit_sentry("60:transaction:organization"),
	    0);
	ck_assert_double_eq(ratelimit_sentry(
	    "60:transaction;session;attachment:project"), 0);
	/* "errors" is not "error". */
	ck_assert_double_eq(ratelimit_sentry("60:errors:project"), 0);
}
END_TEST

START_TEST(test_sentry_several)
{
	/* Longest applicable limit wins. */
	ck_assert_double_eq(ratelimit_sentry(
	    "5:error:project, 20::organization, 3:default:key"), 20);
	/* A longer limit for another category does not count. */
	ck_assert_double_eq(ratelimit_sentry(
	    "100:transaction:project,4:error:project"), 4);
	/* Whitespace around limits and empty members. */
	ck_assert_double_eq(ratelimit_sentry("  ,  8:error:org ,,"), 8);
}
END_TEST

START_TEST(test_sentry_malformed)
{
	ck_assert_double_eq(ratelimit_sentry(NULL), 0);
	ck_assert_double_eq(ratelimit_sentry(""), 0);
	ck_assert_double_eq(ratelimit_sentry("garbage"), 0);
	ck_assert_double_eq(ratelimit_sentry("x:error:project"), 0);
	ck_assert_double_eq(ratelimit_sentry("-5:error:project"), 0);
	/* A bad member is skipped, a good one still counts. */
	ck_assert_double_eq(ratelimit_sentry("abc:error:p, 9:error:p"), 9);
	/* Fractional seconds are kept. */
	ck_assert_double_eq(ratelimit_sentry("1.5:error:p"), 1.5);
}
END_TEST

START_TEST(test_retry_after)
{
	ck_assert_double_eq(ratelimit_retry_after("2"), 2);
	ck_assert_double_eq(ratelimit_retry_after(" 120 "), 120);
	ck_assert_double_eq(ratelimit_retry_after("0"), 0);
	ck_assert_double_eq(ratelimit_retry_after(
	    "Wed, 21 Oct 2015 07:28:00 GMT"), RATELIMIT_DEFAULT_S);
	ck_assert_double_eq(ratelimit_retry_after(NULL), -1);
	ck_assert_double_eq(ratelimit_retry_after(""), -1);
	ck_assert_double_eq(ratelimit_retry_after("soon"), -1);
	ck_assert_double_eq(ratelimit_retry_after("-3"), -1);
	ck_assert_double_eq(ratelimit_retry_after("12abc"), -1);
}
END_TEST

static Suite *
ratelimit_suite(void)
{
	Suite	*s = suite_create("ratelimit");
	TCase	*tc;

	tc = tcase_create("sentry");
	tcase_add_test(tc, test_sentry_single);
	tcase_add_test(tc, test_sentry_other_categories);
	tcase_add_test(tc, test_sentry_several);
	tcase_add_test(tc, test_sentry_malformed);
	suite_add_tcase(s, tc);
	tc = tcase_create("retry_after");
	tcase_add_test(tc, test_retry_after);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(ratelimit_suite());
}
