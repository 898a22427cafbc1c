/*
 * errrelay.h -- liberrrelay, the C client of errrelayd (SPEC §3, §9).
 *
 * A small blocking client for the data protocol: one handle is one
 * connection to the data socket (default /run/errrelay.sock) that writes
 * newline-delimited JSON messages.  The daemon keeps the scope (tags,
 * extra, user, breadcrumbs...) per (process, fiber); this library holds no
 * scope at all, it only names the fiber each message belongs to.
 *
 *	struct errrelay	*h;
 *	char		 eid[ERRRELAY_EVENT_ID_SIZE];
 *	struct errrelay_tag tags[] = { { "route", "/cart" }, { "shard", "7" } };
 *	struct errrelay_scope sc = { .tags = tags, .ntags = 2,
 *	    .user = "{\"id\":\"42\"}" };
 *
 *	h = errrelay_open(NULL, "shop", ERRRELAY_ACK);
 *	errrelay_set(h, "req-17", &sc);
 *	errrelay_crumb(h, "req-17", "db", "SELECT cart", "info");
 *	if (errrelay_message(h, "req-17", "error", "cart is gone", eid) == -1)
 *		fprintf(stderr, "errrelay: %s\n", errrelay_error(h));
 *	errrelay_end(h, "req-17");
 *	errrelay_close(h);
 *
 * Modes.  Without ERRRELAY_ACK the connection is fire-and-forget: calls
 * return once their line is written and never read from the socket; the
 * daemon counts and logs what it rejects.  With ERRRELAY_ACK every message
 * carries an "id" and every call waits for its reply, so a call returns 0
 * only after the daemon accepted the message (for an event: after it was
 * committed to the spool) and -1 with the daemon's error code otherwise.
 *
 * Return values.  Calls that can fail return 0 or -1; after -1,
 * errrelay_error() says why in one line, errrelay_errkind() classifies it
 * and errrelay_errcode() gives the daemon's code when it refused.  A
 * successful call clears the error.
 *
 * Connection.  errrelay_open() connects at once and says hello; when that
 * fails the handle is still returned and every later call tries again, so
 * an application may start before the daemon.  When the connection is
 * lost (the daemon restarted, or closed an idle connection) the next call
 * reconnects and re-sends hello, once, before failing; the daemon keeps a
 * process's scopes across reconnects (for scope_grace).  A message whose
 * write or reply was cut off by the loss is sent again on the new
 * connection: events are deduplicated by event_id (the library fills one
 * when the event has none), set/fork/end are idempotent, and a crumb may in
 * that rare case be recorded twice.  After fork() the child notices that
 * the handle's connection belongs to its parent (whose pid the daemon saw)
 * and opens its own instead of writing into the parent's scopes.
 *
 * Timeouts.  Every wait -- connecting, writing (the daemon stops reading
 * when its spool cannot keep up), and a reply -- is bounded by the handle's
 * timeout (errrelay_set_timeout, default ERRRELAY_DEFAULT_TIMEOUT_MS).  A
 * call that timed out drops the connection, because a late reply could not
 * be told apart from the next one; the next call reconnects.
 *
 * Signals.  Writes use send(2) with MSG_NOSIGNAL: a daemon that goes away
 * never raises SIGPIPE in the caller.  EINTR is retried.
 *
 * Strings.  Every C string argument that the library puts into JSON
 * (tag keys and values, level, transaction, messages, fiber ids, the app
 * name) is escaped here: quotes, backslashes and control characters are
 * escaped, UTF-8 passes through unchanged, and an invalid UTF-8 sequence
 * becomes U+FFFD -- except in a fiber id or app name, which are names and
 * must be valid UTF-8.  Arguments documented as "JSON text" are checked to
 * be one valid UTF-8 JSON value of the stated type and passed on verbatim
 * (newlines between tokens become spaces, as the protocol is one line per
 * message); anything else fails with ERRRELAY_E_ARG and nothing is sent.
 *
 * Fiber ids.  A fiber is named by a string of 1..128 bytes; NULL, where
 * allowed, means the process scope.  The protocol treats the integer 123
 * and the string "123" as the same fiber, so integer ids (a coroutine
 * number, or a pointer cast to uintptr_t) are passed through
 * errrelay_fiber_u64().
 *
 * Threads.  A handle is not thread-safe.  Use one handle per thread, or
 * serialise every call on a shared handle -- including the errrelay_error()
 * that reads a failure -- with a mutex of your own.  Different handles are
 * independent.  Scopes belong to the process, not to the connection, so
 * all of a process's handles see the same scopes; but lines on different
 * connections are not ordered with respect to each other unless
 * ERRRELAY_ACK is on (then each call returns after its message was
 * applied), so keep one fiber's messages on one handle.
 *
 * The library never exits, never prints and never raises a signal; out of
 * memory is reported as ERRRELAY_E_NOMEM.  It exports only errrelay_*
 * symbols.
 */
