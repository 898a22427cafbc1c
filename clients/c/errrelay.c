/*
 * errrelay.c -- liberrrelay: the blocking C client of the data protocol
 * (see errrelay.h for the contract, SPEC §3 for the wire).
 *
 * Each call builds one message line in a growable buffer, writes it with
 * send(MSG_NOSIGNAL) on a non-blocking socket (poll bounds every wait),
 * and in ack mode reads reply lines until the one carrying its id.  The
 * message text is written by hand so its shape is exact and numbers are
 * never re-encoded: C strings go through er_buf_str (JSON escaping, UTF-8
 * repair), caller-supplied JSON text is checked with cJSON and copied
 * verbatim (er_json_parse, er_buf_raw).  cJSON also parses the replies.
 *
 * The library is meant to live inside other programs: it never exits,
 * prints or raises a signal, and allocates with plain malloc, reporting
 * failure as ERRRELAY_E_NOMEM (so it does not use common/xmalloc, whose
 * out-of-memory policy is the daemon's).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clients/c/errrelay.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION	"0"
#endif
#define ER_SDK		"liberrrelay/" PACKAGE_VERSION

#define ER_ERRLEN	512		/* one error line */
#define ER_CODELEN	64		/* a daemon error code */
#define ER_RBUF_MIN	4096
#define ER_REPLY_MAX	(64 * 1024)	/* a longer reply line is garbage */

/* The outcome of one step of I/O; the handle's error says why. */
enum er_io {
	ER_OK,
	ER_LOST,	/* the peer went away: worth one reconnect */
	ER_FAIL		/* anything else: give up */
};

/* What a piece of caller-supplied JSON text must be. */
enum er_jtype {
	ER_J_OBJECT,
	ER_J_OBJECT_OR_NULL,
	ER_J_ARRAY_OR_NULL
};

/*
 * The handle.  fd is -1 when not connected; pid is the process that
 * connected fd (the daemon keys scopes by it).  rbuf holds reply bytes
 * read but not yet consumed, rlen of them; it is emptied whenever the
 * connection is dropped.
 */
struct errrelay {
	char		*path;
	char		*app;		/* NULL: the daemon's default */
	int		 flags;
	int		 timeout_ms;	/* < 0: forever */
	int		 fd;
	pid_t		 pid;
	long long	 last_id;
	char		*rbuf;
	size_t		 rlen;
	size_t		 rcap;
	int		 kind;		/* enum errrelay_errkind */
	int		 sys_errno;
	char		 code[ER_CODELEN];
	char		 err[ER_ERRLEN];
};

/* A growable output buffer; oom is set once an allocation failed. */
struct er_buf {
	char		*p;
	size_t		 len;
	size_t		 cap;
	int		 oom;
};

static void	er_err(struct errrelay *, int, int, const char *, ...)
		    __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------ errors */

static void
er_clear(struct errrelay *h)
{
	h->kind = ERRRELAY_E_NONE;
	h->sys_errno = 0;
	h->code[0] = '\0';
	h->err[0] = '\0';
}

