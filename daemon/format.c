/*
 * format.c -- request bodies for the upstreams (SPEC §5; see format.h).
 *
 * Pure code, no I/O: the forwarder hands in stored event bodies (compact
 * JSON, one object each, no newline) and gets back the bytes to send or
 * append.  Every buffer returned is new, NUL-terminated for convenience
 * (the terminator is not counted in *outlen) and owned by the caller.
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "common/xmalloc.h"
#include "daemon/format.h"

/*
 * NDJSON: each of the n bodies followed by '\n'.  Returns a new buffer
 * (an empty string when n is 0) and its length in *outlen.
 */
char *
format_ndjson(const char *const *bodies, const size_t *lens, size_t n,
    size_t *outlen)
{
	size_t	 i, total = 0, off = 0;
	char	*out;

	for (i = 0; i < n; i++) {
		if (lens[i] > SIZE_MAX - total - 2)
			return NULL;
		total += lens[i] + 1;
	}
	out = xmalloc(total + 1);
	for (i = 0; i < n; i++) {
		memcpy(out + off, bodies[i], lens[i]);
		off += lens[i];
		out[off++] = '\n';
	}
	out[off] = '\0';
	*outlen = off;
	return out;
}

/*
 * Append s to the envelope header as a JSON string body, escaping what
 * JSON requires.  The event id is 32 hex digits in practice; this only
 * keeps a malformed one from breaking the envelope.
 */
static size_t
format_json_escape(char *out, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 n = 0;
	unsigned char		 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			memcpy(out + n, "\\u00", 4);
			n += 4;
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 0xf];
		} else
			out[n++] = (char)c;
	}
	return n;
}

/*
 * A Sentry envelope holding one event:
 *   {"event_id":"ID","sent_at":"RFC3339"}\n
 *   {"type":"event","length":LEN}\n
 *   BODY\n
 * LEN is the byte length of body.  event_id NULL leaves it out of the
 * header.  Returns a new buffer and its length in *outlen.
 */
char *
format_envelope(const char *event_id, const char *body, size_t len,
    double now, size_t *outlen)
{
	char	 sent_at[32], item[64], *out;
	size_t	 idlen = 0, need, off = 0;
	int	 itemlen;

	format_rfc3339(now, sent_at);
	itemlen = snprintf(item, sizeof item,
	    "{\"type\":\"event\",\"length\":%zu}\n", len);
	if (itemlen < 0 || (size_t)itemlen >= sizeof item)
		return NULL;
	if (event_id != NULL)
		idlen = strlen(event_id);
	if (idlen > (SIZE_MAX - len) / 8)
		return NULL;

	need = sizeof "{\"event_id\":\"\",\"sent_at\":\"\"}\n" + idlen * 6 +
	    strlen(sent_at) + (size_t)itemlen + len + 2;
	out = xmalloc(need);
	if (event_id != NULL) {
		memcpy(out, "{\"event_id\":\"", 13);
		off = 13;
		off += format_json_escape(out + off, event_id);
		memcpy(out + off, "\",", 2);
		off += 2;
	} else
		out[off++] = '{';
	off += (size_t)snprintf(out + off, need - off, "\"sent_at\":\"%s\"}\n",
	    sent_at);
	memcpy(out + off, item, (size_t)itemlen);
	off += (size_t)itemlen;
	memcpy(out + off, body, len);
	off += len;
	out[off++] = '\n';
	out[off] = '\0';
	*outlen = off;
	return out;
}

/*
 * t (Unix seconds) as "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC, rounded to the
 * nearest millisecond.  A time before the epoch or after 9999 gives the
 * epoch.
 */
void
format_rfc3339(double t, char out[32])
{
	struct tm	tm;
	time_t		secs;
	long long	ms;
	int		frac;

	if (!isfinite(t) || t < 0 || t > 253402300799.0)	/* 9999-12-31 */
		t = 0;
	ms = llround(t * 1000.0);
	secs = (time_t)(ms / 1000);
	frac = (int)(ms % 1000);
	if (frac < 0) {
		frac += 1000;
		secs--;
	}
	if (gmtime_r(&secs, &tm) == NULL) {
		snprintf(out, 32, "1970-01-01T00:00:00.000Z");
		return;
	}
	/* The ranges are spelled out so the compiler sees it fits. */
	snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
	    (unsigned)(tm.tm_year + 1900) % 10000,
	    (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100,
	    (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100,
	    (unsigned)tm.tm_sec % 100, (unsigned)frac % 1000);
}

/*
 * Compress len bytes at in with a gzip wrapper (RFC 1952), for
 * Content-Encoding: gzip.  Returns a new buffer and its length in *outlen,
 * or NULL if zlib fails.
 */
char *
format_gzip(const char *in, size_t len, size_t *outlen)
{
	z_stream	 zs;
	char		*out;
	size_t		 cap, left = len, chunk;
	int		 rc, flush;

	memset(&zs, 0, sizeof zs);
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	cap = len + len / 1000 + 64;
	if (len <= ULONG_MAX)
		cap = deflateBound(&zs, (uLong)len) + 16;
	out = xmalloc(cap);
	zs.next_in = (Bytef *)(uintptr_t)in;
	do {
		chunk = left > UINT_MAX ? UINT_MAX : left;
		zs.avail_in = (uInt)chunk;
		left -= chunk;
		flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
		do {
			if (zs.total_out == cap) {
				out = xrealloc(out, cap * 2);
				cap *= 2;
			}
			zs.next_out = (Bytef *)out + zs.total_out;
			chunk = cap - zs.total_out;
			zs.avail_out = chunk > UINT_MAX ? UINT_MAX : (uInt)chunk;
			rc = deflate(&zs, flush);
			if (rc == Z_STREAM_ERROR) {
				deflateEnd(&zs);
				free(out);
				return NULL;
			}
		} while (zs.avail_out == 0 ||
		    (flush == Z_FINISH && rc != Z_STREAM_END));
	} while (flush != Z_FINISH);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}
