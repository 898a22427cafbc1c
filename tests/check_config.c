/*
 * check_config.c -- tests for daemon/config.c: the built-in defaults, the
 * SPEC §10 example, comments, every kind of bad value (each reported as
 * "FILE:LINE: [section] key: ..."), routes, and the duration and size
 * parsers.  Each config is written to a file in a temporary directory.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "daemon/conf.h"
#include "tests/check_run.h"

static char	tmpdir[64];
static char	conf[128];

static void
setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/check_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(conf, sizeof conf, "%s/errrelay.conf", tmpdir);
}

static void
teardown(void)
{
	unlink(conf);
	rmdir(tmpdir);
}

/* Write text to the test's config file and load it. */
static struct config *
load(const char *text, char **cause)
{
	FILE	*f;

	*cause = NULL;
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	return config_load(conf, cause);
}

/* Load text, which must fail; returns the cause (caller frees). */
static char *
load_bad(const char *text)
{
	struct config	*cfg;
	char		*cause;

	cfg = load(text, &cause);
	ck_assert_msg(cfg == NULL, "config unexpectedly valid:\n%s", text);
	ck_assert_ptr_nonnull(cause);
	return cause;
}

/* "FILE:LINE: rest" for the test's config file (static buffer). */
static const char *
at(int line, const char *rest)
{
	static char	buf[512];

	snprintf(buf, sizeof buf, "%s:%d: %s", conf, line, rest);
	return buf;
}

