/*
 * check_prom.c -- tests for daemon/prom.c: the status object of SPEC §11
 * as Prometheus text (SPEC §7, text exposition format 0.0.4).
 *
 * Status objects are written by hand as JSON.  Each test asserts exact
 * sample lines, and every output goes through prom_wellformed, a small
 * reference reader of the format: each family has one HELP and one TYPE
 * line before its samples, its samples are together, counters and only
 * counters end in _total, label values are quoted with \\, \" and \n
 * escaped and no raw newline inside.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "daemon/prom.h"
#include "tests/check_run.h"

#define PROM_MAX_FAMILIES	128

/* A status object as control.c builds it, with two routes. */
static const char *const full_status =
    "{\"version\":\"1.2.3\",\"pid\":4242,\"uptime_s\":3600,"
    "\"socket\":\"/run/errrelay.sock\","
    "\"control_socket\":\"/run/errrelay/control.sock\","
    "\"connections\":3,\"processes\":2,\"fibers\":17,"
    "\"counters\":{\"received\":120,\"accepted\":110,\"stored\":105,"
    "\"duplicates\":5,\"delivered\":100,\"retried\":4,\"dead\":2,"
    "\"rejected\":{\"bad_json\":6,\"line_too_long\":0,\"bad_op\":1,"
    "\"bad_field\":2,\"too_large\":0,\"spool_full\":1,"
    "\"shutting_down\":0},"
    "\"dropped\":{\"overflow\":8,\"expired\":0},"
    "\"fibers_evicted\":{\"lru\":0,\"ttl\":12,\"grace\":3},"
    "\"sanitised\":{\"tag_values_cut\":1,\"tag_newlines\":0,"
    "\"tag_keys_dropped\":2},"
    "\"connections_total\":9,\"commits\":30,\"commit_errors\":0},"
    "\"spool\":{\"path\":\"/var/lib/errrelay/spool.db\",\"rows\":5,"
    "\"bytes\":2048,\"oldest_age_s\":12.5,\"dead\":2,"
    "\"max_bytes\":1073741824,\"write_error\":false},"
    "\"routes\":["
    "{\"name\":\"default\",\"type\":\"sentry\","
    "\"upstream\":\"https://SECRETKEY@sentry.example.com/42\","
    "\"state\":\"ok\",\"retry_in_s\":0,\"last_error\":null,"
    "\"last_success\":1795862681.25,\"pending\":3,\"inflight\":1,"
    "\"delivered\":90,\"dead\":2},"
    "{\"name\":\"shop\",\"type\":\"http\","
    "\"upstream\":\"https://collector.example.com/ingest\","
    "\"state\":\"backoff\",\"retry_in_s\":2.5,"
    "\"last_error\":\"HTTP 503 from https://collector.example.com\","
    "\"last_success\":null,\"pending\":2,\"inflight\":0,"
    "\"delivered\":10,\"dead\":0}],"
    "\"health\":\"degraded\"}";

/* Convert the JSON text to Prometheus text; the caller frees it. */
static char *
prom_of(const char *json)
{
	cJSON	*o;
	char	*text;
	size_t	 len;

	o = cJSON_Parse(json);
	ck_assert_msg(o != NULL, "test JSON does not parse: %s", json);
	text = prom_from_status(o, &len);
	cJSON_Delete(o);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(len, strlen(text));
	return text;
}

/* How many whole lines of text are exactly line. */
static int
count_lines(const char *text, const char *line)
{
	const char	*p = text, *nl;
	size_t		 n = strlen(line);
	int		 count = 0;

	while (*p != '\0') {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		if ((size_t)(nl - p) == n && strncmp(p, line, n) == 0)
			count++;
		p = *nl == '\n' ? nl + 1 : nl;
	}
	return count;
}

static void
has_line(const char *text, const char *line)
{
	ck_assert_msg(count_lines(text, line) == 1,
	    "want the line exactly once: [%s]\n--- in ---\n%s", line, text);
}

