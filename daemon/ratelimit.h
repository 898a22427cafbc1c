/*
 * ratelimit.h -- upstream rate-limit headers (SPEC §5, §11 "Delivery"),
 * pure code: no libevent, no curl.
 *
 * - X-Sentry-Rate-Limits: comma-separated limits, each
 *   retry_after:categories:scope[:reason_code...], categories separated
 *   by ';' (empty: all categories).  Events are Sentry's "error"
 *   category, so a limit applies when its categories are empty or name
 *   "error" or "default"; the longest applicable limit wins.
 * - Retry-After: delta-seconds; an HTTP-date counts as 60 s.
 */
#ifndef ERRRELAY_RATELIMIT_H
#define ERRRELAY_RATELIMIT_H

#define RATELIMIT_DEFAULT_S	60.0	/* 429 with neither header */

/*
 * Seconds for which events are limited by an X-Sentry-Rate-Limits value,
 * the longest applicable limit; 0 if none applies or value is NULL.
 * Malformed limits are skipped.
 */
double	ratelimit_sentry(const char *value);

/*
 * Seconds asked for by a Retry-After value: delta-seconds, or
 * RATELIMIT_DEFAULT_S for an HTTP-date.  Returns -1 if value is NULL,
 * empty or not understood.
 */
double	ratelimit_retry_after(const char *value);

#endif
