/*
 * prom.h -- the status object as Prometheus text (SPEC §7), pure code: no
 * libevent, no curl.
 *
 * metrics.c serves what prom_from_status makes of control_status() on
 * GET /metrics.  The output is the text exposition format 0.0.4: each
 * family has one "# HELP" and one "# TYPE" line followed by its samples;
 * counters end in _total, durations in _seconds, sizes in _bytes; label
 * values are escaped (backslash, double quote, newline).  Labels are only
 * version, route, type, state, code and cause: no upstream, so no DSN or
 * URL ever reaches a scraper.
 */
#ifndef ERRRELAY_PROM_H
#define ERRRELAY_PROM_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define PROM_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/*
 * The Prometheus text of status, the object errrelayctl status --json
 * prints (SPEC §11 "Status").  A member that is missing or of the wrong
 * type is skipped, and a family with no sample is left out whole.
 * Returns a new NUL-terminated string that the caller frees (never NULL);
 * *len, if len is not NULL, gets its length.
 */
char	*prom_from_status(const cJSON *status, size_t *len);

#endif