static void
no_line(const char *text, const char *line)
{
	ck_assert_msg(count_lines(text, line) == 0,
	    "did not want the line: [%s]\n--- in ---\n%s", line, text);
}

/* How many "# TYPE name ..." lines text has. */
static int
count_type(const char *text, const char *name)
{
	char	buf[256];

	snprintf(buf, sizeof buf, "# TYPE %s counter", name);
	if (count_lines(text, buf) > 0)
		return count_lines(text, buf);
	snprintf(buf, sizeof buf, "# TYPE %s gauge", name);
	return count_lines(text, buf);
}

/*
 * Read a label set at *pp (just after '{') up to and including '}',
 * checking names and the escapes inside values.
 */
static void
prom_read_labels(const char **pp, const char *line)
{
	const char	*p = *pp;

	for (;;) {
		ck_assert_msg(isalpha((unsigned char)*p) || *p == '_',
		    "bad label name in [%s]", line);
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		ck_assert_msg(p[0] == '=' && p[1] == '"',
		    "label without =\" in [%s]", line);
		for (p += 2; *p != '"'; p++) {
			ck_assert_msg(*p != '\0' && *p != '\n',
			    "unterminated label value in [%s]", line);
			if (*p == '\\') {
				p++;
				ck_assert_msg(*p == '\\' || *p == '"' ||
				    *p == 'n', "bad escape in [%s]", line);
			}
		}
		p++;
		if (*p == '}')
			break;
		ck_assert_msg(*p == ',', "labels not separated by , in [%s]",
		    line);
		p++;
	}
	*pp = p + 1;
}

/*
 * Check that text is well-formed exposition format 0.0.4 as described at
 * the top of the file.  Returns the number of families.
 */
static int
prom_wellformed(const char *text)
{
	char		 fam[PROM_MAX_FAMILIES][128], line[1024], name[128];
	int		 nfam = 0, i, have_help = 0;
	const char	*p = text, *nl, *q;
	size_t		 n;
	char		*end;

	ck_assert(*text == '\0' || text[strlen(text) - 1] == '\n');
	while (*p != '\0') {
		nl = strchr(p, '\n');
		ck_assert_ptr_nonnull(nl);
		n = (size_t)(nl - p);
		ck_assert_uint_lt(n, sizeof line);
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;

		if (strncmp(line, "# HELP ", 7) == 0) {
			q = line + 7;
			n = strcspn(q, " ");
			ck_assert_uint_lt(n, sizeof name);
			memcpy(name, q, n);
			name[n] = '\0';
			ck_assert_msg(q[n] == ' ' && q[n + 1] != '\0',
			    "HELP without text: [%s]", line);
			for (i = 0; i < nfam; i++)
				ck_assert_msg(strcmp(fam[i], name) != 0,
				    "family %s seen twice", name);
			ck_assert_int_lt(nfam, PROM_MAX_FAMILIES);
			snprintf(fam[nfam++], sizeof fam[0], "%s", name);
			have_help = 1;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_msg(have_help, "TYPE without HELP: [%s]",
			    line);
			have_help = 0;
			q = line + 7;
			n = strlen(fam[nfam - 1]);
			ck_assert_msg(strncmp(q, fam[nfam - 1], n) == 0 &&
			    q[n] == ' ', "TYPE not for the HELP's family: "
			    "[%s]", line);
			q += n + 1;
			n = strlen(fam[nfam - 1]);
			if (n > 6 && strcmp(fam[nfam - 1] + n - 6,
			    "_total") == 0)
				ck_assert_str_eq(q, "counter");
			else
				ck_assert_str_eq(q, "gauge");
			continue;
		}
		ck_assert_msg(line[0] != '#', "stray comment [%s]", line);
		ck_assert_msg(nfam > 0 && !have_help,
		    "sample before HELP/TYPE: [%s]", line);
		n = strcspn(line, "{ ");
		ck_assert_msg(strlen(fam[nfam - 1]) == n &&
		    strncmp(line, fam[nfam - 1], n) == 0,
		    "sample [%s] is not of the family %s", line,
		    fam[nfam - 1]);
		ck_assert_msg(strncmp(line, "errrelay_", 9) == 0,
		    "sample [%s] not in the errrelay_ namespace", line);
		q = line + n;
		if (*q == '{') {
			q++;
			prom_read_labels(&q, line);
		}
		ck_assert_msg(*q == ' ', "no space before the value in [%s]",
		    line);
		q++;
		(void)strtod(q, &end);
		ck_assert_msg(end != q && *end == '\0',
		    "value not a number in [%s]", line);
	}
	ck_assert_msg(!have_help, "HELP without TYPE at the end");
	return nfam;
}

