/*
 * conf.c -- the configuration file (SPEC §10; see conf.h).
 *
 * The file is read whole into memory and fed to libinih line by line
 * through our own reader.  The reader does more than hand out bytes: it
 * counts lines (this inih build passes no line number to the handler), it
 * tracks the current section itself (inih truncates section names to 49
 * bytes) and it reports the lines inih would reject without telling us
 * which (a section header without ']', a line without '=', an overlong
 * line, a NUL byte) and hands inih a blank line instead.  So inih only
 * ever sees comments and "key = value" lines, splits them, strips inline
 * comments, and calls config_handler, which validates every value.
 *
 * Every problem is collected, not just the first: each becomes one line
 * "FILE:LINE: [section] key: what is wrong", and config_load returns them
 * all, sorted by line, joined with '\n'.  A value is quoted back in a
 * message only when it is harmless: never a DSN (it holds the key) nor a
 * URL (it may hold a password).
 *
 * The inih settings are process globals in this build; config_load sets
 * them every time before it parses, so it must not run concurrently with
 * another inih user (the daemon parses its config on the main thread).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ini.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/conf.h"
#include "daemon/dsn.h"

#define CONFIG_MAX_FILE		(16 * 1024 * 1024)
#define CONFIG_INI_MAX_LINE	65536
/* A longer line (newline included) is refused before inih sees it. */
#define CONFIG_MAX_LINE		(CONFIG_INI_MAX_LINE - 8)
#define CONFIG_TAG_MAX		200
#define CONFIG_QUOTE_MAX	64

/* Built-in defaults (SPEC §10). */
#define CONFIG_DEF_SOCKET_MODE		0660
#define CONFIG_DEF_MAX_LINE_BYTES	(1024 * 1024)
#define CONFIG_DEF_MAX_EVENT_BYTES	(1024 * 1024)
#define CONFIG_DEF_MAX_FIBERS		100000
#define CONFIG_DEF_FIBER_TTL		3600.0
#define CONFIG_DEF_SCOPE_GRACE		60.0
#define CONFIG_DEF_MAX_BREADCRUMBS	100
#define CONFIG_DEF_MAX_SPOOL_BYTES	(1024ULL * 1024 * 1024)
#define CONFIG_DEF_MAX_AGE		(7 * 86400.0)
#define CONFIG_DEF_SHUTDOWN_TIMEOUT	5.0
#define CONFIG_DEF_IDLE_TIMEOUT		600.0
#define CONFIG_DEF_MAX_CONNECTIONS	1024
#define CONFIG_DEF_BATCH_SIZE		100
#define CONFIG_DEF_MAX_INFLIGHT		4
#define CONFIG_DEF_GZIP			1
#define CONFIG_DEF_TIMEOUT		30.0

#define CONFIG_BATCH_SIZE_MAX		10000
#define CONFIG_MAX_INFLIGHT_MAX		64

enum config_section {
	CONFIG_SEC_NONE,	/* before the first header */
	CONFIG_SEC_DAEMON,
	CONFIG_SEC_SCOPE,
	CONFIG_SEC_ROUTE,	/* [upstream] or [route NAME] */
	CONFIG_SEC_SKIP		/* a bad header: its keys are ignored */
};

/* How the value of a [daemon] or [scope] key is checked and stored. */
enum config_kind {
	CONFIG_K_PATH,		/* char *, not empty */
	CONFIG_K_TEXT,		/* char *, not empty, UTF-8 */
	CONFIG_K_MODE,
	CONFIG_K_GROUP,
	CONFIG_K_SYNC,
	CONFIG_K_SIZE,		/* size_t, > 0 */
	CONFIG_K_SIZE64,	/* uint64_t, > 0 */
	CONFIG_K_COUNT,		/* size_t, 1..INT_MAX */
	CONFIG_K_DURATION,	/* double, > 0 */
	CONFIG_K_DURATION0,	/* double, >= 0 */
	CONFIG_K_OVERFLOW,
	CONFIG_K_LISTEN		/* char *, host:port; empty: none */
};

struct config_key {
	const char		*name;
	enum config_section	 sec;
	enum config_kind	 kind;
	size_t			 off;
};