/* Record a failure of the given kind (and errno, 0 if none). */
static void
er_err(struct errrelay *h, int kind, int sys, const char *fmt, ...)
{
	va_list	 ap;

	h->kind = kind;
	h->sys_errno = sys;
	h->code[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(h->err, sizeof h->err, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ buffers */

static void
er_buf_add(struct er_buf *b, const char *s, size_t n)
{
	size_t	 ncap;
	char	*np;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		ncap = b->cap == 0 ? 256 : b->cap;
		while (ncap < b->len + n + 1) {
			if (ncap > SIZE_MAX / 2) {
				b->oom = 1;
				return;
			}
			ncap *= 2;
		}
		if ((np = realloc(b->p, ncap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
er_buf_lit(struct er_buf *b, const char *s)
{
	er_buf_add(b, s, strlen(s));
}

/*
 * The length of the valid UTF-8 sequence that starts at s (1 to 4), or 0
 * if none does (a stray continuation byte, an overlong form, a surrogate,
 * a code point above U+10FFFF, or a sequence cut short by the NUL).
 */
static size_t
er_utf8_len(const unsigned char *s)
{
	unsigned char	 c = s[0], lo = 0x80, hi = 0xbf;
	size_t		 n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	return n;
}

/* 1 if the NUL-terminated s is valid UTF-8. */
static int
er_utf8_valid(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	while (*p != '\0') {
		if ((n = er_utf8_len(p)) == 0)
			return 0;
		p += n;
	}
	return 1;
}

/*
 * Append s as a JSON string: quotes, backslashes and control characters
 * escaped, valid UTF-8 copied as is, each invalid byte replaced by U+FFFD.
 */
static void
er_buf_str(struct er_buf *b, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)s, *run;
	char			 esc[7];
	size_t			 n;

	er_buf_add(b, "\"", 1);
	while (*p != '\0') {
		/* Copy a run of bytes that need nothing in one go. */
		run = p;
		while (*p >= 0x20 && *p != '"' && *p != '\\' &&
		    (n = er_utf8_len(p)) != 0)
			p += n;
		er_buf_add(b, (const char *)run, (size_t)(p - run));
		if (*p == '\0')
			break;
		switch (*p) {
		case '"':
			er_buf_add(b, "\\\"", 2);
			break;
		case '\\':
			er_buf_add(b, "\\\\", 2);
			break;
		case '\n':
			er_buf_add(b, "\\n", 2);
			break;
		case '\r':
			er_buf_add(b, "\\r", 2);
			break;
		case '\t':
			er_buf_add(b, "\\t", 2);
			break;
		case '\b':
			er_buf_add(b, "\\b", 2);
			break;
		case '\f':
			er_buf_add(b, "\\f", 2);
			break;
		default:
			if (*p < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 0xf];
				er_buf_add(b, esc, 6);
			} else	/* an invalid UTF-8 byte */
				er_buf_add(b, "\xef\xbf\xbd", 3);
			break;
		}
		p++;
	}
	er_buf_add(b, "\"", 1);
}

/*
 * Append JSON text already checked by er_json_parse.  A valid JSON text
 * can hold a raw CR or LF only between tokens, where a space means the
 * same, so this keeps the message on one line without touching any value.
 */
static void
er_buf_raw(struct er_buf *b, const char *s, size_t n)
{
	size_t	 i, start = 0;

	for (i = 0; i < n; i++) {
		if (s[i] != '\n' && s[i] != '\r')
			continue;
		er_buf_add(b, s + start, i - start);
		er_buf_add(b, " ", 1);
		start = i + 1;
	}
	er_buf_add(b, s + start, n - start);
}

/*
 * Find the members of the JSON object text s (checked by er_json_parse):
 * *off and *len delimit what lies between its braces, 0 long when it has
 * no members.
 */
static void
er_obj_inner(const char *s, size_t *off, size_t *len)
{
	size_t	 a, z, i;

	a = strchr(s, '{') - s + 1;
	z = strrchr(s, '}') - s;
	for (i = a; i < z; i++) {
		if (strchr(" \t\r\n", s[i]) == NULL)
			break;
	}
	*off = a;
	*len = i == z ? 0 : z - a;
}

/*
 * Check that text is one valid UTF-8 JSON value of the given type.
 * Returns its parse (the caller deletes it), or NULL with an E_ARG error
 * naming what (or E_NOMEM).
 */
static cJSON *
er_json_parse(struct errrelay *h, const char *what, const char *text,
    enum er_jtype type)
{
	cJSON		*j;
	const char	*want;
	int		 good;

	switch (type) {
	case ER_J_OBJECT:
		want = "a JSON object";
		break;
	case ER_J_OBJECT_OR_NULL:
		want = "a JSON object or null";
		break;
	default:
		want = "a JSON array or null";
		break;
	}
	if (!er_utf8_valid(text)) {
		er_err(h, ERRRELAY_E_ARG, 0, "%s is not valid UTF-8", what);
		return NULL;
	}
	if ((j = cJSON_ParseWithOpts(text, NULL, 1)) == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "%s is not %s: invalid JSON",
		    what, want);
		return NULL;
	}
	switch (type) {
	case ER_J_OBJECT:
		good = cJSON_IsObject(j);
		break;
	case ER_J_OBJECT_OR_NULL:
		good = cJSON_IsObject(j) || cJSON_IsNull(j);
		break;
	default:
		good = cJSON_IsArray(j) || cJSON_IsNull(j);
		break;
	}
	if (!good) {
		er_err(h, ERRRELAY_E_ARG, 0, "%s is not %s", what, want);
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* Check JSON text as er_json_parse does, keeping only the verdict. */
static int
er_json_check(struct errrelay *h, const char *what, const char *text,
    enum er_jtype type)
{
	cJSON	*j;

	if (text == NULL)
		return 0;
	if ((j = er_json_parse(h, what, text, type)) == NULL)
		return -1;
	cJSON_Delete(j);
	return 0;
}

/*
 * Check a fiber id: required or not, 1..ERRRELAY_FIBER_MAX bytes of valid
 * UTF-8.  Returns 0, or -1 with an E_ARG error naming what.
 */
static int
er_fiber_check(struct errrelay *h, const char *what, const char *fiber,
    int required)
{
	size_t	 n;

	if (fiber == NULL) {
		if (!required)
			return 0;
		er_err(h, ERRRELAY_E_ARG, 0, "%s is required", what);
		return -1;
	}
	n = strlen(fiber);
	if (n == 0 || n > ERRRELAY_FIBER_MAX) {
		er_err(h, ERRRELAY_E_ARG, 0, "%s must be 1 to %d bytes, not %zu",
		    what, ERRRELAY_FIBER_MAX, n);
		return -1;
	}
	if (!er_utf8_valid(fiber)) {
		er_err(h, ERRRELAY_E_ARG, 0, "%s is not valid UTF-8", what);
		return -1;
	}
	return 0;
}

/*
 * Start the line of a message: {"op":OP, then "id" in ack mode, then
 * "fiber" if one is given.  Returns the id (0 without ack).
 */
static long long
er_begin(struct errrelay *h, struct er_buf *b, const char *op,
    const char *fiber)
{
	char		 num[32];
	long long	 id = 0;

	er_buf_lit(b, "{\"op\":\"");
	er_buf_lit(b, op);
	er_buf_lit(b, "\"");
	if (h->flags & ERRRELAY_ACK) {
		id = ++h->last_id;
		snprintf(num, sizeof num, ",\"id\":%lld", id);
		er_buf_lit(b, num);
	}
	if (fiber != NULL) {
		er_buf_lit(b, ",\"fiber\":");
		er_buf_str(b, fiber);
	}
	return id;
}

/* ------------------------------------------------------------ time */

/* A deadline in CLOCK_MONOTONIC milliseconds, -1 for none. */
static int64_t
er_deadline(const struct errrelay *h)
{
	struct timespec	 ts;

	if (h->timeout_ms < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	    h->timeout_ms;
}

/* Milliseconds left before deadline, for poll(2): -1 forever, 0 passed. */
static int
er_left(int64_t deadline)
{
	struct timespec	 ts;
	int64_t		 now;

	if (deadline < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now >= deadline)
		return 0;
	return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* ------------------------------------------------------------ I/O */

static void
er_disconnect(struct errrelay *h)
{
	if (h->fd != -1)
		close(h->fd);
	h->fd = -1;
	h->rlen = 0;
}

/*
 * Write the whole of p, waiting for room until deadline.  Returns ER_OK,
 * ER_LOST if the daemon went away, ER_FAIL on a timeout or another error
 * (the error is set in both cases).
 */
static enum er_io
er_write(struct errrelay *h, const char *p, size_t len, int64_t deadline)
{
	struct pollfd	 pfd;
	ssize_t		 n;
	int		 r, e;

	while (len > 0) {
		n = send(h->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		e = n == 0 ? EIO : errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			pfd.fd = h->fd;
			pfd.events = POLLOUT;
			pfd.revents = 0;
			r = poll(&pfd, 1, er_left(deadline));
			if (r == -1 && errno != EINTR) {
				er_err(h, ERRRELAY_E_CONNECT, errno,
				    "poll on %s: %s", h->path,
				    strerror(errno));
				return ER_FAIL;
			}
			if (r == 0) {
				er_err(h, ERRRELAY_E_TIMEOUT, 0, "errrelayd "
				    "on %s took no data for %d ms (is it "
				    "stuck or overloaded?)", h->path,
				    h->timeout_ms);
				return ER_FAIL;
			}
			continue;
		}
		er_err(h, ERRRELAY_E_CONNECT, e, "connection to %s lost: %s",
		    h->path, strerror(e));
		if (e == EPIPE || e == ECONNRESET || e == ENOTCONN)
			return ER_LOST;
		return ER_FAIL;
	}
	return ER_OK;
}

/* Make room in rbuf for more bytes; -1 when it may not grow further. */
static int
er_rbuf_room(struct errrelay *h)
{
	size_t	 ncap;
	char	*np;

	if (h->rlen < h->rcap)
		return 0;
	if (h->rcap >= ER_REPLY_MAX)
		return -1;
	ncap = h->rcap == 0 ? ER_RBUF_MIN : h->rcap * 2;
	if ((np = realloc(h->rbuf, ncap)) == NULL)
		return -1;
	h->rbuf = np;
	h->rcap = ncap;
	return 0;
}

/*
 * Read reply lines until the one for id (a reply with another id is a
 * stale one and skipped; a reply with no id answers a line the daemon
 * could not read, which can only be ours as every earlier line has been
 * answered).  Returns ER_OK with the reply in *out (the caller deletes
 * it), ER_LOST on EOF, ER_FAIL on timeout or garbage.
 */
static enum er_io
er_read_reply(struct errrelay *h, long long id, int64_t deadline,
    cJSON **out)
{
	struct pollfd	 pfd;
	cJSON		*j, *jid;
	char		*nl;
	size_t		 n;
	ssize_t		 got;
	int		 r;

	for (;;) {
		while (h->rlen > 0 &&
		    (nl = memchr(h->rbuf, '\n', h->rlen)) != NULL) {
			*nl = '\0';
			n = (size_t)(nl - h->rbuf) + 1;
			j = n > 1 ? cJSON_Parse(h->rbuf) : NULL;
			if (n > 1 && !cJSON_IsObject(j)) {
				er_err(h, ERRRELAY_E_PROTO, 0, "unreadable "
				    "reply from errrelayd on %s: %.80s",
				    h->path, h->rbuf);
				cJSON_Delete(j);
				return ER_FAIL;
			}
			memmove(h->rbuf, h->rbuf + n, h->rlen - n);
			h->rlen -= n;
			if (j == NULL)
				continue;	/* a blank line */
			jid = cJSON_GetObjectItemCaseSensitive(j, "id");
			if (jid != NULL && !(cJSON_IsNumber(jid) &&
			    jid->valuedouble == (double)id)) {
				cJSON_Delete(j);
				continue;
			}
			*out = j;
			return ER_OK;
		}
		if (er_rbuf_room(h) == -1) {
			er_err(h, ERRRELAY_E_PROTO, 0, "reply from errrelayd "
			    "on %s is over %d bytes", h->path, ER_REPLY_MAX);
			return ER_FAIL;
		}
		got = recv(h->fd, h->rbuf + h->rlen, h->rcap - h->rlen,
		    MSG_DONTWAIT);
		if (got > 0) {
			h->rlen += (size_t)got;
			continue;
		}
		if (got == 0) {
			er_err(h, ERRRELAY_E_CONNECT, 0, "errrelayd closed the "
			    "connection on %s without answering", h->path);
			return ER_LOST;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			er_err(h, ERRRELAY_E_CONNECT, errno, "connection to "
			    "%s lost: %s", h->path, strerror(errno));
			return errno == ECONNRESET ? ER_LOST : ER_FAIL;
		}
		pfd.fd = h->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		r = poll(&pfd, 1, er_left(deadline));
		if (r == -1 && errno != EINTR) {
			er_err(h, ERRRELAY_E_CONNECT, errno, "poll on %s: %s",
			    h->path, strerror(errno));
			return ER_FAIL;
		}
		if (r == 0) {
			er_err(h, ERRRELAY_E_TIMEOUT, 0, "no reply from "
			    "errrelayd on %s within %d ms", h->path,
			    h->timeout_ms);
			return ER_FAIL;
		}
	}
}

/*
 * Judge a reply to the message what.  Returns 0 for "ok":true (copying a
 * valid "event_id" into eid when eid is not NULL), -1 with an E_REFUSED
 * error naming the daemon's code and text for "ok":false, -1 with E_PROTO
 * otherwise.
 */
static int
er_judge(struct errrelay *h, const cJSON *rep, const char *what, char *eid)
{
	const cJSON	*ok, *v, *code, *msg;
	size_t		 i;

	ok = cJSON_GetObjectItemCaseSensitive(rep, "ok");
	if (cJSON_IsTrue(ok)) {
		v = cJSON_GetObjectItemCaseSensitive(rep, "event_id");
		if (eid != NULL && cJSON_IsString(v) &&
		    strlen(v->valuestring) == ERRRELAY_EVENT_ID_SIZE - 1) {
			for (i = 0; i < ERRRELAY_EVENT_ID_SIZE - 1; i++) {
				if (strchr("0123456789abcdef",
				    v->valuestring[i]) == NULL)
					break;
			}
			if (i == ERRRELAY_EVENT_ID_SIZE - 1)
				memcpy(eid, v->valuestring,
				    ERRRELAY_EVENT_ID_SIZE);
		}
		return 0;
	}
	if (!cJSON_IsFalse(ok)) {
		er_err(h, ERRRELAY_E_PROTO, 0, "reply from errrelayd on %s "
		    "has no \"ok\"", h->path);
		return -1;
	}
	code = cJSON_GetObjectItemCaseSensitive(rep, "error");
	msg = cJSON_GetObjectItemCaseSensitive(rep, "message");
	er_err(h, ERRRELAY_E_REFUSED, 0, "errrelayd refused the %s: %s: %s",
	    what, cJSON_IsString(code) ? code->valuestring : "?",
	    cJSON_IsString(msg) ? msg->valuestring : "(no message)");
	snprintf(h->code, sizeof h->code, "%s", cJSON_IsString(code) ?
	    code->valuestring : "?");
	return -1;
}

/*
 * Connect to the daemon and say hello (waiting for its reply in ack
 * mode).  Returns 0 connected, or -1 not connected, with the error set.
 */
static int
er_connect(struct errrelay *h)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv;
	struct er_buf		 b = { NULL, 0, 0, 0 };
	cJSON			*rep = NULL;
	int64_t			 deadline;
	long long		 id;
	int			 fd, e, fl, rc;
	enum er_io		 r;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, h->path, strlen(h->path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		er_err(h, ERRRELAY_E_CONNECT, errno, "socket: %s",
		    strerror(errno));
		return -1;
	}
	/* A blocking connect waits SO_SNDTIMEO for a full listen queue. */
	if (h->timeout_ms >= 0) {
		tv.tv_sec = h->timeout_ms / 1000;
		tv.tv_usec = (h->timeout_ms % 1000) * 1000;
		if (tv.tv_sec == 0 && tv.tv_usec == 0)
			tv.tv_usec = 1000;
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}
	while ((rc = connect(fd, (struct sockaddr *)&sun, sizeof sun)) == -1 &&
	    errno == EINTR)
		;
	if (rc == -1) {
		e = errno;
		close(fd);
		if (e == EAGAIN || e == EWOULDBLOCK)
			er_err(h, ERRRELAY_E_CONNECT, e, "cannot connect to "
			    "%s: its listen queue stayed full for %d ms",
			    h->path, h->timeout_ms);
		else
			er_err(h, ERRRELAY_E_CONNECT, e, "cannot connect to "
			    "%s: %s", h->path, strerror(e));
		return -1;
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) {
		e = errno;
		close(fd);
		er_err(h, ERRRELAY_E_CONNECT, e, "fcntl: %s", strerror(e));
		return -1;
	}
	h->fd = fd;
	h->pid = getpid();
	h->rlen = 0;

	id = er_begin(h, &b, "hello", NULL);
	if (h->app != NULL) {
		er_buf_lit(&b, ",\"app\":");
		er_buf_str(&b, h->app);
	}
	er_buf_lit(&b, (h->flags & ERRRELAY_ACK) ? ",\"ack\":true" :
	    ",\"ack\":false");
	er_buf_lit(&b, ",\"sdk\":\"" ER_SDK "\"}\n");
	if (b.oom) {
		er_err(h, ERRRELAY_E_NOMEM, ENOMEM, "out of memory");
		goto fail;
	}
	deadline = er_deadline(h);
	if ((r = er_write(h, b.p, b.len, deadline)) != ER_OK)
		goto fail;
	if (h->flags & ERRRELAY_ACK) {
		if ((r = er_read_reply(h, id, deadline, &rep)) != ER_OK)
			goto fail;
		if (er_judge(h, rep, "hello", NULL) == -1)
			goto fail;
		cJSON_Delete(rep);
	}
	free(b.p);
	return 0;

fail:
	cJSON_Delete(rep);
	free(b.p);
	er_disconnect(h);
	return -1;
}

/*
 * 1 if the connection is no longer usable before anything is written on
 * it: the process forked since it connected (the connection names the
 * parent), or the daemon closed it (an idle timeout, a restart).  Bytes
 * found waiting are kept for er_read_reply in ack mode and dropped
 * otherwise (a fire-and-forget connection gets no replies).
 */
static int
er_stale(struct errrelay *h)
{
	struct pollfd	 pfd;
	char		 junk[512];
	ssize_t		 n;
	int		 r;

	if (h->pid != getpid())
		return 1;
	for (;;) {
		pfd.fd = h->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if ((r = poll(&pfd, 1, 0)) == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		if (pfd.revents & POLLNVAL)
			return 1;
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			return 0;
		if (h->flags & ERRRELAY_ACK) {
			if (er_rbuf_room(h) == -1)
				return 0;	/* leave the rest unread */
			n = recv(h->fd, h->rbuf + h->rlen, h->rcap - h->rlen,
			    MSG_DONTWAIT);
			if (n > 0)
				h->rlen += (size_t)n;
		} else
			n = recv(h->fd, junk, sizeof junk, MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno != EAGAIN && errno != EWOULDBLOCK;
	}
}

/*
 * Send the message line b (id: its "id", or 0 without ack) and, in ack
 * mode, wait for and judge its reply.  At most one (re)connect per call:
 * a handle without a connection connects first; a connection found lost
 * on the way is replaced once and the line sent again.  Frees b.
 * Returns 0 or -1 with the error set.
 */
static int
er_call(struct errrelay *h, struct er_buf *b, long long id, const char *what,
    char *eid)
{
	cJSON		*rep = NULL;
	int		 fresh = 0, rc;
	enum er_io	 r;

	if (b->oom) {
		free(b->p);
		er_err(h, ERRRELAY_E_NOMEM, ENOMEM, "out of memory");
		return -1;
	}
	if (h->fd != -1 && er_stale(h))
		er_disconnect(h);
	for (;;) {
		if (h->fd == -1) {
			if (fresh || er_connect(h) == -1) {
				free(b->p);
				return -1;
			}
			fresh = 1;
		}
		r = er_write(h, b->p, b->len, er_deadline(h));
		if (r == ER_OK && (h->flags & ERRRELAY_ACK))
			r = er_read_reply(h, id, er_deadline(h), &rep);
		if (r == ER_OK)
			break;
		er_disconnect(h);
		if (r == ER_LOST && !fresh)
			continue;
		free(b->p);
		return -1;
	}
	free(b->p);
	if (!(h->flags & ERRRELAY_ACK))
		return 0;
	rc = er_judge(h, rep, what, eid);
	if (rc == -1 && h->kind == ERRRELAY_E_PROTO)
		er_disconnect(h);
	cJSON_Delete(rep);
	return rc;
}

/* ------------------------------------------------------------ the API */

struct errrelay *
errrelay_open(const char *path, const char *app, int flags)
{
	struct sockaddr_un	 sun;
	struct errrelay		*h;

	if (path == NULL)
		path = ERRRELAY_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof sun.sun_path || *path == '\0') {
		errno = *path == '\0' ? EINVAL : ENAMETOOLONG;
		return NULL;
	}
	if (app != NULL && !er_utf8_valid(app)) {
		errno = EINVAL;
		return NULL;
	}
	if ((h = calloc(1, sizeof *h)) == NULL)
		return NULL;
	h->fd = -1;
	h->flags = flags;
	h->timeout_ms = ERRRELAY_DEFAULT_TIMEOUT_MS;
	if ((h->path = strdup(path)) == NULL ||
	    (app != NULL && (h->app = strdup(app)) == NULL)) {
		free(h->path);
		free(h);
		errno = ENOMEM;
		return NULL;
	}
	if (!(flags & ERRRELAY_LAZY))
		er_connect(h);
	return h;
}

int
errrelay_connect(struct errrelay *h)
{
	er_clear(h);
	if (h->fd != -1 && er_stale(h))
		er_disconnect(h);
	if (h->fd != -1)
		return 0;
	return er_connect(h);
}

int
errrelay_connected(const struct errrelay *h)
{
	return h->fd != -1;
}

void
errrelay_close(struct errrelay *h)
{
	if (h == NULL)
		return;
	er_disconnect(h);
	free(h->rbuf);
	free(h->path);
	free(h->app);
	free(h);
}

void
errrelay_set_timeout(struct errrelay *h, int timeout_ms)
{
	h->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

const char *
errrelay_error(const struct errrelay *h)
{
	return h->err;
}

int
errrelay_errkind(const struct errrelay *h)
{
	return h->kind;
}

const char *
errrelay_errcode(const struct errrelay *h)
{
	return h->kind == ERRRELAY_E_REFUSED ? h->code : NULL;
}

int
errrelay_errno(const struct errrelay *h)
{
	return h->sys_errno;
}

char *
errrelay_fiber_u64(char buf[ERRRELAY_FIBER_U64_SIZE], uint64_t n)
{
	snprintf(buf, ERRRELAY_FIBER_U64_SIZE, "%" PRIu64, n);
	return buf;
}

int
errrelay_set(struct errrelay *h, const char *fiber,
    const struct errrelay_scope *s)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	long long	 id;
	size_t		 i;

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 0) == -1)
		return -1;
	if (s == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "no scope given");
		return -1;
	}
	if (s->ntags > 0 && s->tags == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "ntags is %zu but tags is NULL",
		    s->ntags);
		return -1;
	}
	for (i = 0; i < s->ntags; i++) {
		if (s->tags[i].key == NULL) {
			er_err(h, ERRRELAY_E_ARG, 0, "tag %zu has no key", i);
			return -1;
		}
	}
	if (er_json_check(h, "extra", s->extra, ER_J_OBJECT_OR_NULL) == -1 ||
	    er_json_check(h, "user", s->user, ER_J_OBJECT_OR_NULL) == -1 ||
	    er_json_check(h, "contexts", s->contexts,
	    ER_J_OBJECT_OR_NULL) == -1 ||
	    er_json_check(h, "fingerprint", s->fingerprint,
	    ER_J_ARRAY_OR_NULL) == -1)
		return -1;

	id = er_begin(h, &b, "set", fiber);
	if (s->ntags > 0) {
		er_buf_lit(&b, ",\"tags\":{");
		for (i = 0; i < s->ntags; i++) {
			if (i > 0)
				er_buf_lit(&b, ",");
			er_buf_str(&b, s->tags[i].key);
			er_buf_lit(&b, ":");
			if (s->tags[i].value == NULL)
				er_buf_lit(&b, "null");
			else
				er_buf_str(&b, s->tags[i].value);
		}
		er_buf_lit(&b, "}");
	}
	if (s->extra != NULL) {
		er_buf_lit(&b, ",\"extra\":");
		er_buf_raw(&b, s->extra, strlen(s->extra));
	}
	if (s->user != NULL) {
		er_buf_lit(&b, ",\"user\":");
		er_buf_raw(&b, s->user, strlen(s->user));
	}
	if (s->contexts != NULL) {
		er_buf_lit(&b, ",\"contexts\":");
		er_buf_raw(&b, s->contexts, strlen(s->contexts));
	}
	if (s->fingerprint != NULL) {
		er_buf_lit(&b, ",\"fingerprint\":");
		er_buf_raw(&b, s->fingerprint, strlen(s->fingerprint));
	}
	if (s->level != NULL) {
		er_buf_lit(&b, ",\"level\":");
		er_buf_str(&b, s->level);
	}
	if (s->transaction != NULL) {
		er_buf_lit(&b, ",\"transaction\":");
		er_buf_str(&b, s->transaction);
	}
	er_buf_lit(&b, "}\n");
	return er_call(h, &b, id, "set", NULL);
}

int
errrelay_set_tag(struct errrelay *h, const char *fiber, const char *key,
    const char *value)
{
	struct errrelay_tag	 tag;
	struct errrelay_scope	 s;

	memset(&s, 0, sizeof s);
	tag.key = key;
	tag.value = value;
	s.tags = &tag;
	s.ntags = 1;
	return errrelay_set(h, fiber, &s);
}

int
errrelay_set_json(struct errrelay *h, const char *fiber, const char *fields)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	static const char *const reserved[] = { "op", "id", "fiber" };
	cJSON		*j;
	long long	 id;
	size_t		 i, off, len;

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 0) == -1)
		return -1;
	if (fields == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "no fields given");
		return -1;
	}
	if ((j = er_json_parse(h, "the set fields", fields,
	    ER_J_OBJECT)) == NULL)
		return -1;
	for (i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
		if (cJSON_GetObjectItemCaseSensitive(j, reserved[i]) != NULL) {
			er_err(h, ERRRELAY_E_ARG, 0, "the set fields may not "
			    "carry \"%s\"", reserved[i]);
			cJSON_Delete(j);
			return -1;
		}
	}
	cJSON_Delete(j);
	id = er_begin(h, &b, "set", fiber);
	er_obj_inner(fields, &off, &len);
	if (len > 0) {
		er_buf_lit(&b, ",");
		er_buf_raw(&b, fields + off, len);
	}
	er_buf_lit(&b, "}\n");
	return er_call(h, &b, id, "set", NULL);
}