START_TEST(test_full_scalars)
{
	char	*t = prom_of(full_status);

	prom_wellformed(t);
	has_line(t, "errrelay_build_info{version=\"1.2.3\"} 1");
	has_line(t, "errrelay_uptime_seconds 3600");
	has_line(t, "errrelay_connections 3");
	has_line(t, "errrelay_processes 2");
	has_line(t, "errrelay_fibers 17");
	has_line(t, "errrelay_events_received_total 120");
	has_line(t, "errrelay_events_accepted_total 110");
	has_line(t, "errrelay_events_stored_total 105");
	has_line(t, "errrelay_events_duplicates_total 5");
	has_line(t, "errrelay_events_delivered_total 100");
	has_line(t, "errrelay_events_retried_total 4");
	has_line(t, "errrelay_events_dead_total 2");
	has_line(t, "errrelay_connections_accepted_total 9");
	has_line(t, "errrelay_commits_total 30");
	has_line(t, "errrelay_commit_errors_total 0");
	has_line(t, "errrelay_spool_rows 5");
	has_line(t, "errrelay_spool_bytes 2048");
	has_line(t, "errrelay_spool_max_bytes 1073741824");
	has_line(t, "errrelay_spool_oldest_age_seconds 12.5");
	has_line(t, "errrelay_spool_dead_rows 2");
	has_line(t, "errrelay_spool_write_error 0");
	has_line(t, "errrelay_healthy 0");
	/* The pid and the paths are not metrics. */
	ck_assert_ptr_null(strstr(t, "4242"));
	ck_assert_ptr_null(strstr(t, "/run/"));
	ck_assert_ptr_null(strstr(t, "spool.db"));
	free(t);
}
END_TEST

START_TEST(test_full_keyed)
{
	char	*t = prom_of(full_status);

	/* Every code, zeros included. */
	has_line(t, "errrelay_events_rejected_total{code=\"bad_json\"} 6");
	has_line(t, "errrelay_events_rejected_total{code=\"line_too_long\"} 0");
	has_line(t, "errrelay_events_rejected_total{code=\"bad_op\"} 1");
	has_line(t, "errrelay_events_rejected_total{code=\"bad_field\"} 2");
	has_line(t, "errrelay_events_rejected_total{code=\"too_large\"} 0");
	has_line(t, "errrelay_events_rejected_total{code=\"spool_full\"} 1");
	has_line(t, "errrelay_events_rejected_total{code=\"shutting_down\"} 0");
	has_line(t, "errrelay_events_dropped_total{cause=\"overflow\"} 8");
	has_line(t, "errrelay_events_dropped_total{cause=\"expired\"} 0");
	has_line(t, "errrelay_fibers_evicted_total{cause=\"lru\"} 0");
	has_line(t, "errrelay_fibers_evicted_total{cause=\"ttl\"} 12");
	has_line(t, "errrelay_fibers_evicted_total{cause=\"grace\"} 3");
	has_line(t, "errrelay_tags_sanitised_total{cause=\"tag_values_cut\"} 1");
	has_line(t, "errrelay_tags_sanitised_total{cause=\"tag_newlines\"} 0");
	has_line(t,
	    "errrelay_tags_sanitised_total{cause=\"tag_keys_dropped\"} 2");
	free(t);
}
END_TEST