#define CONFIG_OFF(f)	offsetof(struct config, f)
static const struct config_key config_keys[] = {
	{ "socket", CONFIG_SEC_DAEMON, CONFIG_K_PATH, CONFIG_OFF(socket) },
	{ "socket_mode", CONFIG_SEC_DAEMON, CONFIG_K_MODE, 0 },
	{ "socket_group", CONFIG_SEC_DAEMON, CONFIG_K_GROUP, 0 },
	{ "control_socket", CONFIG_SEC_DAEMON, CONFIG_K_PATH,
	    CONFIG_OFF(control_socket) },
	{ "spool", CONFIG_SEC_DAEMON, CONFIG_K_PATH, CONFIG_OFF(spool) },
	{ "sync", CONFIG_SEC_DAEMON, CONFIG_K_SYNC, 0 },
	{ "max_line_bytes", CONFIG_SEC_DAEMON, CONFIG_K_SIZE,
	    CONFIG_OFF(max_line_bytes) },
	{ "max_event_bytes", CONFIG_SEC_DAEMON, CONFIG_K_SIZE,
	    CONFIG_OFF(max_event_bytes) },
	{ "max_fibers", CONFIG_SEC_DAEMON, CONFIG_K_COUNT,
	    CONFIG_OFF(max_fibers) },
	{ "fiber_ttl", CONFIG_SEC_DAEMON, CONFIG_K_DURATION,
	    CONFIG_OFF(fiber_ttl) },
	{ "scope_grace", CONFIG_SEC_DAEMON, CONFIG_K_DURATION0,
	    CONFIG_OFF(scope_grace) },
	{ "max_breadcrumbs", CONFIG_SEC_DAEMON, CONFIG_K_COUNT,
	    CONFIG_OFF(max_breadcrumbs) },
	{ "max_spool_bytes", CONFIG_SEC_DAEMON, CONFIG_K_SIZE64,
	    CONFIG_OFF(max_spool_bytes) },
	{ "overflow", CONFIG_SEC_DAEMON, CONFIG_K_OVERFLOW, 0 },
	{ "max_age", CONFIG_SEC_DAEMON, CONFIG_K_DURATION,
	    CONFIG_OFF(max_age) },
	{ "shutdown_timeout", CONFIG_SEC_DAEMON, CONFIG_K_DURATION0,
	    CONFIG_OFF(shutdown_timeout) },
	{ "idle_timeout", CONFIG_SEC_DAEMON, CONFIG_K_DURATION,
	    CONFIG_OFF(idle_timeout) },
	{ "max_connections", CONFIG_SEC_DAEMON, CONFIG_K_COUNT,
	    CONFIG_OFF(max_connections) },
	{ "metrics_listen", CONFIG_SEC_DAEMON, CONFIG_K_LISTEN,
	    CONFIG_OFF(metrics_listen) },
	{ "environment", CONFIG_SEC_SCOPE, CONFIG_K_TEXT,
	    CONFIG_OFF(environment) },
	{ "release", CONFIG_SEC_SCOPE, CONFIG_K_TEXT, CONFIG_OFF(release) },
	{ "server_name", CONFIG_SEC_SCOPE, CONFIG_K_TEXT,
	    CONFIG_OFF(server_name) },
};
#define CONFIG_NKEYS	(sizeof config_keys / sizeof config_keys[0])

/* The keys of [upstream] and [route NAME]. */
enum config_rkey {
	CONFIG_RK_TYPE,
	CONFIG_RK_DSN,
	CONFIG_RK_URL,
	CONFIG_RK_PATH,
	CONFIG_RK_BATCH_SIZE,
	CONFIG_RK_MAX_INFLIGHT,
	CONFIG_RK_GZIP,
	CONFIG_RK_CA_FILE,
	CONFIG_RK_TIMEOUT,
	CONFIG_RK_MAX
};

static const char *const config_rkeys[CONFIG_RK_MAX] = {
	"type", "dsn", "url", "path", "batch_size", "max_inflight", "gzip",
	"ca_file", "timeout"
};

/* Parse-time facts about one route, parallel to cfg->routes. */
struct config_rstate {
	int	line;			/* its header; 0: no [upstream] */
	int	badtype;		/* its type = was not understood */
	int	seen[CONFIG_RK_MAX];	/* line each key was set on, or 0 */
};

struct config_error {
	int	 line;
	size_t	 seq;			/* keeps the sort stable */
	char	*text;
};

/* Everything one config_load needs while it parses. */
struct config_parse {
	struct config		*cfg;
	const char		*file;

	struct config_error	*errs;
	size_t			 nerrs;

	/* The reader: the whole file, and the line being handed out. */
	const char		*buf;
	size_t			 len;
	size_t			 off;
	const char		*pend;
	size_t			 pendlen;
	int			 lineno;

	/* The section the current line is in. */
	enum config_section	 sec;
	char			*secname;	/* "daemon", "route shop" */
	size_t			 route;		/* for CONFIG_SEC_ROUTE */
	struct config_rstate	*rstate;
	int			 seen[CONFIG_NKEYS];
};

static void	 config_err(struct config_parse *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	 config_keyerr(struct config_parse *, const char *,
		    const char *, ...) __attribute__((format(printf, 3, 4)));

/* Settings for this inih build's globals. */
static char	config_comment_prefixes[] = ";#";
static char	config_inline_prefixes[] = ";#";

/*
 * Record one problem: "FILE:LINE: " followed by the formatted text (line 0
 * leaves the line number out).
 */
static void
config_err(struct config_parse *p, int line, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n == -1)
		msg = xstrdup("out of memory");
	p->errs = xreallocarray(p->errs, p->nerrs + 1, sizeof *p->errs);
	p->errs[p->nerrs].line = line;
	p->errs[p->nerrs].seq = p->nerrs;
	if (line > 0)
		xasprintf(&p->errs[p->nerrs].text, "%s:%d: %s", p->file, line,
		    msg);
	else
		xasprintf(&p->errs[p->nerrs].text, "%s: %s", p->file, msg);
	p->nerrs++;
	free(msg);
}

/* Record a problem with key on the current line of the current section. */
static void
config_keyerr(struct config_parse *p, const char *key, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = xstrdup("out of memory");
	va_end(ap);
	if (p->secname != NULL)
		config_err(p, p->lineno, "[%s] %s: %s", p->secname, key, msg);
	else
		config_err(p, p->lineno, "%s: %s", key, msg);
	free(msg);
}

/*
 * A value fit to quote in a message: at most CONFIG_QUOTE_MAX bytes, with
 * anything unprintable (or a quote) as '?'.  Writes into out.
 */
static const char *
config_quote(const char *v, char out[CONFIG_QUOTE_MAX + 4])
{
	size_t	i;

	for (i = 0; v[i] != '\0' && i < CONFIG_QUOTE_MAX; i++) {
		if (v[i] < 0x20 || v[i] > 0x7e || v[i] == '"')
			out[i] = '?';
		else
			out[i] = v[i];
	}
	if (v[i] != '\0')
		memcpy(out + i, "...", 4);
	else
		out[i] = '\0';
	return out;
}