int
errrelay_crumb(struct errrelay *h, const char *fiber, const char *category,
    const char *message, const char *level)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	long long	 id;
	const char	*sep = "";

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 0) == -1)
		return -1;
	id = er_begin(h, &b, "crumb", fiber);
	er_buf_lit(&b, ",\"crumb\":{");
	if (message != NULL) {
		er_buf_lit(&b, "\"message\":");
		er_buf_str(&b, message);
		sep = ",";
	}
	if (category != NULL) {
		er_buf_lit(&b, sep);
		er_buf_lit(&b, "\"category\":");
		er_buf_str(&b, category);
		sep = ",";
	}
	if (level != NULL) {
		er_buf_lit(&b, sep);
		er_buf_lit(&b, "\"level\":");
		er_buf_str(&b, level);
	}
	er_buf_lit(&b, "}}\n");
	return er_call(h, &b, id, "crumb", NULL);
}

int
errrelay_crumb_json(struct errrelay *h, const char *fiber, const char *crumb)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	long long	 id;

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 0) == -1)
		return -1;
	if (crumb == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "no crumb given");
		return -1;
	}
	if (er_json_check(h, "the crumb", crumb, ER_J_OBJECT) == -1)
		return -1;
	id = er_begin(h, &b, "crumb", fiber);
	er_buf_lit(&b, ",\"crumb\":");
	er_buf_raw(&b, crumb, strlen(crumb));
	er_buf_lit(&b, "}\n");
	return er_call(h, &b, id, "crumb", NULL);
}