START_TEST(test_full_help_type_once)
{
	static const char *const counters[] = {
		"errrelay_events_received_total",
		"errrelay_events_accepted_total",
		"errrelay_events_stored_total",
		"errrelay_events_delivered_total",
		"errrelay_events_retried_total",
		"errrelay_events_dead_total",
		"errrelay_events_rejected_total",
		"errrelay_events_dropped_total",
		"errrelay_fibers_evicted_total",
		"errrelay_commits_total",
		"errrelay_route_delivered_total",
		"errrelay_route_dead_total",
	};
	static const char *const gauges[] = {
		"errrelay_build_info", "errrelay_uptime_seconds",
		"errrelay_connections", "errrelay_fibers",
		"errrelay_spool_rows", "errrelay_spool_bytes",
		"errrelay_spool_oldest_age_seconds", "errrelay_healthy",
		"errrelay_route_pending", "errrelay_route_state",
		"errrelay_route_retry_in_seconds",
		"errrelay_route_last_success_timestamp_seconds",
	};
	char	*t = prom_of(full_status), buf[256];
	size_t	 i;
	int	 nfam;

	nfam = prom_wellformed(t);
	for (i = 0; i < sizeof counters / sizeof counters[0]; i++) {
		snprintf(buf, sizeof buf, "# TYPE %s counter", counters[i]);
		has_line(t, buf);
		ck_assert_int_eq(count_type(t, counters[i]), 1);
	}
	for (i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
		snprintf(buf, sizeof buf, "# TYPE %s gauge", gauges[i]);
		has_line(t, buf);
	}
	/* One HELP per family, one TYPE per family. */
	ck_assert_ptr_nonnull(strstr(t,
	    "# HELP errrelay_events_rejected_total "));
	ck_assert_ptr_null(strstr(strstr(t,
	    "# HELP errrelay_events_rejected_total ") + 1,
	    "# HELP errrelay_events_rejected_total "));
	/* 5 + 7 + 4 keyed + 3 + 6 spool + healthy + 2 + 6 route = 34. */
	ck_assert_int_eq(nfam, 34);
	free(t);
}
END_TEST

START_TEST(test_routes)
{
	char	*t = prom_of(full_status);

	has_line(t, "errrelay_route_info{route=\"default\",type=\"sentry\"} 1");
	has_line(t, "errrelay_route_info{route=\"shop\",type=\"http\"} 1");
	has_line(t, "errrelay_route_pending{route=\"default\"} 3");
	has_line(t, "errrelay_route_pending{route=\"shop\"} 2");
	has_line(t, "errrelay_route_inflight{route=\"default\"} 1");
	has_line(t, "errrelay_route_inflight{route=\"shop\"} 0");
	has_line(t, "errrelay_route_delivered_total{route=\"default\"} 90");
	has_line(t, "errrelay_route_delivered_total{route=\"shop\"} 10");
	has_line(t, "errrelay_route_dead_total{route=\"default\"} 2");
	has_line(t, "errrelay_route_dead_total{route=\"shop\"} 0");
	has_line(t, "errrelay_route_retry_in_seconds{route=\"default\"} 0");
	has_line(t, "errrelay_route_retry_in_seconds{route=\"shop\"} 2.5");
	has_line(t, "errrelay_route_last_success_timestamp_seconds"
	    "{route=\"default\"} 1795862681.25");
	/* A null last_success has no sample. */
	ck_assert_ptr_null(strstr(t, "errrelay_route_last_success_timestamp_"
	    "seconds{route=\"shop\"}"));
	free(t);
}
END_TEST