/* Nonzero if s is valid UTF-8. */
static int
config_utf8(const char *s)
{
	const unsigned char	*u = (const unsigned char *)s;
	int			 n, i;

	while (*u != '\0') {
		if (*u < 0x80) {
			u++;
			continue;
		}
		if (*u >= 0xc2 && *u <= 0xdf)
			n = 1;
		else if (*u >= 0xe0 && *u <= 0xef)
			n = 2;
		else if (*u >= 0xf0 && *u <= 0xf4)
			n = 3;
		else
			return 0;
		if ((*u == 0xe0 && u[1] < 0xa0) || (*u == 0xed && u[1] > 0x9f) ||
		    (*u == 0xf0 && u[1] < 0x90) || (*u == 0xf4 && u[1] > 0x8f))
			return 0;
		for (i = 1; i <= n; i++) {
			if ((u[i] & 0xc0) != 0x80)
				return 0;
		}
		u += n + 1;
	}
	return 1;
}

/* The number of UTF-8 characters in s. */
static size_t
config_utf8_len(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	}
	return n;
}

/*
 * Parse a decimal integer of digits only (no sign, no space) into *out.
 * Returns 0, or -1 if s is not one or does not fit 64 bits.
 */
static int
config_parse_uint(const char *s, uint64_t *out)
{
	uint64_t	v = 0;
	unsigned	d;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/*
 * Parse a duration: a non-negative decimal number (digits, optionally a
 * '.' and more digits) of seconds, or followed by a unit: ms, s, m, h, d.
 * Parsed by hand, so the locale's decimal point does not matter and
 * "1e3", "inf" or "0x10" are refused.  Returns 0 with *out in seconds, or
 * -1.
 */
int
config_parse_duration(const char *s, double *out)
{
	static const struct {
		const char	*suffix;
		double		 mul;
		double		 div;
	} units[] = {
		{ "", 1, 1 }, { "s", 1, 1 }, { "ms", 1, 1000 },
		{ "m", 60, 1 }, { "h", 3600, 1 }, { "d", 86400, 1 }
	};
	uint64_t	mant = 0;
	double		scale = 1;
	int		digits = 0;
	size_t		i;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (++digits > 18)
			return -1;
		mant = mant * 10 + (uint64_t)(*s - '0');
	}
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -1;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (++digits > 18)
				return -1;
			mant = mant * 10 + (uint64_t)(*s - '0');
			scale *= 10;
		}
	}
	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s, units[i].suffix) == 0) {
			*out = (double)mant * units[i].mul /
			    (scale * units[i].div);
			return 0;
		}
	}
	return -1;
}

/*
 * Parse a size: a decimal number of bytes, or followed by K, M or G
 * (1024-based, either case, optionally followed by "B" or "iB").  Returns
 * 0 with *out in bytes, or -1 (also when it overflows 64 bits).
 */
int
config_parse_size(const char *s, uint64_t *out)
{
	char		 num[24];
	const char	*p;
	size_t		 n;
	uint64_t	 v, mul;

	if (s == NULL)
		return -1;
	for (p = s; *p >= '0' && *p <= '9'; p++)
		;
	n = (size_t)(p - s);
	if (n == 0 || n >= sizeof num)
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (config_parse_uint(num, &v) == -1)
		return -1;

	switch (*p) {
	case '\0':
		mul = 1;
		break;
	case 'k':
	case 'K':
		mul = 1024;
		break;
	case 'm':
	case 'M':
		mul = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mul = 1024 * 1024 * 1024;
		break;
	default:
		return -1;
	}
	if (*p != '\0') {
		p++;
		if (*p != '\0' && strcmp(p, "B") != 0 && strcmp(p, "iB") != 0)
			return -1;
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

const char *
config_upstream_type_name(enum upstream_type type)
{
	switch (type) {
	case UPSTREAM_FILE:
		return "file";
	case UPSTREAM_HTTP:
		return "http";
	case UPSTREAM_SENTRY:
		return "sentry";
	}
	return "unknown";
}

/* Parse a boolean: yes/no, true/false, on/off, 1/0.  1, 0 or -1. */
static int
config_parse_bool(const char *s)
{
	if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0 ||
	    strcasecmp(s, "on") == 0 || strcmp(s, "1") == 0)
		return 1;
	if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0 ||
	    strcasecmp(s, "off") == 0 || strcmp(s, "0") == 0)
		return 0;
	return -1;
}

/* Parse a port, 1..65535, from the n bytes at s.  -1 if bad. */
static int
config_parse_port(const char *s, size_t n)
{
	int	v = 0;
	size_t	i;

	if (n == 0 || n > 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? v : -1;
}

/*
 * Check "host:port" or "[v6addr]:port" and, if host is not NULL, split
 * it: *host gets a new string (no brackets), *port points into s.
 * Returns 0, or -1 (nothing allocated) if s is neither form.
 */
int
config_split_listen(const char *s, char **host, const char **port)
{
	const char	*close, *colon, *h, *p;
	size_t		 i, hlen;

	if (*s == '[') {
		if ((close = strchr(s, ']')) == NULL || close == s + 1 ||
		    close[1] != ':')
			return -1;
		for (i = 1; s + i < close; i++) {
			if (!isxdigit((unsigned char)s[i]) && s[i] != ':' &&
			    s[i] != '.')
				return -1;
		}
		h = s + 1;
		hlen = (size_t)(close - h);
		p = close + 2;
	} else {
		if ((colon = strchr(s, ':')) == NULL || colon == s ||
		    strchr(colon + 1, ':') != NULL)
			return -1;
		for (i = 0; s + i < colon; i++) {
			if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
			    s[i] != '-' && s[i] != '_')
				return -1;
		}
		h = s;
		hlen = (size_t)(colon - s);
		p = colon + 1;
	}
	if (config_parse_port(p, strlen(p)) == -1)
		return -1;
	if (host != NULL) {
		*host = xstrndup(h, hlen);
		*port = p;
	}
	return 0;
}

