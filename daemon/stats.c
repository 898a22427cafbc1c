/*
 * stats.c -- the daemon's counters (SPEC §7) and the rate-limited log of
 * rejections: at most one line per second per error code, with a count of
 * the ones suppressed.  Client text is escaped before it is logged.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

struct stats	stats;

static double	 reject_last[MSG_E_COUNT];
static uint64_t	 reject_suppressed[MSG_E_COUNT];

void
stats_reject(enum msg_err code, pid_t pid, uint64_t lineno, const char *text)
{
	double	 now;
	char	*esc;

	stats.rejected[code]++;
	now = now_s();
	if (now - reject_last[code] < 1.0) {
		reject_suppressed[code]++;
		return;
	}
	reject_last[code] = now;
	esc = log_escape(text, strlen(text), 200);
	if (reject_suppressed[code] > 0)
		log_warnx("rejected %s from pid %ld line %llu: %s "
		    "(%llu more suppressed)", msg_err_name(code), (long)pid,
		    (unsigned long long)lineno, esc,
		    (unsigned long long)reject_suppressed[code]);
	else
		log_warnx("rejected %s from pid %ld line %llu: %s",
		    msg_err_name(code), (long)pid, (unsigned long long)lineno,
		    esc);
	reject_suppressed[code] = 0;
	free(esc);
}