#ifndef ERRRELAY_H
#define ERRRELAY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The data socket of a default install (SPEC §2). */
#define ERRRELAY_DEFAULT_SOCKET		"/run/errrelay.sock"

/* Room for an event id: 32 lowercase hex digits and the NUL. */
#define ERRRELAY_EVENT_ID_SIZE		33

/* The longest fiber id the protocol accepts, in bytes. */
#define ERRRELAY_FIBER_MAX		128

/* Room for the decimal text of any uint64_t and the NUL. */
#define ERRRELAY_FIBER_U64_SIZE		21

/* The reply timeout of a new handle, in milliseconds. */
#define ERRRELAY_DEFAULT_TIMEOUT_MS	5000

/* Flags of errrelay_open(). */
#define ERRRELAY_ACK	0x1	/* ask for replies and wait for each one */
#define ERRRELAY_LAZY	0x2	/* do not connect until the first call */

/* What kind of failure the last call met (errrelay_errkind). */
enum errrelay_errkind {
	ERRRELAY_E_NONE = 0,	/* the last call succeeded */
	ERRRELAY_E_ARG,		/* bad argument; nothing was sent */
	ERRRELAY_E_NOMEM,	/* out of memory; nothing was sent */
	ERRRELAY_E_CONNECT,	/* cannot connect, or the connection was
				 * lost and reconnecting failed */
	ERRRELAY_E_TIMEOUT,	/* no reply (or no room to write) in time */
	ERRRELAY_E_PROTO,	/* the daemon's answer was unreadable */
	ERRRELAY_E_REFUSED	/* the daemon answered "ok":false */
};

/* The opaque handle: one connection and its settings. */
struct errrelay;

/* One tag of errrelay_set: a NULL value removes the key from the scope. */
struct errrelay_tag {
	const char	*key;
	const char	*value;
};

/*
 * What errrelay_set merges into a scope.  Every member is optional: NULL
 * (or ntags 0) leaves that field of the scope alone.  Zero-initialise it
 * and fill what you need.
 *
 * tags/ntags: an array of ntags key/value pairs (plain C strings).
 * extra, user, contexts: JSON text of an object, merged key by key (a key
 *     whose value is null is removed), or "null" to clear the field.
 * fingerprint: JSON text of an array of strings, or "null".
 * level, transaction: plain C strings.  To clear them use
 *     errrelay_set_json(h, fiber, "{\"level\":null}").
 */
struct errrelay_scope {
	const struct errrelay_tag *tags;
	size_t		 ntags;
	const char	*extra;
	const char	*user;
	const char	*contexts;
	const char	*fingerprint;
	const char	*level;
	const char	*transaction;
};

/*
 * Create a handle for the data socket at path (NULL: the default
 * ERRRELAY_DEFAULT_SOCKET) whose connections say hello with app as their
 * routing key (NULL: the daemon's "default"), and, unless flags has
 * ERRRELAY_LAZY, connect and say hello now.  flags: ERRRELAY_ACK for
 * replies (see the top of this file), ERRRELAY_LAZY.
 *
 * Returns the handle, which the caller frees with errrelay_close(), even
 * when connecting failed: then errrelay_connected() is 0, errrelay_error()
 * says why and the next call tries again.  Returns NULL only when memory
 * ran out (errno ENOMEM), path does not fit a socket address
 * (ENAMETOOLONG), or path is empty or app is not valid UTF-8 (EINVAL).
 */
struct errrelay	*errrelay_open(const char *path, const char *app, int flags);

/*
 * Connect now (if not connected) and say hello.  Returns 0, or -1 with
 * the error set.  Optional: every other call connects when it needs to.
 */
int		 errrelay_connect(struct errrelay *h);

/* 1 if the handle holds an open connection, else 0. */
int		 errrelay_connected(const struct errrelay *h);

/*
 * Close the connection (if any) and free the handle.  Nothing is lost by
 * closing: every call already wrote its line.  h may be NULL.
 */
void		 errrelay_close(struct errrelay *h);

/*
 * Bound every wait of later calls to timeout_ms milliseconds; a negative
 * value waits forever.  The default is ERRRELAY_DEFAULT_TIMEOUT_MS.
 */