/* Check an http:// or https:// URL with a host and no blanks.  0 or -1. */
static int
config_check_url(const char *s)
{
	const char	*p;
	size_t		 n;

	if (strncasecmp(s, "http://", 7) == 0)
		p = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		p = s + 8;
	else
		return -1;
	n = strcspn(p, "/?#");
	if (n == 0 || p[0] == '@' || p[n - 1] == '@' || p[n - 1] == ':')
		return -1;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return -1;
	}
	return 0;
}

/*
 * Resolve a group name (or, if no group has that name, a numeric gid).
 * Returns 0 with *gid set, or -1 with *why a fixed message or the text of
 * the lookup error.
 */
static int
config_group(const char *name, gid_t *gid, const char **why)
{
	struct group	 grp, *res = NULL;
	char		*buf;
	long		 max;
	size_t		 size;
	uint64_t	 v;
	int		 rc;

	max = sysconf(_SC_GETGR_R_SIZE_MAX);
	size = max > 0 ? (size_t)max : 1024;
	buf = xmalloc(size);
	for (;;) {
		rc = getgrnam_r(name, &grp, buf, size, &res);
		if (rc != ERANGE || size >= 1024 * 1024)
			break;
		size *= 2;
		buf = xrealloc(buf, size);
	}
	if (rc == 0 && res != NULL) {
		*gid = grp.gr_gid;
		free(buf);
		return 0;
	}
	free(buf);
	if (config_parse_uint(name, &v) == 0 && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	*why = rc != 0 && rc != ENOENT && rc != ESRCH ? strerror(rc) :
	    "no such group";
	return -1;
}

/* Fill the built-in defaults of one route. */
static void
config_route_init(struct config_route *r, const char *name)
{
	memset(r, 0, sizeof *r);
	r->name = xstrdup(name);
	r->type = UPSTREAM_FILE;
	r->batch_size = CONFIG_DEF_BATCH_SIZE;
	r->max_inflight = CONFIG_DEF_MAX_INFLIGHT;
	r->gzip = CONFIG_DEF_GZIP;
	r->timeout = CONFIG_DEF_TIMEOUT;
}

static void
config_route_clear(struct config_route *r)
{
	free(r->name);
	free(r->path);
	free(r->url);
	dsn_free(&r->dsn);
	free(r->ca_file);
	memset(r, 0, sizeof *r);
}

/* A new config holding the built-in defaults and a default route. */
static struct config *
config_defaults(void)
{
	struct config	*cfg;

	cfg = xcalloc(1, sizeof *cfg);
	cfg->socket = xstrdup(CONFIG_DEFAULT_SOCKET);
	cfg->socket_mode = CONFIG_DEF_SOCKET_MODE;
	cfg->control_socket = xstrdup(CONFIG_DEFAULT_CONTROL);
	cfg->spool = xstrdup(CONFIG_DEFAULT_SPOOL);
	cfg->sync_full = 1;
	cfg->max_line_bytes = CONFIG_DEF_MAX_LINE_BYTES;
	cfg->max_event_bytes = CONFIG_DEF_MAX_EVENT_BYTES;
	cfg->max_fibers = CONFIG_DEF_MAX_FIBERS;
	cfg->fiber_ttl = CONFIG_DEF_FIBER_TTL;
	cfg->scope_grace = CONFIG_DEF_SCOPE_GRACE;
	cfg->max_breadcrumbs = CONFIG_DEF_MAX_BREADCRUMBS;
	cfg->max_spool_bytes = CONFIG_DEF_MAX_SPOOL_BYTES;
	cfg->overflow = OVERFLOW_DROP_OLDEST;
	cfg->max_age = CONFIG_DEF_MAX_AGE;
	cfg->shutdown_timeout = CONFIG_DEF_SHUTDOWN_TIMEOUT;
	cfg->idle_timeout = CONFIG_DEF_IDLE_TIMEOUT;
	cfg->max_connections = CONFIG_DEF_MAX_CONNECTIONS;
	if ((cfg->tags = cJSON_CreateObject()) == NULL)
		fatalx("%s: out of memory", __func__);
	cfg->routes = xcalloc(1, sizeof *cfg->routes);
	cfg->nroutes = 1;
	config_route_init(&cfg->routes[0], "default");
	return cfg;
}

void
config_free(struct config *cfg)
{
	size_t	i;

	if (cfg == NULL)
		return;
	free(cfg->file);
	free(cfg->socket);
	free(cfg->control_socket);
	free(cfg->spool);
	free(cfg->metrics_listen);
	free(cfg->environment);
	free(cfg->release);
	free(cfg->server_name);
	cJSON_Delete(cfg->tags);
	for (i = 0; i < cfg->nroutes; i++)
		config_route_clear(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg);
}

/*
 * The route for app: the [route NAME] whose name is app exactly, or the
 * default route (routes[0]) if there is none or app is NULL.
 */
const struct config_route *
config_route_for(const struct config *cfg, const char *app)
{
	size_t	i;

	if (app != NULL) {
		for (i = 1; i < cfg->nroutes; i++) {
			if (strcmp(cfg->routes[i].name, app) == 0)
				return &cfg->routes[i];
		}
	}
	return &cfg->routes[0];
}

/* Note that key is set on this line in *seen; 0 (and an error) if again. */
static int
config_first(struct config_parse *p, int *seen, const char *key)
{
	if (*seen != 0) {
		config_keyerr(p, key, "set twice (first on line %d)", *seen);
		return 0;
	}
	*seen = p->lineno;
	return 1;
}

/* A "tags.NAME = value" line of [scope]. */
static void
config_set_tag(struct config_parse *p, const char *key, const char *value)
{
	const char	*name = key + 5;
	cJSON		*item;

	if (*name == '\0') {
		config_keyerr(p, key, "missing tag name after \"tags.\"");
		return;
	}
	if (!config_utf8(name) || config_utf8_len(name) > CONFIG_TAG_MAX) {
		config_keyerr(p, key, "a tag name must be valid UTF-8 of at "
		    "most %d characters", CONFIG_TAG_MAX);
		return;
	}
	if (cJSON_GetObjectItemCaseSensitive(p->cfg->tags, name) != NULL) {
		config_keyerr(p, key, "set twice");
		return;
	}
	if (*value == '\0') {
		config_keyerr(p, key, "must not be empty");
		return;
	}
	if (!config_utf8(value) || config_utf8_len(value) > CONFIG_TAG_MAX) {
		config_keyerr(p, key, "a tag value must be valid UTF-8 of at "
		    "most %d characters", CONFIG_TAG_MAX);
		return;
	}
	if ((item = cJSON_CreateString(value)) == NULL ||
	    !cJSON_AddItemToObject(p->cfg->tags, name, item))
		fatalx("%s: out of memory", __func__);
}

/* A key of [daemon] or [scope]: validate it and store it in p->cfg. */
static void
config_set_global(struct config_parse *p, const char *key, const char *value)
{
	const struct config_key	*k = NULL;
	char			 q[CONFIG_QUOTE_MAX + 4], **sp;
	const char		*why;
	uint64_t		 v;
	double			 d;
	size_t			 i;
	gid_t			 gid;

	if (p->sec == CONFIG_SEC_SCOPE && strncmp(key, "tags.", 5) == 0) {
		config_set_tag(p, key, value);
		return;
	}
	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (config_keys[i].sec == p->sec &&
		    strcmp(config_keys[i].name, key) == 0) {
			k = &config_keys[i];
			break;
		}
	}
	if (k == NULL) {
		config_keyerr(p, key, "unknown key");
		return;
	}
	if (!config_first(p, &p->seen[i], key))
		return;

	switch (k->kind) {
	case CONFIG_K_PATH:
	case CONFIG_K_TEXT:
		if (*value == '\0') {
			config_keyerr(p, key, "must not be empty");
			return;
		}
		if (k->kind == CONFIG_K_TEXT && !config_utf8(value)) {
			config_keyerr(p, key, "not valid UTF-8");
			return;
		}
		sp = (char **)((char *)p->cfg + k->off);
		free(*sp);
		*sp = xstrdup(value);
		break;
	case CONFIG_K_LISTEN:
		sp = (char **)((char *)p->cfg + k->off);
		free(*sp);
		*sp = NULL;
		if (*value == '\0')
			break;
		if (config_split_listen(value, NULL, NULL) == -1) {
			config_keyerr(p, key, "bad address \"%s\" (host:port "
			    "or [v6addr]:port)", config_quote(value, q));
			return;
		}
		*sp = xstrdup(value);
		break;
	case CONFIG_K_MODE:
		if (*value == '\0' || strlen(value) > 5 ||
		    strspn(value, "01234567") != strlen(value) ||
		    (v = strtoul(value, NULL, 8)) > 0777) {
			config_keyerr(p, key, "bad mode \"%s\" (octal, at most "
			    "0777)", config_quote(value, q));
			return;
		}
		p->cfg->socket_mode = (mode_t)v;
		break;
	case CONFIG_K_GROUP:
		if (*value == '\0') {
			config_keyerr(p, key, "must not be empty");
			return;
		}
		if (config_group(value, &gid, &why) == -1) {
			config_keyerr(p, key, "group \"%s\": %s",
			    config_quote(value, q), why);
			return;
		}
		p->cfg->has_socket_group = 1;
		p->cfg->socket_group = gid;
		break;
	case CONFIG_K_SYNC:
		if (strcmp(value, "full") == 0)
			p->cfg->sync_full = 1;
		else if (strcmp(value, "normal") == 0)
			p->cfg->sync_full = 0;
		else
			config_keyerr(p, key, "must be full or normal, not "
			    "\"%s\"", config_quote(value, q));
		break;
	case CONFIG_K_OVERFLOW:
		if (strcmp(value, "drop_oldest") == 0)
			p->cfg->overflow = OVERFLOW_DROP_OLDEST;
		else if (strcmp(value, "reject") == 0)
			p->cfg->overflow = OVERFLOW_REJECT;
		else
			config_keyerr(p, key, "must be drop_oldest or reject, "
			    "not \"%s\"", config_quote(value, q));
		break;
	case CONFIG_K_SIZE:
	case CONFIG_K_SIZE64:
		if (config_parse_size(value, &v) == -1 || v == 0 ||
		    (k->kind == CONFIG_K_SIZE && v > SIZE_MAX)) {
			config_keyerr(p, key, "bad size \"%s\" (bytes, or a "
			    "number with K, M or G)", config_quote(value, q));
			return;
		}
		if (k->kind == CONFIG_K_SIZE)
			*(size_t *)((char *)p->cfg + k->off) = (size_t)v;
		else
			*(uint64_t *)((char *)p->cfg + k->off) = v;
		break;
	case CONFIG_K_COUNT:
		if (config_parse_uint(value, &v) == -1 || v == 0 ||
		    v > INT_MAX) {
			config_keyerr(p, key, "must be a whole number from 1 "
			    "to %d, not \"%s\"", INT_MAX,
			    config_quote(value, q));
			return;
		}
		*(size_t *)((char *)p->cfg + k->off) = (size_t)v;
		break;
	case CONFIG_K_DURATION:
	case CONFIG_K_DURATION0:
		if (config_parse_duration(value, &d) == -1) {
			config_keyerr(p, key, "bad duration \"%s\" (seconds, "
			    "or a number with ms, s, m, h or d)",
			    config_quote(value, q));
			return;
		}
		if (d == 0 && k->kind == CONFIG_K_DURATION) {
			config_keyerr(p, key, "must be more than 0");
			return;
		}
		*(double *)((char *)p->cfg + k->off) = d;
		break;
	}
}