START_TEST(test_route_state_one_hot)
{
	char	*t = prom_of(full_status);

	has_line(t, "errrelay_route_state{route=\"default\",state=\"ok\"} 1");
	has_line(t,
	    "errrelay_route_state{route=\"default\",state=\"backoff\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"default\",state=\"rate_limited\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"default\",state=\"unconfigured\"} 0");
	has_line(t, "errrelay_route_state{route=\"shop\",state=\"ok\"} 0");
	has_line(t, "errrelay_route_state{route=\"shop\",state=\"backoff\"} 1");
	has_line(t,
	    "errrelay_route_state{route=\"shop\",state=\"rate_limited\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"shop\",state=\"unconfigured\"} 0");
	free(t);

	t = prom_of("{\"routes\":[{\"name\":\"r\",\"state\":\"rate_limited\"},"
	    "{\"name\":\"gone\",\"type\":\"none\",\"upstream\":null,"
	    "\"state\":\"unconfigured\",\"pending\":4},"
	    "{\"name\":\"odd\",\"state\":\"martian\"}]}");
	prom_wellformed(t);
	has_line(t, "errrelay_route_state{route=\"r\",state=\"rate_limited\"} 1");
	has_line(t, "errrelay_route_state{route=\"r\",state=\"ok\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"gone\",state=\"unconfigured\"} 1");
	has_line(t, "errrelay_route_state{route=\"gone\",state=\"ok\"} 0");
	has_line(t, "errrelay_route_info{route=\"gone\",type=\"none\"} 1");
	has_line(t, "errrelay_route_pending{route=\"gone\"} 4");
	/* An unknown state: every known one is 0, it gets no label. */
	has_line(t, "errrelay_route_state{route=\"odd\",state=\"ok\"} 0");
	has_line(t, "errrelay_route_state{route=\"odd\",state=\"backoff\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"odd\",state=\"rate_limited\"} 0");
	has_line(t,
	    "errrelay_route_state{route=\"odd\",state=\"unconfigured\"} 0");
	ck_assert_ptr_null(strstr(t, "martian"));
	free(t);
}
END_TEST

START_TEST(test_no_upstream_in_text)
{
	char	*t = prom_of(full_status);

	ck_assert_ptr_null(strstr(t, "SECRETKEY"));
	ck_assert_ptr_null(strstr(t, "example.com"));
	ck_assert_ptr_null(strstr(t, "https"));
	ck_assert_ptr_null(strstr(t, "upstream=\""));
	ck_assert_ptr_null(strstr(t, "HTTP 503"));
	free(t);
}
END_TEST

START_TEST(test_escape_route_name)
{
	char	*t;

	/* The route name is a"b\c<newline>d. */
	t = prom_of("{\"routes\":[{\"name\":\"a\\\"b\\\\c\\nd\","
	    "\"type\":\"file\",\"state\":\"ok\",\"pending\":7}]}");
	prom_wellformed(t);
	has_line(t, "errrelay_route_pending{route=\"a\\\"b\\\\c\\nd\"} 7");
	has_line(t, "errrelay_route_info{route=\"a\\\"b\\\\c\\nd\","
	    "type=\"file\"} 1");
	has_line(t, "errrelay_route_state{route=\"a\\\"b\\\\c\\nd\","
	    "state=\"ok\"} 1");
	free(t);

	/* A version and a code with the same characters. */
	t = prom_of("{\"version\":\"1\\\\\\n\\\"\","
	    "\"counters\":{\"rejected\":{\"x\\\"y\":3}}}");
	prom_wellformed(t);
	has_line(t, "errrelay_build_info{version=\"1\\\\\\n\\\"\"} 1");
	has_line(t, "errrelay_events_rejected_total{code=\"x\\\"y\"} 3");
	free(t);
}
END_TEST

START_TEST(test_bools_and_health)
{
	char	*t;

	t = prom_of("{\"spool\":{\"write_error\":true},\"health\":\"ok\"}");
	prom_wellformed(t);
	has_line(t, "errrelay_spool_write_error 1");
	has_line(t, "errrelay_healthy 1");
	no_line(t, "errrelay_spool_rows 0");
	free(t);
}
END_TEST

