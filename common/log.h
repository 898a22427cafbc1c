/*
 * log.h -- logging to stderr with <N> syslog priority prefixes, so that
 * journald keeps the level (SPEC §7).
 *
 * log_warn appends strerror(errno); log_warnx does not.  fatal/fatalx are
 * for start-up and broken invariants only.  The level is checked before
 * anything is formatted.  Text that came from a client must go through
 * log_escape first.
 */
#ifndef ERRRELAY_LOG_H
#define ERRRELAY_LOG_H

#include <stddef.h>

#define LOG_LVL_ERR	3
#define LOG_LVL_WARNING	4
#define LOG_LVL_INFO	6
#define LOG_LVL_DEBUG	7

void	log_init(int level, const char *progname);
int	log_level(void);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/*
 * Escape client text for a log line: printable ASCII stays, everything
 * else becomes \xNN, at most max input bytes (then "...").  Returns a
 * buffer the caller frees.
 */
char	*log_escape(const char *, size_t len, size_t max);

#endif
