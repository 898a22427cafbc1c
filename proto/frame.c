/*
 * frame.c -- newline framing for the data protocol (see frame.h).
 *
 * A push parser in the manner of OpenSMTPD's iobuf: bytes go in with
 * frame_push, complete lines come out of frame_next.  The buffer holds at
 * most one unterminated line of up to max_line bytes plus whatever the last
 * push brought, because the line limit is enforced before the newline
 * arrives: as soon as the current line is known to be longer than max_line
 * it is reported once as FRAME_TOO_LONG and everything up to and including
 * its newline is dropped without being buffered.
 *
 * Scanning is linear: f->scan remembers how many bytes of the current line
 * were already searched for '\n', so a line that arrives one byte at a time
 * is searched once, not once per push.  Consumed bytes are compacted away
 * at the next push; each byte is moved at most once.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "proto/frame.h"

/* Above this capacity an empty buffer is released rather than kept. */
#define FRAME_KEEP	(64 * 1024)
#define FRAME_MIN	4096

void
frame_init(struct frame *f, size_t max_line)
{
	memset(f, 0, sizeof *f);
	f->max_line = max_line;
}

void
frame_free(struct frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = f->off = f->cap = f->scan = 0;
	f->skipping = 0;
}

/*
 * Make room for n more bytes after buf[len], plus one byte for a NUL kept
 * after the data.  Unread bytes are moved to the front first.
 */
static void
frame_reserve(struct frame *f, size_t n)
{
	size_t	 need, ncap;

	if (f->off == f->len) {
		f->off = f->len = 0;
		if (f->cap > FRAME_KEEP && n < FRAME_KEEP) {
			free(f->buf);
			f->buf = NULL;
			f->cap = 0;
		}
	} else if (f->off > 0) {
		memmove(f->buf, f->buf + f->off, f->len - f->off);
		f->len -= f->off;
		f->off = 0;
	}
	if (n > SIZE_MAX - f->len - 1)
		n = SIZE_MAX - f->len - 1;	/* xrealloc dies below anyway */
	need = f->len + n + 1;
	if (need <= f->cap)
		return;
	ncap = f->cap < FRAME_MIN ? FRAME_MIN : f->cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	f->buf = xrealloc(f->buf, ncap);
	f->cap = ncap;
}

/*
 * Append bytes.  While the rest of an overlong line is being skipped and
 * nothing else is buffered, the bytes up to its newline are dropped here
 * and never copied.
 */
void
frame_push(struct frame *f, const void *data, size_t n)
{
	const char	*p = data, *nl;

	if (n == 0)
		return;
	if (f->skipping && f->off == f->len) {
		if ((nl = memchr(p, '\n', n)) == NULL)
			return;
		f->skipping = 0;
		f->scan = 0;
		n -= (size_t)(nl + 1 - p);
		p = nl + 1;
		if (n == 0)
			return;
	}
	frame_reserve(f, n);
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	f->buf[f->len] = '\0';
}

/*
 * Return the next complete line, a FRAME_TOO_LONG report, or FRAME_NONE.
 * A returned line is followed in the buffer by a NUL byte (its '\n' is
 * overwritten), which the caller may rely on only through *len.
 */
enum frame_kind
frame_next(struct frame *f, const char **line, size_t *len,
    uint64_t *lineno)
{
	char	*start, *nl;
	size_t	 avail, window;

	if (f->skipping) {
		if (f->off == f->len)
			return FRAME_NONE;
		nl = memchr(f->buf + f->off, '\n', f->len - f->off);
		if (nl == NULL) {
			f->off = f->len = 0;	/* drop the lot */
			return FRAME_NONE;
		}
		f->off = (size_t)(nl + 1 - f->buf);
		f->skipping = 0;
		f->scan = 0;
	}

	avail = f->len - f->off;
	if (avail == 0)
		return FRAME_NONE;
	start = f->buf + f->off;

	/* Only the first max_line + 1 bytes can hold an acceptable newline. */
	window = avail;
	if (f->max_line < SIZE_MAX && window > f->max_line + 1)
		window = f->max_line + 1;
	nl = NULL;
	if (f->scan < window)
		nl = memchr(start + f->scan, '\n', window - f->scan);
	if (nl != NULL) {
		*nl = '\0';
		f->off += (size_t)(nl - start) + 1;
		f->scan = 0;
		f->lineno++;
		if (line != NULL)
			*line = start;
		if (len != NULL)
			*len = (size_t)(nl - start);
		if (lineno != NULL)
			*lineno = f->lineno;
		return FRAME_LINE;
	}
	if (avail > f->max_line) {
		/* buf[off .. off + max_line] holds no newline: too long. */
		f->off += f->max_line + 1;
		f->scan = 0;
		f->skipping = 1;
		f->lineno++;
		if (line != NULL)
			*line = NULL;
		if (len != NULL)
			*len = 0;
		if (lineno != NULL)
			*lineno = f->lineno;
		return FRAME_TOO_LONG;
	}
	f->scan = avail;
	return FRAME_NONE;
}

/*
 * At end of input, return what frame_next still holds, then the
 * unterminated last line if there is one.  The rest of an overlong line
 * being skipped is dropped and gives FRAME_NONE.
 */
enum frame_kind
frame_finish(struct frame *f, const char **line, size_t *len,
    uint64_t *lineno)
{
	enum frame_kind	 k;
	char		*start;
	size_t		 avail;

	if ((k = frame_next(f, line, len, lineno)) != FRAME_NONE)
		return k;
	if (f->skipping) {
		f->off = f->len = 0;
		f->skipping = 0;
		f->scan = 0;
		return FRAME_NONE;
	}
	avail = f->len - f->off;
	if (avail == 0)
		return FRAME_NONE;
	/* frame_next returned FRAME_NONE, so avail <= max_line. */
	start = f->buf + f->off;
	f->off = f->len;		/* buf[len] is already a NUL */
	f->scan = 0;
	f->lineno++;
	if (line != NULL)
		*line = start;
	if (len != NULL)
		*len = avail;
	if (lineno != NULL)
		*lineno = f->lineno;
	return FRAME_LINE;
}

size_t
frame_buffered(const struct frame *f)
{
	return f->len - f->off;
}
