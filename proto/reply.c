/*
 * reply.c -- the reply lines of the data protocol (SPEC §3; see reply.h).
 *
 * Replies are small and their member order is fixed by the contract, so
 * they are built as text rather than through cJSON.  The id arrives as
 * ready-made compact JSON (msg_parse made it); the message is escaped
 * here, and bytes that are not valid UTF-8 become U+FFFD so the line is
 * always valid JSON whatever text the caller passes.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "proto/msg.h"
#include "proto/reply.h"

struct reply_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

static void
reply_add(struct reply_buf *b, const char *s, size_t n)
{
	size_t	 ncap;

	if (b->len + n + 1 > b->cap) {
		ncap = b->cap == 0 ? 128 : b->cap;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		b->p = xrealloc(b->p, ncap);
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
reply_adds(struct reply_buf *b, const char *s)
{
	reply_add(b, s, strlen(s));
}

/*
 * Length of the UTF-8 sequence at s if it is valid, else 0 (the lead byte
 * says how long it should be; msg_utf8_valid judges it).
 */
static size_t
reply_utf8_len(const unsigned char *s, size_t n)
{
	size_t	 k;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n || !msg_utf8_valid((const char *)s, k))
		return 0;
	return k;
}

/* Append s as a JSON string, quotes included. */
static void
reply_add_string(struct reply_buf *b, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n, i, k;
	char			 esc[8];

	n = strlen(s);
	reply_add(b, "\"", 1);
	for (i = 0; i < n; i += k) {
		k = 1;
		switch (p[i]) {
		case '"':
			reply_add(b, "\\\"", 2);
			continue;
		case '\\':
			reply_add(b, "\\\\", 2);
			continue;
		case '\b':
			reply_add(b, "\\b", 2);
			continue;
		case '\f':
			reply_add(b, "\\f", 2);
			continue;
		case '\n':
			reply_add(b, "\\n", 2);
			continue;
		case '\r':
			reply_add(b, "\\r", 2);
			continue;
		case '\t':
			reply_add(b, "\\t", 2);
			continue;
		}
		if (p[i] < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", p[i]);
			reply_add(b, esc, 6);
			continue;
		}
		if ((k = reply_utf8_len(p + i, n - i)) == 0) {
			reply_add(b, "\\ufffd", 6);
			k = 1;
			continue;
		}
		reply_add(b, s + i, k);
	}
	reply_add(b, "\"", 1);
}

/* Finish the line and hand the buffer over. */
static char *
reply_done(struct reply_buf *b, size_t *len)
{
	reply_add(b, "}\n", 2);
	if (len != NULL)
		*len = b->len;
	return b->p;
}

char *
reply_ok(const char *id_json, const char *event_id, size_t *len)
{
	struct reply_buf	 b = { NULL, 0, 0 };

	reply_add(&b, "{", 1);
	if (id_json != NULL) {
		reply_adds(&b, "\"id\":");
		reply_adds(&b, id_json);
		reply_add(&b, ",", 1);
	}
	reply_adds(&b, "\"ok\":true");
	if (event_id != NULL) {
		reply_adds(&b, ",\"event_id\":");
		reply_add_string(&b, event_id);
	}
	return reply_done(&b, len);
}

char *
reply_error(const char *id_json, uint64_t lineno, enum msg_err code,
    const char *message, size_t *len)
{
	struct reply_buf	 b = { NULL, 0, 0 };
	char			 num[32];

	reply_add(&b, "{", 1);
	if (id_json != NULL) {
		reply_adds(&b, "\"id\":");
		reply_adds(&b, id_json);
		reply_add(&b, ",", 1);
	}
	reply_adds(&b, "\"ok\":false,\"error\":");
	reply_add_string(&b, msg_err_name(code));
	reply_adds(&b, ",\"message\":");
	reply_add_string(&b, message != NULL ? message : "");
	if (id_json == NULL) {
		snprintf(num, sizeof num, ",\"line\":%" PRIu64, lineno);
		reply_adds(&b, num);
	}
	return reply_done(&b, len);
}