/* A key of [upstream] or [route NAME]: validate it, store it in the route. */
static void
config_set_route(struct config_parse *p, const char *key, const char *value)
{
	struct config_route	*r = &p->cfg->routes[p->route];
	struct config_rstate	*rs = &p->rstate[p->route];
	char			 q[CONFIG_QUOTE_MAX + 4], *cause = NULL;
	const char		*why;
	uint64_t		 v;
	double			 d;
	int			 k, b;

	for (k = 0; k < CONFIG_RK_MAX; k++) {
		if (strcmp(config_rkeys[k], key) == 0)
			break;
	}
	if (k == CONFIG_RK_MAX) {
		config_keyerr(p, key, "unknown key");
		return;
	}
	if (!config_first(p, &rs->seen[k], key))
		return;

	switch ((enum config_rkey)k) {
	case CONFIG_RK_TYPE:
		if (strcmp(value, "sentry") == 0)
			r->type = UPSTREAM_SENTRY;
		else if (strcmp(value, "http") == 0)
			r->type = UPSTREAM_HTTP;
		else if (strcmp(value, "file") == 0)
			r->type = UPSTREAM_FILE;
		else {
			config_keyerr(p, key, "must be sentry, http or file, "
			    "not \"%s\"", config_quote(value, q));
			rs->badtype = 1;
		}
		break;
	case CONFIG_RK_DSN:
		/* The cause names what is wrong, never the key itself. */
		if (dsn_parse(value, &r->dsn, &cause) == -1) {
			why = cause;
			if (strncmp(why, "dsn: ", 5) == 0)
				why += 5;
			config_keyerr(p, key, "%s", why);
			free(cause);
		}
		break;
	case CONFIG_RK_URL:
		if (config_check_url(value) == -1) {
			config_keyerr(p, key, "must be an http:// or https:// "
			    "URL with a host");
			return;
		}
		r->url = xstrdup(value);
		break;
	case CONFIG_RK_PATH:
	case CONFIG_RK_CA_FILE:
		if (*value == '\0') {
			config_keyerr(p, key, "must not be empty");
			return;
		}
		if (k == CONFIG_RK_PATH)
			r->path = xstrdup(value);
		else
			r->ca_file = xstrdup(value);
		break;
	case CONFIG_RK_BATCH_SIZE:
	case CONFIG_RK_MAX_INFLIGHT:
		b = k == CONFIG_RK_BATCH_SIZE ? CONFIG_BATCH_SIZE_MAX :
		    CONFIG_MAX_INFLIGHT_MAX;
		if (config_parse_uint(value, &v) == -1 || v < 1 ||
		    v > (uint64_t)b) {
			config_keyerr(p, key, "must be a whole number from 1 "
			    "to %d, not \"%s\"", b, config_quote(value, q));
			return;
		}
		if (k == CONFIG_RK_BATCH_SIZE)
			r->batch_size = (int)v;
		else
			r->max_inflight = (int)v;
		break;
	case CONFIG_RK_GZIP:
		if ((b = config_parse_bool(value)) == -1) {
			config_keyerr(p, key, "must be yes or no, not \"%s\"",
			    config_quote(value, q));
			return;
		}
		r->gzip = b;
		break;
	case CONFIG_RK_TIMEOUT:
		if (config_parse_duration(value, &d) == -1 || d == 0) {
			config_keyerr(p, key, "bad duration \"%s\" (more than "
			    "0: seconds, or a number with ms, s, m, h or d)",
			    config_quote(value, q));
			return;
		}
		r->timeout = d;
		break;
	case CONFIG_RK_MAX:
		break;
	}
}