void		 errrelay_set_timeout(struct errrelay *h, int timeout_ms);

/*
 * The one-line message of the last failed call ("" after a success).  For
 * a refusal it names the daemon's code and text, e.g. "errrelayd refused
 * the event: too_large: merged event is larger than max_event_bytes
 * (2048)".  The string belongs to the handle and stays valid until the
 * next call on it.
 */
const char	*errrelay_error(const struct errrelay *h);

/* The kind of the last failure (enum errrelay_errkind). */
int		 errrelay_errkind(const struct errrelay *h);

/*
 * The daemon's error code ("bad_field", "spool_full", ...) when the last
 * call failed with ERRRELAY_E_REFUSED, else NULL.  Owned by the handle.
 */
const char	*errrelay_errcode(const struct errrelay *h);

/*
 * The errno of the system call that failed, when the last failure came
 * from one (ENOENT or ECONNREFUSED: no daemon listening), else 0.
 */
int		 errrelay_errno(const struct errrelay *h);

/*
 * Write the decimal text of n into buf and return buf, for passing an
 * integer fiber id.
 */
char		*errrelay_fiber_u64(char buf[ERRRELAY_FIBER_U64_SIZE],
		    uint64_t n);

/*
 * Merge s into the scope of fiber (NULL: the process scope).  Sends one
 * "set" message with the members of s that are set.  Returns 0, or -1 with
 * the error set (ERRRELAY_E_ARG, and nothing sent, for a NULL tag key or
 * JSON text that is not of the stated type).
 */
int		 errrelay_set(struct errrelay *h, const char *fiber,
		    const struct errrelay_scope *s);

/*
 * Set one tag of fiber's scope (NULL fiber: the process scope); a NULL
 * value removes the tag.  Returns 0 or -1.
 */
int		 errrelay_set_tag(struct errrelay *h, const char *fiber,
		    const char *key, const char *value);

/*
 * The general form of errrelay_set: fields is the JSON text of an object
 * whose members become the fields of the "set" message (tags, extra,
 * contexts, user, level, transaction, fingerprint; a field set to null is
 * cleared), e.g. "{\"level\":null,\"tags\":{\"a\":\"1\"}}".  It may not
 * carry "op", "id" or "fiber".  Returns 0 or -1.
 */
int		 errrelay_set_json(struct errrelay *h, const char *fiber,
		    const char *fields);

/*
 * Append a breadcrumb to fiber's scope (NULL: the process scope) with the
 * given category, message and level, each optional (NULL: left out).  The
 * daemon stamps the time of receipt.  Returns 0 or -1.
 */
int		 errrelay_crumb(struct errrelay *h, const char *fiber,
		    const char *category, const char *message,
		    const char *level);

/*
 * Append a breadcrumb given as the JSON text of an object (message,
 * category, level, type, data, timestamp).  Returns 0 or -1.
 */
int		 errrelay_crumb_json(struct errrelay *h, const char *fiber,
		    const char *crumb);

/*
 * Make fiber's scope a copy of from's scope (a child task inheriting its
 * parent's context; an unknown from gives an empty scope).  Both are
 * required.  Returns 0 or -1.
 */
int		 errrelay_fork(struct errrelay *h, const char *fiber,
		    const char *from);

/*
 * The fiber is done: the daemon frees its scope.  Call it when the task
 * ends, or its scope lingers until fiber_ttl.  Returns 0 or -1.
 */
int		 errrelay_end(struct errrelay *h, const char *fiber);

/*
 * Capture an event of fiber (NULL: process scope only): event is the JSON
 * text of a Sentry event object; the daemon merges the scopes into it.
 * When it has no "event_id" the library adds a random one (uuid4), so a
 * resend after a lost connection is stored once; one it has must be a
 * string of 32 hex digits once dashes are removed.
 *
 * When event_id is not NULL it receives (ERRRELAY_EVENT_ID_SIZE bytes) the
 * event's id as 32 lowercase hex digits: with ERRRELAY_ACK the one the
 * daemon acknowledged after committing the event to its spool, without it
 * the one that was sent; "" on failure.  Returns 0 or -1.
 */
int		 errrelay_event(struct errrelay *h, const char *fiber,
		    const char *event, char *event_id);

/*
 * Capture an event made of message and level (NULL: the daemon's default,
 * "error"), as errrelay_event() does.  Returns 0 or -1.
 */
int		 errrelay_message(struct errrelay *h, const char *fiber,
		    const char *level, const char *message, char *event_id);

#ifdef __cplusplus
}
#endif

#endif