static int
nlines(const char *s)
{
	int	n = 1;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

START_TEST(test_defaults)
{
	struct config	*cfg;
	char		*cause = NULL;

	cfg = config_load(NULL, &cause);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_null(cause);
	ck_assert_ptr_null(cfg->file);
	ck_assert_str_eq(cfg->socket, CONFIG_DEFAULT_SOCKET);
	ck_assert_str_eq(cfg->control_socket, CONFIG_DEFAULT_CONTROL);
	ck_assert_str_eq(cfg->spool, CONFIG_DEFAULT_SPOOL);
	ck_assert_uint_eq(cfg->socket_mode, 0660);
	ck_assert_int_eq(cfg->has_socket_group, 0);
	ck_assert_int_eq(cfg->sync_full, 1);
	ck_assert_uint_eq(cfg->max_line_bytes, 1024 * 1024);
	ck_assert_uint_eq(cfg->max_event_bytes, 1024 * 1024);
	ck_assert_uint_eq(cfg->max_fibers, 100000);
	ck_assert_double_eq(cfg->fiber_ttl, 3600);
	ck_assert_double_eq(cfg->scope_grace, 60);
	ck_assert_uint_eq(cfg->max_breadcrumbs, 100);
	ck_assert_uint_eq(cfg->max_spool_bytes, 1024ULL * 1024 * 1024);
	ck_assert_int_eq(cfg->overflow, OVERFLOW_DROP_OLDEST);
	ck_assert_double_eq(cfg->max_age, 7 * 86400);
	ck_assert_double_eq(cfg->shutdown_timeout, 5);
	ck_assert_double_eq(cfg->idle_timeout, 600);
	ck_assert_uint_eq(cfg->max_connections, 1024);
	ck_assert_ptr_null(cfg->metrics_listen);
	ck_assert_ptr_null(cfg->environment);
	ck_assert_ptr_null(cfg->release);
	ck_assert_ptr_null(cfg->server_name);
	ck_assert(cJSON_IsObject(cfg->tags));
	ck_assert_ptr_null(cfg->tags->child);

	ck_assert_uint_eq(cfg->nroutes, 1);
	ck_assert_str_eq(cfg->routes[0].name, "default");
	ck_assert_int_eq(cfg->routes[0].type, UPSTREAM_FILE);
	ck_assert_str_eq(cfg->routes[0].path,
	    CONFIG_DEFAULT_OUTBOX);
	ck_assert_ptr_null(cfg->routes[0].url);
	ck_assert_int_eq(cfg->routes[0].dsn.set, 0);
	ck_assert_int_eq(cfg->routes[0].batch_size, 100);
	ck_assert_int_eq(cfg->routes[0].max_inflight, 4);
	ck_assert_int_eq(cfg->routes[0].gzip, 1);
	ck_assert_ptr_null(cfg->routes[0].ca_file);
	ck_assert_double_eq(cfg->routes[0].timeout, 30);
	ck_assert_ptr_eq(config_route_for(cfg, "anything"), &cfg->routes[0]);
	config_free(cfg);
}
END_TEST

/* The SPEC §10 example, with an existing group and other values. */
static const char spec_example[] =
"[daemon]\n"
"socket = /tmp/e/errrelay.sock\n"
"socket_mode = 0640\n"
"socket_group = root           # unset (built-in default): the daemon's "
    "own group; a missing group is a config error\n"
"control_socket = /tmp/e/control.sock\n"
"spool = /tmp/e/spool.db\n"
"sync = normal                 # full | normal\n"
"max_line_bytes = 2M              # the newline not counted\n"
"max_event_bytes = 512K             # a merged event above this is too_large\n"
"max_fibers = 5000\n"
"fiber_ttl = 2h\n"
"scope_grace = 90s\n"
"max_breadcrumbs = 50\n"
"max_spool_bytes = 2G\n"
"overflow = reject             # drop_oldest | reject\n"
"max_age = 3d\n"
"shutdown_timeout = 1500ms\n"
"idle_timeout = 5m\n"
"max_connections = 64\n"
"metrics_listen = 127.0.0.1:9464   # unset: no HTTP listener\n"
"\n"
"[scope]                       # the global layer of section 4\n"
"environment = production\n"
"release = shop@1.4.2\n"
"server_name = web-1           # default: the host name\n"
"tags.region = eu-west-1       # any number of tags.NAME\n"
"tags.tier = gold\n"
"\n"
"[upstream]                    # the default route\n"
"type = sentry                 # sentry | http | file\n"
"dsn = https://PUBLIC_KEY@sentry.example.com/42     # type = sentry\n"
"url = https://collector.example.com/ingest          # type = http\n"
"path = /var/lib/errrelay/outbox.ndjson              # type = file\n"
"batch_size = 50\n"
"max_inflight = 8\n"
"gzip = no\n"
"ca_file = /etc/ssl/private-ca.pem   # optional\n"
"timeout = 10s\n"
"\n"
"[route shop]                  # events from connections whose hello "
    "said app \"shop\"\n"
"type = sentry\n"
"dsn = https://OTHER_KEY@sentry.example.com/7\n";

START_TEST(test_spec_example)
{
	struct config			*cfg;
	const struct config_route	*r;
	cJSON				*t;
	char				*cause;

	cfg = load(spec_example, &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_str_eq(cfg->file, conf);
	ck_assert_str_eq(cfg->socket, "/tmp/e/errrelay.sock");
	ck_assert_uint_eq(cfg->socket_mode, 0640);
	ck_assert_int_eq(cfg->has_socket_group, 1);
	ck_assert_uint_eq(cfg->socket_group, 0);
	ck_assert_str_eq(cfg->control_socket, "/tmp/e/control.sock");
	ck_assert_str_eq(cfg->spool, "/tmp/e/spool.db");
	ck_assert_int_eq(cfg->sync_full, 0);
	ck_assert_uint_eq(cfg->max_line_bytes, 2 * 1024 * 1024);
	ck_assert_uint_eq(cfg->max_event_bytes, 512 * 1024);
	ck_assert_uint_eq(cfg->max_fibers, 5000);
	ck_assert_double_eq(cfg->fiber_ttl, 7200);
	ck_assert_double_eq(cfg->scope_grace, 90);
	ck_assert_uint_eq(cfg->max_breadcrumbs, 50);
	ck_assert_uint_eq(cfg->max_spool_bytes, 2ULL * 1024 * 1024 * 1024);
	ck_assert_int_eq(cfg->overflow, OVERFLOW_REJECT);
	ck_assert_double_eq(cfg->max_age, 3 * 86400);
	ck_assert_double_eq(cfg->shutdown_timeout, 1.5);
	ck_assert_double_eq(cfg->idle_timeout, 300);
	ck_assert_uint_eq(cfg->max_connections, 64);
	ck_assert_str_eq(cfg->metrics_listen, "127.0.0.1:9464");
	ck_assert_str_eq(cfg->environment, "production");
	ck_assert_str_eq(cfg->release, "shop@1.4.2");
	ck_assert_str_eq(cfg->server_name, "web-1");
	t = cJSON_GetObjectItemCaseSensitive(cfg->tags, "region");
	ck_assert(cJSON_IsString(t));
	ck_assert_str_eq(t->valuestring, "eu-west-1");
	t = cJSON_GetObjectItemCaseSensitive(cfg->tags, "tier");
	ck_assert(cJSON_IsString(t));
	ck_assert_str_eq(t->valuestring, "gold");
	ck_assert_int_eq(cJSON_GetArraySize(cfg->tags), 2);

	ck_assert_uint_eq(cfg->nroutes, 2);
	r = &cfg->routes[0];
	ck_assert_str_eq(r->name, "default");
	ck_assert_int_eq(r->type, UPSTREAM_SENTRY);
	ck_assert_int_eq(r->dsn.set, 1);
	ck_assert_str_eq(r->dsn.public_key, "PUBLIC_KEY");
	ck_assert_str_eq(r->dsn.envelope_url,
	    "https://sentry.example.com/api/42/envelope/");
	/* Exactly the destination of the type is kept. */
	ck_assert_ptr_null(r->url);
	ck_assert_ptr_null(r->path);
	ck_assert_int_eq(r->batch_size, 50);
	ck_assert_int_eq(r->max_inflight, 8);
	ck_assert_int_eq(r->gzip, 0);
	ck_assert_str_eq(r->ca_file, "/etc/ssl/private-ca.pem");
	ck_assert_double_eq(r->timeout, 10);

	r = config_route_for(cfg, "shop");
	ck_assert_ptr_eq(r, &cfg->routes[1]);
	ck_assert_str_eq(r->name, "shop");
	ck_assert_int_eq(r->type, UPSTREAM_SENTRY);
	ck_assert_str_eq(r->dsn.public_key, "OTHER_KEY");
	ck_assert_str_eq(r->dsn.project_id, "7");
	/* A route inherits nothing from [upstream]. */
	ck_assert_int_eq(r->batch_size, 100);
	ck_assert_int_eq(r->max_inflight, 4);
	ck_assert_int_eq(r->gzip, 1);
	ck_assert_ptr_null(r->ca_file);
	ck_assert_double_eq(r->timeout, 30);
	ck_assert_ptr_eq(config_route_for(cfg, "other"), &cfg->routes[0]);
	ck_assert_ptr_eq(config_route_for(cfg, NULL), &cfg->routes[0]);
	ck_assert_ptr_eq(config_route_for(cfg, "Shop"), &cfg->routes[0]);
	config_free(cfg);
}
END_TEST

START_TEST(test_comments)
{
	struct config	*cfg;
	char		*cause;

	cfg = load(
	    "# a comment\n"
	    "; another\n"
	    "   # indented comment\n"
	    "[daemon] ; after a header\n"
	    "sync = normal # hash comment\n"
	    "overflow = reject\t; semicolon comment after a tab\n"
	    "spool = /tmp/a#b;c\n"
	    "\n"
	    "[scope]\n"
	    "release = r1;x#y\n"
	    "environment=staging#no-space-before-hash\n"
	    "  server_name   =   host one   \n"
	    "\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_int_eq(cfg->sync_full, 0);
	ck_assert_int_eq(cfg->overflow, OVERFLOW_REJECT);
	/* Without whitespace before it, # or ; is part of the value. */
	ck_assert_str_eq(cfg->spool, "/tmp/a#b;c");
	ck_assert_str_eq(cfg->release, "r1;x#y");
	ck_assert_str_eq(cfg->environment, "staging#no-space-before-hash");
	ck_assert_str_eq(cfg->server_name, "host one");
	config_free(cfg);

	/* CRLF line ends and a UTF-8 byte order mark. */
	cfg = load("\xef\xbb\xbf[daemon]\r\nsync = normal\r\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_int_eq(cfg->sync_full, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_unknown)
{
	char	*cause;

	cause = load_bad("[daemon]\nsync = full\nbogus = 1\n");
	ck_assert_str_eq(cause, at(3, "[daemon] bogus: unknown key"));
	free(cause);

	cause = load_bad("[daemon]\n[nonsense]\nsync = full\n");
	ck_assert_str_eq(cause, at(2, "[nonsense]: unknown section"));
	free(cause);

	cause = load_bad("[upstream]\ntype = file\nfrobnicate = yes\n");
	ck_assert_str_eq(cause, at(3, "[upstream] frobnicate: unknown key"));
	free(cause);

	/* A key of one section in another is unknown there. */
	cause = load_bad("[scope]\nsync = full\n");
	ck_assert_str_eq(cause, at(2, "[scope] sync: unknown key"));
	free(cause);

	cause = load_bad("sync = full\n[daemon]\n");
	ck_assert_str_eq(cause, at(1, "sync: not in any section"));
	free(cause);
}
END_TEST

/* One bad value per key type: section, key, value. */
static const struct {
	const char	*section;
	const char	*key;
	const char	*value;
} bad_values[] = {
	{ "daemon", "fiber_ttl", "abc" },
	{ "daemon", "fiber_ttl", "10x" },
	{ "daemon", "fiber_ttl", "-5s" },
	{ "daemon", "fiber_ttl", "0" },
	{ "daemon", "idle_timeout", "1.h" },
	{ "daemon", "scope_grace", "" },
	{ "daemon", "max_age", "1e3" },
	{ "daemon", "max_line_bytes", "1X" },
	{ "daemon", "max_line_bytes", "0" },
	{ "daemon", "max_event_bytes", "-1" },
	{ "daemon", "max_spool_bytes", "1.5G" },
	{ "daemon", "max_spool_bytes", "99999999999999999999G" },
	{ "daemon", "sync", "fast" },
	{ "daemon", "sync", "FULL" },
	{ "daemon", "overflow", "drop" },
	{ "daemon", "socket_mode", "0888" },
	{ "daemon", "socket_mode", "01777" },
	{ "daemon", "socket_mode", "rw" },
	{ "daemon", "socket_mode", "" },
	{ "daemon", "max_fibers", "0" },
	{ "daemon", "max_fibers", "-3" },
	{ "daemon", "max_breadcrumbs", "ten" },
	{ "daemon", "max_connections", "1.5" },
	{ "daemon", "metrics_listen", "localhost" },
	{ "daemon", "metrics_listen", "127.0.0.1:99999" },
	{ "daemon", "metrics_listen", "a:b:1" },
	{ "daemon", "socket", "" },
	{ "daemon", "control_socket", "" },
	{ "daemon", "spool", "" },
	{ "scope", "environment", "" },
	{ "scope", "tags.", "x" },
	{ "scope", "release", "\xff\xfe" },
	{ "upstream", "type", "kafka" },
	{ "upstream", "batch_size", "0" },
	{ "upstream", "batch_size", "10001" },
	{ "upstream", "max_inflight", "65" },
	{ "upstream", "gzip", "maybe" },
	{ "upstream", "timeout", "soon" },
	{ "upstream", "timeout", "0s" },
	{ "upstream", "url", "ftp://example.com/x" },
	{ "upstream", "url", "https://" },
	{ "upstream", "ca_file", "" },
	{ "upstream", "path", "" },
};

START_TEST(test_bad_value)
{
	char	 text[256], want[256], *cause;

	snprintf(text, sizeof text, "# line 1\n[%s]\n%s = %s\n",
	    bad_values[_i].section, bad_values[_i].key, bad_values[_i].value);
	cause = load_bad(text);
	snprintf(want, sizeof want, "[%s] %s: ", bad_values[_i].section,
	    bad_values[_i].key);
	ck_assert_msg(strncmp(cause, at(3, want), strlen(at(3, want))) == 0,
	    "%s = %s: got \"%s\", want \"%s...\"", bad_values[_i].key,
	    bad_values[_i].value, cause, at(3, want));
	ck_assert_int_eq(nlines(cause), 1);
	free(cause);
}
END_TEST

START_TEST(test_good_values)
{
	struct config	*cfg;
	char		*cause;

	cfg = load("[daemon]\n"
	    "socket_mode = 600\n"
	    "scope_grace = 0\n"
	    "shutdown_timeout = 0.25\n"
	    "max_line_bytes = 4096\n"
	    "max_event_bytes = 64k\n"
	    "metrics_listen = [::1]:9100\n"
	    "[upstream]\n"
	    "type = http\n"
	    "url = http://127.0.0.1:8080/in\n"
	    "gzip = off\n"
	    "batch_size = 10000\n"
	    "max_inflight = 1\n"
	    "timeout = 500ms\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_uint_eq(cfg->socket_mode, 0600);
	ck_assert_double_eq(cfg->scope_grace, 0);
	ck_assert_double_eq(cfg->shutdown_timeout, 0.25);
	ck_assert_uint_eq(cfg->max_line_bytes, 4096);
	ck_assert_uint_eq(cfg->max_event_bytes, 65536);
	ck_assert_str_eq(cfg->metrics_listen, "[::1]:9100");
	ck_assert_int_eq(cfg->routes[0].type, UPSTREAM_HTTP);
	ck_assert_str_eq(cfg->routes[0].url, "http://127.0.0.1:8080/in");
	ck_assert_ptr_null(cfg->routes[0].path);
	ck_assert_int_eq(cfg->routes[0].gzip, 0);
	ck_assert_int_eq(cfg->routes[0].batch_size, 10000);
	ck_assert_int_eq(cfg->routes[0].max_inflight, 1);
	ck_assert_double_eq(cfg->routes[0].timeout, 0.5);
	config_free(cfg);
}
END_TEST

START_TEST(test_two_problems)
{
	char	*cause, *nl;

	cause = load_bad("[daemon]\n"
	    "sync = sometimes\n"
	    "max_fibers = 10\n"
	    "fiber_ttl = forever\n");
	ck_assert_int_eq(nlines(cause), 2);
	nl = strchr(cause, '\n');
	ck_assert_ptr_nonnull(nl);
	*nl = '\0';
	ck_assert_msg(strncmp(cause, at(2, "[daemon] sync: "),
	    strlen(at(2, "[daemon] sync: "))) == 0, "%s", cause);
	ck_assert_msg(strncmp(nl + 1, at(4, "[daemon] fiber_ttl: "),
	    strlen(at(4, "[daemon] fiber_ttl: "))) == 0, "%s", nl + 1);
	/* No trailing newline. */
	ck_assert_int_ne(nl[1 + strlen(nl + 1) - 1], '\n');
	free(cause);
}
END_TEST

START_TEST(test_syntax)
{
	char	*cause, want[1024];

	/* A line without '=', a bad header (its keys skipped), a bad key. */
	cause = load_bad("[daemon]\n"
	    "just some words\n"
	    "[scope\n"
	    "environment = x\n"
	    "= value\n"
	    "[daemon] trailing\n"
	    "sync = full\n"
	    "[daemon]\n"
	    "sync = bad\n");
	/* at() reuses one buffer: append each line in turn. */
	snprintf(want, sizeof want, "%s\n", at(2, "expected \"key = value\""));
	strcat(want, at(3, "section header without ']'"));
	strcat(want, "\n");
	strcat(want, at(5, "missing key before '='"));
	strcat(want, "\n");
	strcat(want, at(6, "text after section header"));
	strcat(want, "\n");
	strcat(want, at(9, "[daemon] sync: must be full or normal, not "
	    "\"bad\""));
	ck_assert_str_eq(cause, want);
	free(cause);
}
END_TEST

START_TEST(test_duplicates)
{
	char	*cause;

	cause = load_bad("[daemon]\nsync = full\n[scope]\n[daemon]\n"
	    "sync = normal\n");
	ck_assert_str_eq(cause,
	    at(5, "[daemon] sync: set twice (first on line 2)"));
	free(cause);

	cause = load_bad("[scope]\ntags.a = 1\ntags.a = 2\n");
	ck_assert_str_eq(cause, at(3, "[scope] tags.a: set twice"));
	free(cause);

	cause = load_bad("[route x]\ntype = file\npath = /a\n[route x]\n");
	ck_assert_str_eq(cause,
	    at(4, "[route x]: defined twice (first on line 1)"));
	free(cause);

	cause = load_bad("[route default]\ntype = file\npath = /a\n");
	ck_assert_msg(strncmp(cause, at(1, "[route default]: "),
	    strlen(at(1, "[route default]: "))) == 0, "%s", cause);
	free(cause);

	cause = load_bad("[route]\n[route   ]\n");
	ck_assert_int_eq(nlines(cause), 2);
	ck_assert_ptr_nonnull(strstr(cause, at(1, "[route]: missing route "
	    "name")));
	free(cause);
}
END_TEST

START_TEST(test_group)
{
	char	*cause;

	cause = load_bad("[daemon]\nsocket_group = no-such-group-errrelay-x\n");
	ck_assert_str_eq(cause, at(2, "[daemon] socket_group: group "
	    "\"no-such-group-errrelay-x\": no such group"));
	free(cause);
}
END_TEST

START_TEST(test_dsn_secret)
{
	char	*cause;

	cause = load_bad("[upstream]\ntype = sentry\n"
	    "dsn = https://SUPERSECRETKEY@sentry.example.com\n");
	ck_assert_str_eq(cause, at(3, "[upstream] dsn: missing project id"));
	ck_assert_ptr_null(strstr(cause, "SUPERSECRET"));
	free(cause);

	cause = load_bad("[route a]\ntype = sentry\n"
	    "dsn = ftp://SUPERSECRETKEY:OTHERSECRET@sentry.example.com/1\n");
	ck_assert_msg(strncmp(cause, at(3, "[route a] dsn: "),
	    strlen(at(3, "[route a] dsn: "))) == 0, "%s", cause);
	ck_assert_ptr_null(strstr(cause, "SUPERSECRET"));
	ck_assert_ptr_null(strstr(cause, "OTHERSECRET"));
	free(cause);

	/* A key with a stray character: still not echoed. */
	cause = load_bad("[upstream]\ndsn = https://SUPER\"SECRET@h/1\n");
	ck_assert_ptr_null(strstr(cause, "SECRET"));
	ck_assert_ptr_nonnull(strstr(cause, "[upstream] dsn: "));
	free(cause);
}
END_TEST

START_TEST(test_routes)
{
	struct config			*cfg;
	const struct config_route	*r;
	char				*cause;

	cfg = load("[upstream]\n"
	    "batch_size = 7\n"
	    "[route shop]\n"
	    "type = http\n"
	    "url = https://collector.example.com/ingest\n"
	    "[route files]\n"
	    "type = file\n"
	    "path = /tmp/out.ndjson\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_uint_eq(cfg->nroutes, 3);
	/* [upstream] without a type or destination: the default file. */
	ck_assert_int_eq(cfg->routes[0].type, UPSTREAM_FILE);
	ck_assert_str_eq(cfg->routes[0].path,
	    CONFIG_DEFAULT_OUTBOX);
	ck_assert_int_eq(cfg->routes[0].batch_size, 7);
	r = config_route_for(cfg, "shop");
	ck_assert_str_eq(r->name, "shop");
	ck_assert_int_eq(r->type, UPSTREAM_HTTP);
	ck_assert_str_eq(r->url, "https://collector.example.com/ingest");
	ck_assert_int_eq(r->batch_size, 100);
	r = config_route_for(cfg, "files");
	ck_assert_ptr_eq(r, &cfg->routes[2]);
	ck_assert_str_eq(r->path, "/tmp/out.ndjson");
	ck_assert_ptr_eq(config_route_for(cfg, "other"), &cfg->routes[0]);
	config_free(cfg);

	/* A section name longer than inih's 49-byte limit stays whole. */
	cfg = load("[route a-very-long-application-name-that-goes-on-and-on-"
	    "and-on]\ntype = file\npath = /tmp/x\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_str_eq(cfg->routes[1].name, "a-very-long-application-name-"
	    "that-goes-on-and-on-and-on");
	config_free(cfg);

	/* Without a type, the one destination given decides it. */
	cfg = load("[upstream]\ndsn = https://k@h/3\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_int_eq(cfg->routes[0].type, UPSTREAM_SENTRY);
	ck_assert_str_eq(cfg->routes[0].dsn.project_id, "3");
	config_free(cfg);
}
END_TEST

START_TEST(test_route_missing)
{
	char	*cause;

	cause = load_bad("[upstream]\ntype = file\n\n[route shop]\n"
	    "type = http\ngzip = yes\n");
	ck_assert_str_eq(cause,
	    at(4, "[route shop] url: missing (type = http needs it)"));
	free(cause);

	cause = load_bad("[upstream]\ntype = sentry\n");
	ck_assert_str_eq(cause,
	    at(1, "[upstream] dsn: missing (type = sentry needs it)"));
	free(cause);

	cause = load_bad("[route f]\ntype = file\n");
	ck_assert_str_eq(cause,
	    at(1, "[route f] path: missing (type = file needs it)"));
	free(cause);

	cause = load_bad("[route x]\nbatch_size = 5\n");
	ck_assert_msg(strncmp(cause, at(1, "[route x] type: missing"),
	    strlen(at(1, "[route x] type: missing"))) == 0, "%s", cause);
	free(cause);

	cause = load_bad("[upstream]\nurl = http://a/\npath = /tmp/b\n");
	ck_assert_msg(strncmp(cause, at(1, "[upstream] type: missing"),
	    strlen(at(1, "[upstream] type: missing"))) == 0, "%s", cause);
	free(cause);

	/* A bad type is reported once, not also as a missing key. */
	cause = load_bad("[upstream]\ntype = kafka\n");
	ck_assert_int_eq(nlines(cause), 1);
	free(cause);
}
END_TEST

START_TEST(test_no_upstream)
{
	struct config	*cfg;
	char		*cause;

	cfg = load("[daemon]\nsync = full\n[route api]\ntype = file\n"
	    "path = /tmp/api.ndjson\n", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_uint_eq(cfg->nroutes, 2);
	ck_assert_str_eq(cfg->routes[0].name, "default");
	ck_assert_int_eq(cfg->routes[0].type, UPSTREAM_FILE);
	ck_assert_str_eq(cfg->routes[0].path,
	    CONFIG_DEFAULT_OUTBOX);
	config_free(cfg);

	cfg = load("", &cause);
	ck_assert_msg(cfg != NULL, "%s", cause);
	ck_assert_uint_eq(cfg->nroutes, 1);
	ck_assert_str_eq(cfg->routes[0].path,
	    CONFIG_DEFAULT_OUTBOX);
	config_free(cfg);
}
END_TEST

START_TEST(test_missing_file)
{
	char	 path[256], want[512], *cause = NULL;

	snprintf(path, sizeof path, "%s/nope.conf", tmpdir);
	ck_assert_ptr_null(config_load(path, &cause));
	snprintf(want, sizeof want, "%s: cannot open: No such file or "
	    "directory", path);
	ck_assert_str_eq(cause, want);
	free(cause);
}
END_TEST

static const struct {
	const char	*s;
	double		 want;	/* < 0: must fail */
} durations[] = {
	{ "500ms", 0.5 }, { "30s", 30 }, { "30", 30 }, { "5m", 300 },
	{ "1h", 3600 }, { "7d", 604800 }, { "0", 0 }, { "1.5", 1.5 },
	{ "1.5h", 5400 }, { "250ms", 0.25 }, { "60s", 60 },
	{ "", -1 }, { "s", -1 }, { "ms", -1 }, { "-1", -1 }, { "+1", -1 },
	{ "1x", -1 }, { "1 s", -1 }, { " 1", -1 }, { "1.", -1 },
	{ ".5", -1 }, { "1e3", -1 }, { "inf", -1 }, { "nan", -1 },
	{ "0x10", -1 }, { "1S", -1 }, { "5mm", -1 }, { "1hs", -1 },
};

START_TEST(test_duration)
{
	double	d = -42;
	int	rc;

	rc = config_parse_duration(durations[_i].s, &d);
	if (durations[_i].want < 0)
		ck_assert_msg(rc == -1, "\"%s\" accepted as %g",
		    durations[_i].s, d);
	else {
		ck_assert_msg(rc == 0, "\"%s\" refused", durations[_i].s);
		ck_assert_double_eq(d, durations[_i].want);
	}
}
END_TEST

static const struct {
	const char	*s;
	int		 ok;
	uint64_t	 want;
} sizes[] = {
	{ "0", 1, 0 }, { "1024", 1, 1024 }, { "4K", 1, 4096 },
	{ "4k", 1, 4096 }, { "1M", 1, 1048576 }, { "1G", 1, 1073741824 },
	{ "3G", 1, 3ULL * 1073741824 }, { "16KB", 1, 16384 },
	{ "2MiB", 1, 2097152 }, { "18446744073709551615", 1, UINT64_MAX },
	{ "", 0, 0 }, { "K", 0, 0 }, { "-1", 0, 0 }, { "1.5M", 0, 0 },
	{ "1T", 0, 0 }, { "1 K", 0, 0 }, { "1KK", 0, 0 }, { "1X", 0, 0 },
	{ "18446744073709551616", 0, 0 }, { "17179869184G", 0, 0 },
	{ "0x10", 0, 0 },
};

START_TEST(test_size)
{
	uint64_t	v = 42;
	int		rc;

	rc = config_parse_size(sizes[_i].s, &v);
	if (!sizes[_i].ok)
		ck_assert_msg(rc == -1, "\"%s\" accepted as %llu", sizes[_i].s,
		    (unsigned long long)v);
	else {
		ck_assert_msg(rc == 0, "\"%s\" refused", sizes[_i].s);
		ck_assert_uint_eq(v, sizes[_i].want);
	}
}
END_TEST

/* The listen address split that metrics.c binds with. */
START_TEST(test_split_listen)
{
	char		*host;
	const char	*port;

	ck_assert_int_eq(config_split_listen("127.0.0.1:9464", &host, &port),
	    0);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_str_eq(port, "9464");
	free(host);
	ck_assert_int_eq(config_split_listen("[::1]:80", &host, &port), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_str_eq(port, "80");
	free(host);
	ck_assert_int_eq(config_split_listen("::1:80", NULL, NULL), -1);
	ck_assert_int_eq(config_split_listen("[::1]80", NULL, NULL), -1);
	ck_assert_int_eq(config_split_listen("host:", NULL, NULL), -1);
	ck_assert_int_eq(config_split_listen(":80", NULL, NULL), -1);
	ck_assert_int_eq(config_split_listen("host:70000", NULL, NULL), -1);
}
END_TEST

START_TEST(test_type_names)
{
	ck_assert_str_eq(config_upstream_type_name(UPSTREAM_FILE), "file");
	ck_assert_str_eq(config_upstream_type_name(UPSTREAM_HTTP), "http");
	ck_assert_str_eq(config_upstream_type_name(UPSTREAM_SENTRY), "sentry");
}
END_TEST

static Suite *
config_suite(void)
{
	Suite	*s = suite_create("config");
	TCase	*tc;

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_spec_example);
	tcase_add_test(tc, test_comments);
	tcase_add_test(tc, test_good_values);
	tcase_add_test(tc, test_no_upstream);
	tcase_add_test(tc, test_missing_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unknown);
	tcase_add_loop_test(tc, test_bad_value, 0,
	    (int)(sizeof bad_values / sizeof bad_values[0]));
	tcase_add_test(tc, test_two_problems);
	tcase_add_test(tc, test_syntax);
	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_group);
	tcase_add_test(tc, test_dsn_secret);
	suite_add_tcase(s, tc);

	tc = tcase_create("routes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_routes);
	tcase_add_test(tc, test_route_missing);
	suite_add_tcase(s, tc);

	tc = tcase_create("parsers");
	tcase_add_loop_test(tc, test_duration, 0,
	    (int)(sizeof durations / sizeof durations[0]));
	tcase_add_loop_test(tc, test_size, 0,
	    (int)(sizeof sizes / sizeof sizes[0]));
	tcase_add_test(tc, test_type_names);
	tcase_add_test(tc, test_split_listen);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(config_suite());
}