/* The inih handler: every "key = value" line the reader let through. */
static int
config_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct config_parse	*p = user;

	(void)section;		/* the reader tracks it, untruncated */
	if (*name == '\0') {
		config_err(p, p->lineno, "missing key before '='");
		return 1;
	}
	switch (p->sec) {
	case CONFIG_SEC_NONE:
		config_err(p, p->lineno, "%s: not in any section", name);
		break;
	case CONFIG_SEC_SKIP:
		break;
	case CONFIG_SEC_DAEMON:
	case CONFIG_SEC_SCOPE:
		config_set_global(p, name, value);
		break;
	case CONFIG_SEC_ROUTE:
		config_set_route(p, name, value);
		break;
	}
	return 1;
}

/*
 * Enter the section named by a header's text (already trimmed).  A bad
 * header is reported and its keys are skipped.
 */
static void
config_section(struct config_parse *p, const char *name)
{
	struct config	*cfg = p->cfg;
	const char	*rname;
	size_t		 i;

	free(p->secname);
	p->secname = xstrdup(name);
	p->sec = CONFIG_SEC_SKIP;
	if (strcmp(name, "daemon") == 0) {
		p->sec = CONFIG_SEC_DAEMON;
		return;
	}
	if (strcmp(name, "scope") == 0) {
		p->sec = CONFIG_SEC_SCOPE;
		return;
	}
	if (strcmp(name, "upstream") == 0) {
		p->sec = CONFIG_SEC_ROUTE;
		p->route = 0;
		if (p->rstate[0].line == 0)
			p->rstate[0].line = p->lineno;
		return;
	}
	if (strncmp(name, "route", 5) != 0 ||
	    (name[5] != '\0' && !isspace((unsigned char)name[5]))) {
		config_err(p, p->lineno, "[%s]: unknown section", name);
		return;
	}

	for (rname = name + 5; isspace((unsigned char)*rname); rname++)
		;
	if (*rname == '\0') {
		config_err(p, p->lineno, "[%s]: missing route name "
		    "([route NAME])", name);
		return;
	}
	if (strcmp(rname, "default") == 0) {
		config_err(p, p->lineno, "[%s]: \"default\" is the name of "
		    "[upstream]", name);
		return;
	}
	for (i = 1; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i].name, rname) == 0) {
			config_err(p, p->lineno, "[%s]: defined twice (first "
			    "on line %d)", name, p->rstate[i].line);
			return;
		}
	}
	cfg->routes = xreallocarray(cfg->routes, cfg->nroutes + 1,
	    sizeof *cfg->routes);
	p->rstate = xreallocarray(p->rstate, cfg->nroutes + 1,
	    sizeof *p->rstate);
	config_route_init(&cfg->routes[cfg->nroutes], rname);
	memset(&p->rstate[cfg->nroutes], 0, sizeof *p->rstate);
	p->rstate[cfg->nroutes].line = p->lineno;
	p->route = cfg->nroutes++;
	p->sec = CONFIG_SEC_ROUTE;
}

