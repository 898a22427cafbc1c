/*
 * format.h -- request bodies for the upstreams (SPEC §5), pure code.
 *
 * - http and file: NDJSON, one stored event per line;
 * - sentry: one envelope per event: a header line with event_id and
 *   sent_at, an item header {"type":"event","length":N}, the payload.
 * - gzip: compress a body for Content-Encoding: gzip.
 */
#ifndef ERRRELAY_FORMAT_H
#define ERRRELAY_FORMAT_H

#include <stddef.h>

/* One NDJSON body from n event bodies (each gets a '\n'). Caller frees. */
char	*format_ndjson(const char *const *bodies, const size_t *lens, size_t n,
	    size_t *outlen);

/* A Sentry envelope for one event.  now: the sent_at time. Caller frees. */
char	*format_envelope(const char *event_id, const char *body, size_t len,
	    double now, size_t *outlen);

/* RFC 3339 UTC time with milliseconds, "2026-11-28T10:12:03.123Z". */
void	 format_rfc3339(double t, char out[32]);

/* gzip-compress in into a new buffer.  Returns NULL on failure. */
char	*format_gzip(const char *in, size_t len, size_t *outlen);

#endif
