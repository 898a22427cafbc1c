/*
 * xmalloc.h -- allocation that never returns NULL.
 *
 * Running out of memory is fatal for errrelayd: it exits, the supervisor
 * restarts it and the spool is intact.  Parsing code that must fail on bad
 * input keeps its own checks; these are for everything else.
 */
#ifndef ERRRELAY_XMALLOC_H
#define ERRRELAY_XMALLOC_H

#include <stddef.h>

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