int
errrelay_fork(struct errrelay *h, const char *fiber, const char *from)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	long long	 id;

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 1) == -1 ||
	    er_fiber_check(h, "from", from, 1) == -1)
		return -1;
	id = er_begin(h, &b, "fork", fiber);
	er_buf_lit(&b, ",\"from\":");
	er_buf_str(&b, from);
	er_buf_lit(&b, "}\n");
	return er_call(h, &b, id, "fork", NULL);
}

int
errrelay_end(struct errrelay *h, const char *fiber)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	long long	 id;

	er_clear(h);
	if (er_fiber_check(h, "fiber", fiber, 1) == -1)
		return -1;
	id = er_begin(h, &b, "end", fiber);
	er_buf_lit(&b, "}\n");
	return er_call(h, &b, id, "end", NULL);
}

/*
 * A random (version 4) UUID as 32 lowercase hex digits into out.
 * Returns 0, or -1 if the kernel gave no random bytes.
 */
static int
er_uuid4(char out[ERRRELAY_EVENT_ID_SIZE])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 r[16];
	size_t			 got = 0;
	ssize_t			 n;
	int			 i;

	while (got < sizeof r) {
		n = getrandom(r + got, sizeof r - got, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 0xf];
	}
	out[32] = '\0';
	return 0;
}

