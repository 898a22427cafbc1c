/*
 * ratelimit.c -- parsing of the upstream rate-limit headers (SPEC §5 and
 * §11 "Delivery"): X-Sentry-Rate-Limits and Retry-After.  Pure code; the
 * caller (forward.c) turns the seconds returned into a window per route.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon/ratelimit.h"

/* Trim [*s, *e) of blanks. */
static void
ratelimit_trim(const char **s, const char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/*
 * Parse [s, e) as a non-negative decimal number of seconds (digits with
 * an optional fraction).  Returns the value, or -1 if malformed.
 */
static double
ratelimit_seconds(const char *s, const char *e)
{
	const char	*p;
	double		 v = 0, scale = 1;
	int		 digits = 0, dot = 0;

	ratelimit_trim(&s, &e);
	for (p = s; p < e; p++) {
		if (*p == '.' && !dot) {
			dot = 1;
			continue;
		}
		if (!isdigit((unsigned char)*p))
			return -1;
		digits++;
		if (dot) {
			scale /= 10;
			v += (*p - '0') * scale;
		} else
			v = v * 10 + (*p - '0');
	}
	if (digits == 0 || !isfinite(v))
		return -1;
	return v;
}

/*
 * Whether the categories [s, e) (';'-separated) cover events: empty, or
 * naming "error" or "default".
 */
static int
ratelimit_covers_events(const char *s, const char *e)
{
	const char	*c, *ce;
	int		 any = 0;

	ratelimit_trim(&s, &e);
	if (s == e)
		return 1;
	while (s <= e) {
		c = s;
		ce = memchr(s, ';', (size_t)(e - s));
		if (ce == NULL)
			ce = e;
		s = ce + 1;
		ratelimit_trim(&c, &ce);
		if (c == ce)
			continue;
		any = 1;
		if ((ce - c == 5 && strncasecmp(c, "error", 5) == 0) ||
		    (ce - c == 7 && strncasecmp(c, "default", 7) == 0))
			return 1;
	}
	return !any;	/* only separators: as good as empty */
}

/* Seconds of one limit [s, e) that apply to events; 0 if none, -1 bad. */
static double
ratelimit_one(const char *s, const char *e)
{
	const char	*c1, *c2;
	double		 v;

	ratelimit_trim(&s, &e);
	if (s == e)
		return 0;
	if ((c1 = memchr(s, ':', (size_t)(e - s))) == NULL)
		return -1;
	if ((v = ratelimit_seconds(s, c1)) < 0)
		return -1;
	c1++;
	if ((c2 = memchr(c1, ':', (size_t)(e - c1))) == NULL)
		c2 = e;	/* lenient: scope missing */
	return ratelimit_covers_events(c1, c2) ? v : 0;
}

double
ratelimit_sentry(const char *value)
{
	const char	*s, *e, *end;
	double		 v, best = 0;

	if (value == NULL)
		return 0;
	s = value;
	end = value + strlen(value);
	while (s <= end) {
		if ((e = memchr(s, ',', (size_t)(end - s))) == NULL)
			e = end;
		v = ratelimit_one(s, e);
		if (v > best)
			best = v;
		s = e + 1;
	}
	return best;
}

double
ratelimit_retry_after(const char *value)
{
	const char	*s, *e;
	double		 v;

	if (value == NULL)
		return -1;
	s = value;
	e = value + strlen(value);
	ratelimit_trim(&s, &e);
	if (s == e)
		return -1;
	if ((v = ratelimit_seconds(s, e)) >= 0)
		return v;
	/* An HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"): a letter first. */
	if (isalpha((unsigned char)*s) && memchr(s, ',', (size_t)(e - s)))
		return RATELIMIT_DEFAULT_S;
	return -1;
}
