/*
 * log.c -- stderr logging with syslog priority prefixes (see log.h).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"

static int		 log_lvl = LOG_LVL_INFO;
static const char	*log_prog = "errrelayd";

void
log_init(int level, const char *progname)
{
	log_lvl = level;
	if (progname != NULL)
		log_prog = progname;
}

int
log_level(void)
{
	return log_lvl;
}

static void
log_vwrite(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char	buf[2048];

	vsnprintf(buf, sizeof buf, fmt, ap);
	if (suffix != NULL)
		fprintf(stderr, "<%d>%s: %s: %s\n", pri, log_prog, buf, suffix);
	else
		fprintf(stderr, "<%d>%s: %s\n", pri, log_prog, buf);
	fflush(stderr);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	*err;

	if (log_lvl < LOG_LVL_WARNING)
		return;
	err = strerror(errno);
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARNING, fmt, ap, err);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	if (log_lvl < LOG_LVL_WARNING)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARNING, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	if (log_lvl < LOG_LVL_INFO)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_INFO, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (log_lvl < LOG_LVL_DEBUG)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	*err;

	err = strerror(errno);
	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERR, fmt, ap, err);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

char *
log_escape(const char *s, size_t len, size_t max)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i, n, o = 0;
	char			*out;
	unsigned char		 c;

	n = len > max ? max : len;
	out = xmalloc(n * 4 + 4);
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
			continue;
		}
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 0xf];
	}
	if (len > n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}