/*
 * As inih's find_chars_or_comment: the first of chars in s, or the start
 * of an inline comment (';' or '#' after whitespace), or the end.
 */
static char *
config_find(char *s, const char *chars)
{
	int	was_space = 0;

	while (*s != '\0' && strchr(chars, *s) == NULL &&
	    !(was_space && strchr(config_inline_prefixes, *s) != NULL)) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

/* s without leading and trailing whitespace (in place). */
static char *
config_trim(char *s)
{
	char	*e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * Look at line n of the file (len bytes at line, its newline included)
 * before inih does.  Section headers are taken here; a key line is handed
 * to inih as it is; anything else (blank, comment, bad) becomes a blank
 * line, bad ones reported.
 */
static void
config_classify(struct config_parse *p, const char *line, size_t len)
{
	char	*copy, *s, *end, *rest;

	p->pend = "\n";
	p->pendlen = 1;
	if (memchr(line, '\0', len) != NULL) {
		config_err(p, p->lineno, "NUL byte in line");
		return;
	}
	if (len > CONFIG_MAX_LINE) {
		config_err(p, p->lineno, "line longer than %d bytes",
		    CONFIG_MAX_LINE);
		return;
	}
	copy = xstrndup(line, len);
	s = copy;
	if (p->lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	s = config_trim(s);
	if (*s == '\0' || strchr(config_comment_prefixes, *s) != NULL)
		goto out;
	if (*s == '[') {
		end = config_find(s + 1, "]");
		if (*end != ']') {
			config_err(p, p->lineno, "section header without ']'");
			p->sec = CONFIG_SEC_SKIP;
			goto out;
		}
		*end = '\0';
		rest = config_trim(end + 1);
		if (*rest != '\0' && strchr(config_inline_prefixes, *rest) ==
		    NULL) {
			config_err(p, p->lineno, "text after section header");
			p->sec = CONFIG_SEC_SKIP;
			goto out;
		}
		config_section(p, config_trim(s + 1));
		goto out;
	}
	end = config_find(s, "=:");
	if (*end != '=' && *end != ':') {
		config_err(p, p->lineno, "expected \"key = value\"");
		goto out;
	}
	p->pend = line;
	p->pendlen = len;
out:
	free(copy);
}

/*
 * The inih reader (fgets-like): hands out the file a line at a time,
 * num - 1 bytes at most per call; inih asks again for the rest of a line
 * that did not fit.  p->lineno is the line being handed out, so it is the
 * line inih's handler call is about.
 */
static char *
config_reader(char *str, int num, void *stream)
{
	struct config_parse	*p = stream;
	const char		*nl;
	size_t			 n;

	if (num < 2)
		return NULL;
	if (p->pendlen == 0) {
		if (p->off >= p->len)
			return NULL;
		nl = memchr(p->buf + p->off, '\n', p->len - p->off);
		n = nl != NULL ? (size_t)(nl - (p->buf + p->off)) + 1 :
		    p->len - p->off;
		p->lineno++;
		config_classify(p, p->buf + p->off, n);
		p->off += n;
	}
	n = p->pendlen < (size_t)num - 1 ? p->pendlen : (size_t)num - 1;
	memcpy(str, p->pend, n);
	str[n] = '\0';
	p->pend += n;
	p->pendlen -= n;
	return str;
}

/*
 * After the whole file: each route needs the key of its type.  Without a
 * type, a route's type is that of the one destination key it has (dsn,
 * url or path); [upstream] with none of them is the default file route.
 * The destination keys of the other types are checked but not kept, so a
 * section may document all three as SPEC §10 does.
 */
static void
config_check_routes(struct config_parse *p)
{
	static const enum config_rkey	 need[] = {
		[UPSTREAM_FILE] = CONFIG_RK_PATH,
		[UPSTREAM_HTTP] = CONFIG_RK_URL,
		[UPSTREAM_SENTRY] = CONFIG_RK_DSN
	};
	struct config_route		*r;
	struct config_rstate		*rs;
	char				*sec;
	size_t				 i;
	int				 ndest;

	for (i = 0; i < p->cfg->nroutes; i++) {
		r = &p->cfg->routes[i];
		rs = &p->rstate[i];
		if (i == 0)
			sec = xstrdup("upstream");
		else
			xasprintf(&sec, "route %s", r->name);

		if (rs->badtype)
			;
		else if (!rs->seen[CONFIG_RK_TYPE]) {
			ndest = (rs->seen[CONFIG_RK_DSN] != 0) +
			    (rs->seen[CONFIG_RK_URL] != 0) +
			    (rs->seen[CONFIG_RK_PATH] != 0);
			if (ndest > 1) {
				config_err(p, rs->line, "[%s] type: missing "
				    "(needed when more than one of dsn, url "
				    "and path is given)", sec);
				goto next;
			}
			if (ndest == 0 && i != 0) {
				config_err(p, rs->line, "[%s] type: missing "
				    "(sentry with a dsn, http with a url or "
				    "file with a path)", sec);
				goto next;
			}
			if (rs->seen[CONFIG_RK_DSN])
				r->type = UPSTREAM_SENTRY;
			else if (rs->seen[CONFIG_RK_URL])
				r->type = UPSTREAM_HTTP;
			else
				r->type = UPSTREAM_FILE;
		}
		if (!rs->badtype && !rs->seen[need[r->type]]) {
			if (i == 0 && r->type == UPSTREAM_FILE)
				r->path = xstrdup(CONFIG_DEFAULT_OUTBOX);
			else
				config_err(p, rs->line, "[%s] %s: missing "
				    "(type = %s needs it)", sec,
				    config_rkeys[need[r->type]],
				    config_upstream_type_name(r->type));
		}

		/* Keep only the destination of the route's type. */
		if (r->type != UPSTREAM_FILE) {
			free(r->path);
			r->path = NULL;
		}
		if (r->type != UPSTREAM_HTTP) {
			free(r->url);
			r->url = NULL;
		}
		if (r->type != UPSTREAM_SENTRY)
			dsn_free(&r->dsn);
next:
		free(sec);
	}
}

static int
config_error_cmp(const void *a, const void *b)
{
	const struct config_error	*ea = a, *eb = b;

	if (ea->line != eb->line)
		return ea->line < eb->line ? -1 : 1;
	return ea->seq < eb->seq ? -1 : ea->seq > eb->seq;
}

/* All the errors of p, sorted by line, joined by '\n'.  Frees them. */
static char *
config_join_errors(struct config_parse *p)
{
	size_t	 i, total = 1, off = 0, n;
	char	*s;

	qsort(p->errs, p->nerrs, sizeof *p->errs, config_error_cmp);
	for (i = 0; i < p->nerrs; i++)
		total += strlen(p->errs[i].text) + 1;
	s = xmalloc(total);
	for (i = 0; i < p->nerrs; i++) {
		if (i > 0)
			s[off++] = '\n';
		n = strlen(p->errs[i].text);
		memcpy(s + off, p->errs[i].text, n);
		off += n;
		free(p->errs[i].text);
	}
	s[off] = '\0';
	free(p->errs);
	p->errs = NULL;
	p->nerrs = 0;
	return s;
}

/*
 * Read path whole into *buf (NUL-terminated, length in *len).  Returns 0,
 * or -1 with *cause set ("FILE: cannot open: ...").
 */
static int
config_read(const char *path, char **buf, size_t *len, char **cause)
{
	FILE	*f;
	char	*b = NULL;
	size_t	 cap = 0, n = 0, got;

	if ((f = fopen(path, "r")) == NULL) {
		xasprintf(cause, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - n < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			b = xrealloc(b, cap + 1);
		}
		got = fread(b + n, 1, cap - n, f);
		n += got;
		if (n > CONFIG_MAX_FILE) {
			xasprintf(cause, "%s: larger than %d bytes", path,
			    CONFIG_MAX_FILE);
			goto fail;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		xasprintf(cause, "%s: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;

fail:
	fclose(f);
	free(b);
	return -1;
}

/*
 * Load the configuration (see conf.h).  path NULL gives the built-in
 * defaults.  Returns a new config the caller frees with config_free, or
 * NULL with *cause (if cause is not NULL) set to a new string: every
 * problem, one per line.
 */
struct config *
config_load(const char *path, char **cause)
{
	struct config_parse	 p;
	struct config		*cfg;
	char			*buf = NULL, *c = NULL;
	size_t			 len = 0;
	int			 rc;

	cfg = config_defaults();
	if (path == NULL) {
		cfg->routes[0].path = xstrdup(CONFIG_DEFAULT_OUTBOX);
		return cfg;
	}
	if (config_read(path, &buf, &len, &c) == -1) {
		config_free(cfg);
		if (cause != NULL)
			*cause = c;
		else
			free(c);
		return NULL;
	}
	cfg->file = xstrdup(path);

	memset(&p, 0, sizeof p);
	p.cfg = cfg;
	p.file = path;
	p.buf = buf;
	p.len = len;
	p.sec = CONFIG_SEC_NONE;
	p.rstate = xcalloc(1, sizeof *p.rstate);

	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_start_comment_prefixes = config_comment_prefixes;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = config_inline_prefixes;
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = CONFIG_INI_MAX_LINE;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;

	rc = ini_parse_stream(config_reader, &p, config_handler, &p);
	if (rc == -2)
		config_err(&p, 0, "out of memory while parsing");
	else if (rc != 0 && p.nerrs == 0)
		config_err(&p, rc, "syntax error");
	config_check_routes(&p);

	free(p.secname);
	free(p.rstate);
	free(buf);
	if (p.nerrs != 0) {
		c = config_join_errors(&p);
		if (cause != NULL)
			*cause = c;
		else
			free(c);
		config_free(cfg);
		return NULL;
	}
	return cfg;
}
