/*
 * frame.h -- newline framing for the data protocol.
 *
 * A push parser: the caller pushes the bytes read from a connection and
 * pulls complete lines back out.  It enforces the line limit itself, before
 * the newline arrives, so a client can never make it buffer more than
 * max_line bytes: the rest of an overlong line is discarded up to its
 * newline and reported once as FRAME_TOO_LONG.  It knows nothing of
 * sockets or event loops.
 *
 * Every line counts for numbering, blank ones included; numbering starts
 * at 1.  A line is returned without its '\n' (a trailing '\r' is kept; JSON
 * treats it as white space).
 */
#ifndef ERRRELAY_FRAME_H
#define ERRRELAY_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum frame_kind {
	FRAME_NONE = 0,		/* no complete line buffered; push more */
	FRAME_LINE,		/* a complete line */
	FRAME_TOO_LONG		/* a line longer than max_line (reported once) */
};

struct frame {
	char		*buf;		/* buffered bytes, buf[off..len) unread */
	size_t		 len;
	size_t		 off;
	size_t		 cap;
	size_t		 scan;		/* bytes of buf[off..] known to hold no '\n' */
	size_t		 max_line;	/* longest accepted line, '\n' not counted */
	uint64_t	 lineno;	/* number of the last line returned */
	int		 skipping;	/* discarding the rest of an overlong line */
};

void		 frame_init(struct frame *, size_t max_line);
void		 frame_free(struct frame *);

/* Append bytes.  Never fails (allocation failure is fatal). */
void		 frame_push(struct frame *, const void *, size_t);

/*
 * Return the next item.  For FRAME_LINE, *line and *len point into the
 * frame's buffer and stay valid until the next frame_push, frame_next or
 * frame_free.  *lineno is the item's 1-based line number.
 */
enum frame_kind	 frame_next(struct frame *, const char **line, size_t *len,
		     uint64_t *lineno);

/*
 * At end of input: return the unterminated last line, if any, as
 * FRAME_LINE (or FRAME_NONE).  Call after frame_next returned FRAME_NONE.
 */
enum frame_kind	 frame_finish(struct frame *, const char **line, size_t *len,
		     uint64_t *lineno);

/* Bytes currently buffered (for memory accounting). */
size_t		 frame_buffered(const struct frame *);

#endif
