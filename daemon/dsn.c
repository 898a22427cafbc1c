/*
 * dsn.c -- Sentry DSNs (see dsn.h), parsed the way Sentry's SDKs do:
 *
 *   {scheme}://{public_key}[:{secret_key}]@{host}[:{port}]{path}/{project_id}
 *
 * The scheme is http or https; the project id is the last path segment (a
 * trailing slash is tolerated); everything between the host and it is the
 * path prefix of a Sentry behind a reverse proxy.  A query or fragment is
 * ignored, as the SDKs ignore it.
 *
 * The keys are secrets.  No cause this file produces ever quotes any part
 * of the DSN: a mistyped DSN may well have its key where the host should
 * be, so the messages name only what is wrong.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xmalloc.h"
#include "daemon/dsn.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

#define DSN_KEY_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
#define DSN_PROJECT_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define DSN_HOST_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
#define DSN_PATH_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" \
	"-_.~/%!$&'()*+,;=:@"

/* Nonzero if the n bytes at s are all in set (and n > 0). */
static int
dsn_all_in(const char *s, size_t n, const char *set)
{
	size_t	i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '\0' || strchr(set, s[i]) == NULL)
			return 0;
	}
	return 1;
}

/*
 * Check "host[:port]" or "[v6]:port" (n bytes at s).  Returns 0 or -1 with
 * *why set to a fixed message.
 */
static int
dsn_check_host(const char *s, size_t n, const char **why)
{
	const char	*port = NULL, *end = s + n, *close;
	size_t		 hlen, plen, i;
	unsigned long	 v;

	if (n == 0) {
		*why = "dsn: missing host";
		return -1;
	}
	if (*s == '[') {
		close = memchr(s, ']', n);
		if (close == NULL || close == s + 1 ||
		    !dsn_all_in(s + 1, (size_t)(close - s - 1),
		    "0123456789abcdefABCDEF:.")) {
			*why = "dsn: bad IPv6 address";
			return -1;
		}
		if (close + 1 != end) {
			if (close[1] != ':') {
				*why = "dsn: bad host";
				return -1;
			}
			port = close + 2;
		}
	} else {
		port = memchr(s, ':', n);
		hlen = port != NULL ? (size_t)(port - s) : n;
		if (hlen == 0) {
			*why = "dsn: missing host";
			return -1;
		}
		if (!dsn_all_in(s, hlen, DSN_HOST_CHARS)) {
			*why = "dsn: bad character in host";
			return -1;
		}
		if (port != NULL)
			port++;
	}
	if (port != NULL) {
		plen = (size_t)(end - port);
		if (plen == 0 || plen > 5 ||
		    !dsn_all_in(port, plen, "0123456789")) {
			*why = "dsn: bad port";
			return -1;
		}
		v = 0;
		for (i = 0; i < plen; i++)
			v = v * 10 + (unsigned long)(port[i] - '0');
		if (v == 0 || v > 65535) {
			*why = "dsn: bad port";
			return -1;
		}
	}
	return 0;
}

/*
 * Parse s into d (which is overwritten, not freed first).  On success d
 * owns its strings (release with dsn_free) and 0 is returned.  On failure
 * d is left zeroed and *cause (if cause is not NULL) is set to a new
 * string that never holds a key.
 */
