/*
 * msg.h -- parsing and validation of one data-protocol message (SPEC §3, §11).
 *
 * msg_parse turns one line into a struct msg or a protocol error.  All
 * validation happens here, so a message that parses is safe to apply: the
 * daemon never rejects a parsed message for its shape.  It uses cJSON and
 * nothing else; it knows nothing of sockets, scopes or the spool.
 */
#ifndef ERRRELAY_MSG_H
#define ERRRELAY_MSG_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define MSG_FIBER_MAX		128	/* bytes in a fiber id */
#define MSG_ID_MAX		64	/* bytes in a string message id */
#define MSG_DEPTH_MAX		64	/* nesting levels, top-level object = 1 */
#define MSG_EVENT_ID_LEN	32	/* hex digits of a normalised event_id */

enum msg_op {
	MSG_HELLO,
	MSG_SET,
	MSG_CRUMB,
	MSG_FORK,
	MSG_END,
	MSG_EVENT
};

/* Error codes of SPEC §3, in wire order.  MSG_OK is not an error. */
enum msg_err {
	MSG_OK = 0,
	MSG_E_BAD_JSON,
	MSG_E_LINE_TOO_LONG,
	MSG_E_BAD_OP,
	MSG_E_BAD_FIELD,
	MSG_E_TOO_LARGE,
	MSG_E_SPOOL_FULL,
	MSG_E_SHUTTING_DOWN,
	MSG_E_COUNT
};

/* The set fields, in the order of SPEC §3. */
enum msg_field {
	MSG_F_TAGS,
	MSG_F_EXTRA,
	MSG_F_CONTEXTS,
	MSG_F_USER,
	MSG_F_LEVEL,
	MSG_F_TRANSACTION,
	MSG_F_FINGERPRINT,
	MSG_F_COUNT
};

/*
 * A parsed message.  root owns the whole JSON tree; every cJSON pointer
 * below points into it (NULL when the field is absent).
 *
 * Invariants after a successful msg_parse:
 * - id_json is NULL or the compact JSON text of a valid id (an integer or a
 *   string of at most MSG_ID_MAX bytes), ready to echo in a reply;
 * - fiber/from are NUL-terminated strings of 1..MSG_FIBER_MAX bytes (an
 *   integer id is converted to its decimal text), valid when has_fiber /
 *   has_from;
 * - set fields: a cJSON_NULL item means "clear the field"; tags, extra,
 *   contexts, user are objects; tag values are strings, numbers, booleans
 *   or null (numbers and booleans are to be stored as their JSON text);
 *   level, transaction are strings; fingerprint an array of strings;
 * - crumb is an object; event is an object whose event_id, if present, was
 *   valid and whose normalised form is in event_id;
 * - op fields that the op requires are present (fork: fiber and from;
 *   end: fiber; event: event; crumb: crumb).
 */
struct msg {
	enum msg_op	 op;
	cJSON		*root;
	char		*id_json;

	int		 has_fiber;
	char		 fiber[MSG_FIBER_MAX + 1];
	int		 has_from;
	char		 from[MSG_FIBER_MAX + 1];

	/* hello */
	const char	*app;		/* NULL: "default" */
	int		 has_ack;
	int		 ack;
	const char	*sdk;

	/* set */
	cJSON		*field[MSG_F_COUNT];

	/* crumb */
	cJSON		*crumb;

	/* event */
	cJSON		*event;
	int		 has_event_id;
	char		 event_id[MSG_EVENT_ID_LEN + 1];
};

/*
 * A parse failure: the code, a human message (static or in text), and the
 * id when the message had a valid one (id_json, owned, may be NULL).
 */
struct msg_error {
	enum msg_err	 code;
	char		 text[160];
	char		*id_json;
};

/*
 * Parse one line (without its newline).  Returns 0 and fills *m, which the
 * caller releases with msg_free; or returns -1 and fills *e, which the
 * caller releases with msg_error_free.  Never both.
 */
int		 msg_parse(const char *line, size_t len, struct msg *m,
		     struct msg_error *e);
void		 msg_free(struct msg *);
void		 msg_error_free(struct msg_error *);

/* The wire name of an error code ("bad_json", ...). */
const char	*msg_err_name(enum msg_err);
/* The wire name of an op ("hello", ...). */
const char	*msg_op_name(enum msg_op);
/* The wire name of a set field ("tags", ...). */
const char	*msg_field_name(enum msg_field);

/* 1 if the buffer is valid UTF-8 (no overlongs, no surrogates), else 0. */
int		 msg_utf8_valid(const char *, size_t);

/*
 * Normalise an event_id: strip dashes, require exactly 32 hex digits,
 * lower-case them into out (33 bytes).  Returns 0 or -1.
 */
int		 msg_event_id_normalise(const char *in, char out[33]);

#endif