/*
 * Normalise an event_id as the daemon does: dashes removed, 32 hex
 * digits, lowercased into out.  Returns 0, or -1 if it is not one.
 */
static int
er_event_id_norm(const char *s, char out[ERRRELAY_EVENT_ID_SIZE])
{
	size_t	 n = 0;

	for (; *s != '\0'; s++) {
		if (*s == '-')
			continue;
		if (n == ERRRELAY_EVENT_ID_SIZE - 1 ||
		    strchr("0123456789abcdefABCDEF", *s) == NULL)
			return -1;
		out[n++] = (*s >= 'A' && *s <= 'F') ? *s - 'A' + 'a' : *s;
	}
	out[n] = '\0';
	return n == ERRRELAY_EVENT_ID_SIZE - 1 ? 0 : -1;
}

/* errrelay_event without clearing the error first (see there). */
static int
er_event(struct errrelay *h, const char *fiber, const char *event,
    char *event_id)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	char		 sent[ERRRELAY_EVENT_ID_SIZE];
	const cJSON	*v;
	cJSON		*j;
	long long	 id;
	size_t		 off, len;
	int		 has_id, rc;

	if (event_id != NULL)
		event_id[0] = '\0';
	if (er_fiber_check(h, "fiber", fiber, 0) == -1)
		return -1;
	if (event == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "no event given");
		return -1;
	}
	if ((j = er_json_parse(h, "the event", event, ER_J_OBJECT)) == NULL)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(j, "event_id");
	has_id = v != NULL;
	if (has_id && (!cJSON_IsString(v) ||
	    er_event_id_norm(v->valuestring, sent) == -1)) {
		er_err(h, ERRRELAY_E_ARG, 0, "the event's event_id is not a "
		    "string of 32 hex digits");
		cJSON_Delete(j);
		return -1;
	}
	cJSON_Delete(j);
	if (!has_id && er_uuid4(sent) == -1)
		sent[0] = '\0';		/* the daemon fills one */

	id = er_begin(h, &b, "event", fiber);
	er_buf_lit(&b, ",\"event\":{");
	er_obj_inner(event, &off, &len);
	if (!has_id && sent[0] != '\0') {
		er_buf_lit(&b, "\"event_id\":\"");
		er_buf_lit(&b, sent);
		er_buf_lit(&b, len > 0 ? "\"," : "\"");
	}
	er_buf_raw(&b, event + off, len);
	er_buf_lit(&b, "}}\n");
	if (event_id == NULL)
		return er_call(h, &b, id, "event", NULL);
	rc = er_call(h, &b, id, "event", event_id);
	if (rc == 0 && event_id[0] == '\0')
		memcpy(event_id, sent, sizeof sent);
	else if (rc == -1)
		event_id[0] = '\0';
	return rc;
}

int
errrelay_event(struct errrelay *h, const char *fiber, const char *event,
    char *event_id)
{
	er_clear(h);
	return er_event(h, fiber, event, event_id);
}

int
errrelay_message(struct errrelay *h, const char *fiber, const char *level,
    const char *message, char *event_id)
{
	struct er_buf	 b = { NULL, 0, 0, 0 };
	int		 rc;

	er_clear(h);
	if (event_id != NULL)
		event_id[0] = '\0';
	if (message == NULL) {
		er_err(h, ERRRELAY_E_ARG, 0, "no message given");
		return -1;
	}
	er_buf_lit(&b, "{\"message\":");
	er_buf_str(&b, message);
	if (level != NULL) {
		er_buf_lit(&b, ",\"level\":");
		er_buf_str(&b, level);
	}
	er_buf_lit(&b, "}");
	if (b.oom) {
		free(b.p);
		er_err(h, ERRRELAY_E_NOMEM, ENOMEM, "out of memory");
		return -1;
	}
	rc = er_event(h, fiber, b.p, event_id);
	free(b.p);
	return rc;
}