int
dsn_parse(const char *s, struct dsn *d, char **cause)
{
	const char	*why, *p, *auth, *authend, *at, *colon, *host;
	const char	*path, *pathend, *slash, *prefixend;
	size_t		 n, schemelen;
	char		*scheme;

	memset(d, 0, sizeof *d);
	if (s == NULL || *s == '\0') {
		why = "dsn: empty";
		goto fail;
	}
	if ((p = strstr(s, "://")) == NULL) {
		why = "dsn: not a URL (scheme://key@host/project)";
		goto fail;
	}
	schemelen = (size_t)(p - s);
	if (schemelen == 4 && strncasecmp(s, "http", 4) == 0)
		scheme = xstrdup("http");
	else if (schemelen == 5 && strncasecmp(s, "https", 5) == 0)
		scheme = xstrdup("https");
	else {
		why = "dsn: scheme must be http or https";
		goto fail;
	}

	/* The authority ends at the first '/', '?' or '#'. */
	auth = p + 3;
	authend = auth + strcspn(auth, "/?#");
	/* The path runs to '?' or '#'; the rest is ignored. */
	path = authend;
	pathend = path + strcspn(path, "?#");

	/* The key is before the last '@' of the authority. */
	at = NULL;
	for (p = auth; p < authend; p++) {
		if (*p == '@')
			at = p;
	}
	if (at == NULL || at == auth) {
		why = "dsn: missing public key (key@host)";
		goto fail_scheme;
	}
	colon = memchr(auth, ':', (size_t)(at - auth));
	n = colon != NULL ? (size_t)(colon - auth) : (size_t)(at - auth);
	if (n == 0) {
		why = "dsn: missing public key (key@host)";
		goto fail_scheme;
	}
	if (!dsn_all_in(auth, n, DSN_KEY_CHARS)) {
		why = "dsn: bad character in public key";
		goto fail_scheme;
	}
	if (colon != NULL && colon + 1 < at &&
	    !dsn_all_in(colon + 1, (size_t)(at - colon - 1), DSN_KEY_CHARS)) {
		why = "dsn: bad character in secret key";
		goto fail_scheme;
	}

	host = at + 1;
	if (dsn_check_host(host, (size_t)(authend - host), &why) == -1)
		goto fail_scheme;

	/* Drop trailing slashes, then split off the last segment. */
	while (pathend > path && pathend[-1] == '/')
		pathend--;
	if (pathend == path) {
		why = "dsn: missing project id";
		goto fail_scheme;
	}
	slash = pathend;
	while (slash > path && slash[-1] != '/')
		slash--;
	/* slash points at the project id; slash[-1] is '/'. */
	if (!dsn_all_in(slash, (size_t)(pathend - slash), DSN_PROJECT_CHARS)) {
		why = "dsn: bad project id";
		goto fail_scheme;
	}
	/* The prefix, without the slashes before the project id. */
	prefixend = slash;
	while (prefixend > path && prefixend[-1] == '/')
		prefixend--;
	if (prefixend > path &&
	    !dsn_all_in(path, (size_t)(prefixend - path), DSN_PATH_CHARS)) {
		why = "dsn: bad character in path";
		goto fail_scheme;
	}

	d->scheme = scheme;
	d->public_key = xstrndup(auth, n);
	if (colon != NULL && colon + 1 < at)
		d->secret_key = xstrndup(colon + 1, (size_t)(at - colon - 1));
	d->host = xstrndup(host, (size_t)(authend - host));
	d->path = xstrndup(path, (size_t)(prefixend - path));
	d->project_id = xstrndup(slash, (size_t)(pathend - slash));
	xasprintf(&d->envelope_url, "%s://%s%s/api/%s/envelope/", d->scheme,
	    d->host, d->path, d->project_id);
	xasprintf(&d->redacted, "%s://%s%s/%s", d->scheme, d->host, d->path,
	    d->project_id);
	d->set = 1;
	return 0;

fail_scheme:
	free(scheme);
fail:
	if (cause != NULL)
		*cause = xstrdup(why);
	return -1;
}

/* Free what d owns and leave it zeroed (not set). */
void
dsn_free(struct dsn *d)
{
	if (d == NULL)
		return;
	free(d->scheme);
	free(d->public_key);
	free(d->secret_key);
	free(d->host);
	free(d->path);
	free(d->project_id);
	free(d->envelope_url);
	free(d->redacted);
	memset(d, 0, sizeof *d);
}

static char *
dsn_strdup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

/* Deep copy src into dst (dst is overwritten, not freed first). */
void
dsn_copy(struct dsn *dst, const struct dsn *src)
{
	memset(dst, 0, sizeof *dst);
	if (src == NULL || !src->set)
		return;
	dst->set = 1;
	dst->scheme = dsn_strdup(src->scheme);
	dst->public_key = dsn_strdup(src->public_key);
	dst->secret_key = dsn_strdup(src->secret_key);
	dst->host = dsn_strdup(src->host);
	dst->path = dsn_strdup(src->path);
	dst->project_id = dsn_strdup(src->project_id);
	dst->envelope_url = dsn_strdup(src->envelope_url);
	dst->redacted = dsn_strdup(src->redacted);
}

/*
 * The X-Sentry-Auth header value for d:
 *   Sentry sentry_version=7, sentry_client=CLIENT, sentry_key=PUBLIC
 * with ", sentry_secret=SECRET" when the DSN has one.  client NULL means
 * "errrelay/VERSION".  now is not used: sentry_timestamp is optional and
 * the envelope carries sent_at.  Returns a new string the caller frees.
 */
char *
dsn_auth_header(const struct dsn *d, const char *client, double now)
{
	char	*s, *dflt = NULL;

	(void)now;
	if (client == NULL) {
		xasprintf(&dflt, "errrelay/%s", PACKAGE_VERSION);
		client = dflt;
	}
	if (d->secret_key != NULL)
		xasprintf(&s, "Sentry sentry_version=7, sentry_client=%s, "
		    "sentry_key=%s, sentry_secret=%s", client, d->public_key,
		    d->secret_key);
	else
		xasprintf(&s, "Sentry sentry_version=7, sentry_client=%s, "
		    "sentry_key=%s", client, d->public_key);
	free(dflt);
	return s;
}