START_TEST(test_values)
{
	char	*t;

	t = prom_of("{\"uptime_s\":0.1,\"connections\":0,"
	    "\"processes\":1099511627776,\"fibers\":1e300,"
	    "\"spool\":{\"rows\":9007199254740992,\"bytes\":-0,"
	    "\"oldest_age_s\":123456.789}}");
	prom_wellformed(t);
	has_line(t, "errrelay_uptime_seconds 0.1");
	has_line(t, "errrelay_connections 0");
	has_line(t, "errrelay_processes 1099511627776");
	has_line(t, "errrelay_fibers 1e+300");
	has_line(t, "errrelay_spool_rows 9007199254740992");
	has_line(t, "errrelay_spool_bytes 0");
	has_line(t, "errrelay_spool_oldest_age_seconds 123456.789");
	free(t);
}
END_TEST

START_TEST(test_missing_members)
{
	char	*t;
	size_t	 len = 99;
	cJSON	*o;

	/* Nothing at all. */
	t = prom_from_status(NULL, &len);
	ck_assert_str_eq(t, "");
	ck_assert_uint_eq(len, 0);
	free(t);
	t = prom_of("[1,2,3]");
	ck_assert_str_eq(t, "");
	free(t);
	t = prom_of("{}");
	ck_assert_str_eq(t, "");
	free(t);
	/* len may be NULL. */
	o = cJSON_Parse("{\"fibers\":2}");
	t = prom_from_status(o, NULL);
	cJSON_Delete(o);
	ck_assert_str_eq(t, "# HELP errrelay_fibers Live fiber scopes.\n"
	    "# TYPE errrelay_fibers gauge\nerrrelay_fibers 2\n");
	free(t);

	/* Wrong types and missing members are skipped, the rest stays. */
	t = prom_of("{\"version\":7,\"uptime_s\":\"long\","
	    "\"counters\":{\"received\":4,\"stored\":null,"
	    "\"rejected\":[1,2],\"dropped\":{\"overflow\":\"x\","
	    "\"expired\":1}},"
	    "\"spool\":\"full\",\"health\":false,"
	    "\"routes\":[17,{\"type\":\"http\",\"pending\":5},"
	    "{\"name\":42,\"pending\":6},{\"name\":\"bare\"}]}");
	prom_wellformed(t);
	has_line(t, "errrelay_events_received_total 4");
	has_line(t, "errrelay_events_dropped_total{cause=\"expired\"} 1");
	ck_assert_int_eq(count_type(t, "errrelay_build_info"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_uptime_seconds"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_events_stored_total"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_events_rejected_total"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_spool_rows"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_healthy"), 0);
	/* Routes without a string name are skipped; "bare" has nothing. */
	ck_assert_int_eq(count_type(t, "errrelay_route_pending"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_route_info"), 0);
	ck_assert_int_eq(count_type(t, "errrelay_route_state"), 0);
	ck_assert_ptr_null(strstr(t, "bare"));
	ck_assert_ptr_null(strstr(t, "overflow"));
	free(t);

	/* No routes: no route family at all. */
	t = prom_of("{\"routes\":[],\"fibers\":1}");
	prom_wellformed(t);
	ck_assert_ptr_null(strstr(t, "errrelay_route_"));
	free(t);
}
END_TEST

static Suite *
prom_suite(void)
{
	Suite	*s = suite_create("prom");
	TCase	*tc;

	tc = tcase_create("full");
	tcase_add_test(tc, test_full_scalars);
	tcase_add_test(tc, test_full_keyed);
	tcase_add_test(tc, test_full_help_type_once);
	suite_add_tcase(s, tc);
	tc = tcase_create("routes");
	tcase_add_test(tc, test_routes);
	tcase_add_test(tc, test_route_state_one_hot);
	tcase_add_test(tc, test_no_upstream_in_text);
	suite_add_tcase(s, tc);
	tc = tcase_create("format");
	tcase_add_test(tc, test_escape_route_name);
	tcase_add_test(tc, test_bools_and_health);
	tcase_add_test(tc, test_values);
	suite_add_tcase(s, tc);
	tc = tcase_create("missing");
	tcase_add_test(tc, test_missing_members);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(prom_suite());
}
