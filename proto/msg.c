/*
 * msg.c -- parsing and validation of one data-protocol message (SPEC §3,
 * §11; see msg.h).
 *
 * A line goes through, in order: UTF-8 validation, a scan of the raw text
 * (nesting depth, control characters, the JSON number grammar, which cJSON
 * is lax about), cJSON, and then the checks of the message itself: its
 * "id", its "op" and the known fields of that op.  Everything a later stage
 * of the daemon relies on is checked here, so a message that parses can be
 * applied without further checks.
 *
 * Integer ids and fiber ids are read from the raw text, not from cJSON's
 * double: 2^53 + 1 rounds to 2^53 as a double, and the contract says one
 * is accepted and the other is not.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/xmalloc.h"
#include "proto/msg.h"

/* 2^53, the largest integer id accepted, as decimal text. */
#define MSG_INT_MAX_TEXT	"9007199254740992"
#define MSG_INT_MAX_DIGITS	16
/* Room for "-" + 16 digits + NUL. */
#define MSG_INT_TEXT_LEN	(MSG_INT_MAX_DIGITS + 2)
/* Bytes of client text (a key) quoted in an error message. */
#define MSG_QUOTE_MAX		40

static const char *const msg_err_names[MSG_E_COUNT] = {
	"ok", "bad_json", "line_too_long", "bad_op", "bad_field", "too_large",
	"spool_full", "shutting_down"
};

static const char *const msg_op_names[] = {
	"hello", "set", "crumb", "fork", "end", "event"
};
#define MSG_OP_COUNT	(sizeof msg_op_names / sizeof msg_op_names[0])

static const char *const msg_field_names[MSG_F_COUNT] = {
	"tags", "extra", "contexts", "user", "level", "transaction",
	"fingerprint"
};

const char *
msg_err_name(enum msg_err code)
{
	if ((unsigned)code >= MSG_E_COUNT)
		return "unknown";
	return msg_err_names[code];
}

const char *
msg_op_name(enum msg_op op)
{
	if ((unsigned)op >= MSG_OP_COUNT)
		return "unknown";
	return msg_op_names[op];
}

const char *
msg_field_name(enum msg_field field)
{
	if ((unsigned)field >= MSG_F_COUNT)
		return "unknown";
	return msg_field_names[field];
}

/*
 * Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes at p
 * are not one: overlong forms, surrogates and code points above U+10FFFF
 * are invalid.
 */
static size_t
msg_utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char	c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		if (n < 2 || (p[1] & 0xc0) != 0x80)
			return 0;
		return 2;
	}
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && p[1] < 0xa0)		/* overlong */
			return 0;
		if (c == 0xed && p[1] >= 0xa0)		/* surrogate */
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && p[1] < 0x90)		/* overlong */
			return 0;
		if (c == 0xf4 && p[1] >= 0x90)		/* above U+10FFFF */
			return 0;
		return 4;
	}
	return 0;
}

int
msg_utf8_valid(const char *s, size_t len)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, k;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((k = msg_utf8_seq(p + i, len - i)) == 0)
			return 0;
		i += k;
	}
	return 1;
}

/*
 * Length of the longest prefix of s, at most max bytes, that does not cut
 * a UTF-8 sequence: for quoting client text in an error message.
 */
static int
msg_quote_len(const char *s)
{
	size_t	 n, i = 0, k;

	n = strlen(s);
	while (i < n) {
		k = msg_utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0 || i + k > MSG_QUOTE_MAX)
			break;
		i += k;
	}
	return (int)i;
}

int
msg_event_id_normalise(const char *in, char out[33])
{
	size_t	 n = 0;
	char	 c;

	for (; *in != '\0'; in++) {
		c = *in;
		if (c == '-')
			continue;
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		if (n == MSG_EVENT_ID_LEN)
			return -1;
		out[n++] = c;
	}
	if (n != MSG_EVENT_ID_LEN)
		return -1;
	out[n] = '\0';
	return 0;
}

static int
msg_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
msg_is_numchar(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' ||
	    c == 'e' || c == 'E';
}

/* Length of the run of number-like characters at s (at most n). */
static size_t
msg_numrun(const char *s, size_t n)
{
	size_t	 i = 0;

	while (i < n && msg_is_numchar(s[i]))
		i++;
	return i;
}

/*
 * Length of the JSON number (RFC 8259 grammar) at the start of s, or 0 if
 * s does not start with one.
 */
static size_t
msg_number_len(const char *s, size_t n)
{
	size_t	 i = 0, d;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9') {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	} else
		return 0;
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i;
}

static int
msg_is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/*
 * Length of the escape sequence at s (which starts with a backslash), or
 * 0 if it is not a JSON escape.  cJSON reads a bad \u escape as \u0000.
 */
static size_t
msg_escape_len(const char *s, size_t n)
{
	size_t	 i;

	if (n < 2)
		return 0;
	if (s[1] != '\0' && strchr("\"\\/bfnrt", s[1]) != NULL)
		return 2;
	if (s[1] != 'u' || n < 6)
		return 0;
	for (i = 2; i < 6; i++)
		if (!msg_is_hex(s[i]))
			return 0;
	return 6;
}

/*
 * Scan the raw text for what cJSON does not check: nesting deeper than
 * MSG_DEPTH_MAX (counting '[' and '{' outside strings), raw control
 * characters, bad escapes in strings, and numbers that break the JSON
 * grammar (cJSON takes "01" or "1." and hands them to strtod).  Returns 0,
 * or -1 with *why set.
 */
static int
msg_scan(const char *p, size_t len, const char **why)
{
	size_t		 i = 0, run;
	int		 depth = 0;
	unsigned char	 c;

	while (i < len) {
		c = (unsigned char)p[i];
		if (c == '"') {
			for (i++; i < len; i++) {
				c = (unsigned char)p[i];
				if (c == '"')
					break;
				if (c == '\\') {
					if ((run = msg_escape_len(p + i,
					    len - i)) == 0) {
						*why = "invalid JSON: bad "
						    "escape in a string";
						return -1;
					}
					i += run - 1;
				} else if (c < 0x20) {
					*why = "invalid JSON: control "
					    "character in a string";
					return -1;
				}
			}
			if (i >= len) {
				*why = "invalid JSON: unterminated string";
				return -1;
			}
			i++;
			continue;
		}
		if (c == '{' || c == '[') {
			if (++depth > MSG_DEPTH_MAX) {
				*why = "invalid JSON: nested deeper than 64 "
				    "levels";
				return -1;
			}
		} else if (c == '}' || c == ']')
			depth--;
		else if (c == '-' || (c >= '0' && c <= '9')) {
			run = msg_numrun(p + i, len - i);
			if (msg_number_len(p + i, run) != run) {
				*why = "invalid JSON: bad number";
				return -1;
			}
			i += run;
			continue;
		} else if (c < 0x20 && !msg_is_space((char)c)) {
			*why = "invalid JSON: control character";
			return -1;
		}
		i++;
	}
	return 0;
}

/*
 * Find the raw text of the k-th (from 0) number that is a direct member
 * value of the top-level object.  cJSON keeps members in text order, so
 * this is the text of the k-th numeric child of the root.  The text was
 * already checked by msg_scan.  Returns 0 and sets *start, *n, or -1.
 */
static int
msg_top_number(const char *p, size_t len, size_t k, const char **start,
    size_t *n)
{
	size_t	 i = 0, run, count = 0;
	int	 depth = 0;
	char	 c;

	while (i < len) {
		c = p[i];
		if (c == '"') {
			for (i++; i < len && p[i] != '"'; i++)
				if (p[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
			depth--;
		else if (c == '-' || (c >= '0' && c <= '9')) {
			run = msg_numrun(p + i, len - i);
			if (depth == 1 && count++ == k) {
				*start = p + i;
				*n = run;
				return 0;
			}
			i += run;
			continue;
		}
		i++;
	}
	return -1;
}

/* The digit of index k in the concatenation of a[0..alen) and b[..]. */
static char
msg_digit(const char *a, size_t alen, const char *b, size_t k)
{
	return k < alen ? a[k] : b[k - alen];
}

/*
 * If the JSON number text s[0..n) denotes an integer in [-2^53, 2^53]
 * ([0, 2^53] without allow_neg), write its canonical decimal text (no
 * sign for zero, no point, no exponent) to out and return 0; else -1.
 * Exact: works on the digits, not on a double.
 */
static int
msg_int_text(const char *s, size_t n, int allow_neg, char out[MSG_INT_TEXT_LEN])
{
	const char	*ip, *fp = "";
	size_t		 i = 0, ilen, flen = 0, dlen, first, last, k;
	long long	 exp = 0, e10;
	int		 neg = 0, eneg = 0;
	size_t		 sig, zeros, o = 0;

	if (msg_number_len(s, n) != n)
		return -1;
	if (s[i] == '-') {
		neg = 1;
		i++;
	}
	ip = s + i;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	ilen = (size_t)(s + i - ip);
	if (i < n && s[i] == '.') {
		fp = s + ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		flen = (size_t)(s + i - fp);
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (s[i] == '+' || s[i] == '-')
			eneg = s[i++] == '-';
		for (; i < n; i++)
			if (exp < 100000000)	/* beyond that: out of range */
				exp = exp * 10 + (s[i] - '0');
		if (eneg)
			exp = -exp;
	}

	/* The value is D * 10^(exp - flen), D the digits of ip and fp. */
	dlen = ilen + flen;
	for (first = 0; first < dlen && msg_digit(ip, ilen, fp, first) == '0';
	    first++)
		;
	if (first == dlen) {
		out[0] = '0';
		out[1] = '\0';
		return 0;
	}
	if (neg && !allow_neg)
		return -1;
	for (last = dlen - 1; msg_digit(ip, ilen, fp, last) == '0'; last--)
		;
	sig = last - first + 1;
	e10 = exp - (long long)flen + (long long)(dlen - 1 - last);
	if (e10 < 0)
		return -1;			/* a fraction is left */
	if (sig > MSG_INT_MAX_DIGITS || e10 > MSG_INT_MAX_DIGITS ||
	    sig + (size_t)e10 > MSG_INT_MAX_DIGITS)
		return -1;
	zeros = (size_t)e10;
	if (neg)
		out[o++] = '-';
	for (k = first; k <= last; k++)
		out[o++] = msg_digit(ip, ilen, fp, k);
	while (zeros-- > 0)
		out[o++] = '0';
	out[o] = '\0';
	if (sig + (size_t)e10 == MSG_INT_MAX_DIGITS &&
	    strcmp(out + neg, MSG_INT_MAX_TEXT) > 0)
		return -1;
	return 0;
}

/*
 * The canonical text of the integer that is the top-level member item, if
 * it is one in range (see msg_int_text).  Returns 0 or -1.
 */
static int
msg_member_int(const char *line, size_t len, const cJSON *root,
    const cJSON *item, int allow_neg, char out[MSG_INT_TEXT_LEN])
{
	const cJSON	*c;
	const char	*start;
	size_t		 k = 0, n;

	for (c = root->child; c != NULL && c != item; c = c->next)
		if (cJSON_IsNumber(c))
			k++;
	if (c == NULL || msg_top_number(line, len, k, &start, &n) == -1)
		return -1;
	return msg_int_text(start, n, allow_neg, out);
}

/* Fill *e and return -1.  The id, if any, is copied. */
static int __attribute__((format(printf, 4, 5)))
msg_fail(struct msg_error *e, enum msg_err code, const char *id_json,
    const char *fmt, ...)
{
	va_list	 ap;

	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	free(e->id_json);
	e->id_json = id_json != NULL ? xstrdup(id_json) : NULL;
	return -1;
}

#define MSG_BAD(m, e, ...) \
	msg_fail((e), MSG_E_BAD_FIELD, (m)->id_json, __VA_ARGS__)

/* A string of 1..max bytes. */
static int
msg_is_str(const cJSON *item, size_t max)
{
	size_t	 n;

	if (!cJSON_IsString(item) || item->valuestring == NULL)
		return 0;
	n = strlen(item->valuestring);
	return n >= 1 && n <= max;
}

/* A string, number (finite), boolean or null: a valid tag value. */
static int
msg_is_scalar(const cJSON *item)
{
	if (cJSON_IsNumber(item))
		return isfinite(item->valuedouble);
	return cJSON_IsString(item) || cJSON_IsBool(item) ||
	    cJSON_IsNull(item);
}

/* "id": an integer in range, or a string of at most MSG_ID_MAX bytes. */
static int
msg_parse_id(const char *line, size_t len, struct msg *m,
    struct msg_error *e)
{
	cJSON	*item;
	char	 num[MSG_INT_TEXT_LEN], *s;

	item = cJSON_GetObjectItemCaseSensitive(m->root, "id");
	if (item == NULL)
		return 0;
	if (cJSON_IsString(item) && item->valuestring != NULL &&
	    strlen(item->valuestring) <= MSG_ID_MAX) {
		if ((s = cJSON_PrintUnformatted(item)) == NULL)
			return msg_fail(e, MSG_E_BAD_FIELD, NULL,
			    "id could not be printed");
		m->id_json = xstrdup(s);
		cJSON_free(s);
		return 0;
	}
	if (cJSON_IsNumber(item) &&
	    msg_member_int(line, len, m->root, item, 1, num) == 0) {
		m->id_json = xstrdup(num);
		return 0;
	}
	return msg_fail(e, MSG_E_BAD_FIELD, NULL,
	    "id must be an integer of at most 2^53 or a string of at most "
	    "64 bytes");
}

/*
 * A fiber id member ("fiber" or "from"): a string of 1..128 bytes or an
 * integer in [0, 2^53], stored as text in out.  Sets *has when present.
 */
static int
msg_parse_fiber(const char *line, size_t len, struct msg *m,
    struct msg_error *e, const char *name, char out[MSG_FIBER_MAX + 1],
    int *has)
{
	cJSON	*item;
	char	 num[MSG_INT_TEXT_LEN];

	item = cJSON_GetObjectItemCaseSensitive(m->root, name);
	if (item == NULL)
		return 0;
	if (msg_is_str(item, MSG_FIBER_MAX)) {
		snprintf(out, MSG_FIBER_MAX + 1, "%s", item->valuestring);
		*has = 1;
		return 0;
	}
	if (cJSON_IsNumber(item) &&
	    msg_member_int(line, len, m->root, item, 0, num) == 0) {
		snprintf(out, MSG_FIBER_MAX + 1, "%s", num);
		*has = 1;
		return 0;
	}
	return MSG_BAD(m, e, "%s must be a string of 1..128 bytes or a "
	    "non-negative integer of at most 2^53", name);
}

/* An object whose member values are all tag values. */
static int
msg_check_tags(struct msg *m, struct msg_error *e, const cJSON *tags,
    const char *where)
{
	const cJSON	*t;

	if (!cJSON_IsObject(tags))
		return MSG_BAD(m, e, "%s must be an object", where);
	cJSON_ArrayForEach(t, tags) {
		if (!msg_is_scalar(t))
			return MSG_BAD(m, e, "%s value \"%.*s\" must be a "
			    "string, number, boolean or null", where,
			    msg_quote_len(t->string), t->string);
	}
	return 0;
}

static int
msg_check_hello(struct msg *m, struct msg_error *e)
{
	cJSON	*item;

	item = cJSON_GetObjectItemCaseSensitive(m->root, "app");
	if (item != NULL) {
		if (!msg_is_str(item, MSG_FIBER_MAX))
			return MSG_BAD(m, e,
			    "app must be a string of 1..128 bytes");
		m->app = item->valuestring;
	}
	item = cJSON_GetObjectItemCaseSensitive(m->root, "ack");
	if (item != NULL) {
		if (!cJSON_IsBool(item))
			return MSG_BAD(m, e, "ack must be true or false");
		m->has_ack = 1;
		m->ack = cJSON_IsTrue(item);
	}
	item = cJSON_GetObjectItemCaseSensitive(m->root, "sdk");
	if (item != NULL) {
		if (!cJSON_IsString(item))
			return MSG_BAD(m, e, "sdk must be a string");
		m->sdk = item->valuestring;
	}
	return 0;
}

static int
msg_check_set(struct msg *m, struct msg_error *e)
{
	const cJSON	*c;
	cJSON		*item;
	int		 f;
	const char	*name;

	for (f = 0; f < MSG_F_COUNT; f++) {
		name = msg_field_names[f];
		item = cJSON_GetObjectItemCaseSensitive(m->root, name);
		if (item == NULL)
			continue;
		m->field[f] = item;
		if (cJSON_IsNull(item))
			continue;
		switch (f) {
		case MSG_F_TAGS:
			if (msg_check_tags(m, e, item, "tags") == -1)
				return -1;
			break;
		case MSG_F_EXTRA:
		case MSG_F_USER:
			if (!cJSON_IsObject(item))
				return MSG_BAD(m, e, "%s must be an object or "
				    "null", name);
			break;
		case MSG_F_CONTEXTS:
			if (!cJSON_IsObject(item))
				return MSG_BAD(m, e, "contexts must be an "
				    "object or null");
			cJSON_ArrayForEach(c, item) {
				if (!cJSON_IsObject(c) && !cJSON_IsNull(c))
					return MSG_BAD(m, e, "contexts value "
					    "\"%.*s\" must be an object or "
					    "null",
					    msg_quote_len(c->string),
					    c->string);
			}
			break;
		case MSG_F_LEVEL:
		case MSG_F_TRANSACTION:
			if (!cJSON_IsString(item))
				return MSG_BAD(m, e, "%s must be a string or "
				    "null", name);
			break;
		case MSG_F_FINGERPRINT:
			if (!cJSON_IsArray(item))
				return MSG_BAD(m, e, "fingerprint must be an "
				    "array of strings or null");
			cJSON_ArrayForEach(c, item) {
				if (!cJSON_IsString(c))
					return MSG_BAD(m, e, "fingerprint must "
					    "be an array of strings or null");
			}
			break;
		}
	}
	return 0;
}

static int
msg_check_crumb(struct msg *m, struct msg_error *e)
{
	static const char *const strs[] = {
		"message", "category", "level", "type"
	};
	cJSON	*crumb, *item;
	size_t	 i;

	crumb = cJSON_GetObjectItemCaseSensitive(m->root, "crumb");
	if (!cJSON_IsObject(crumb))
		return MSG_BAD(m, e, "crumb must be an object");
	for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		item = cJSON_GetObjectItemCaseSensitive(crumb, strs[i]);
		if (item != NULL && !cJSON_IsString(item))
			return MSG_BAD(m, e, "crumb.%s must be a string",
			    strs[i]);
	}
	item = cJSON_GetObjectItemCaseSensitive(crumb, "data");
	if (item != NULL && !cJSON_IsObject(item))
		return MSG_BAD(m, e, "crumb.data must be an object");
	item = cJSON_GetObjectItemCaseSensitive(crumb, "timestamp");
	if (item != NULL && !cJSON_IsString(item) &&
	    !(cJSON_IsNumber(item) && isfinite(item->valuedouble)))
		return MSG_BAD(m, e, "crumb.timestamp must be a number or a "
		    "string");
	m->crumb = crumb;
	return 0;
}

static int
msg_check_event(struct msg *m, struct msg_error *e)
{
	static const char *const strs[] = { "level", "transaction" };
	static const char *const objs[] = { "user", "extra", "contexts" };
	cJSON	*ev, *item, *values;
	size_t	 i;

	ev = cJSON_GetObjectItemCaseSensitive(m->root, "event");
	if (!cJSON_IsObject(ev))
		return MSG_BAD(m, e, "event must be an object");

	/*
	 * A member that is null counts as absent (SDKs send "user": null);
	 * the merge then fills or skips it.
	 */
	item = cJSON_GetObjectItemCaseSensitive(ev, "event_id");
	if (item != NULL && !cJSON_IsNull(item)) {
		if (!cJSON_IsString(item) || item->valuestring == NULL ||
		    msg_event_id_normalise(item->valuestring,
		    m->event_id) == -1)
			return MSG_BAD(m, e, "event.event_id must be 32 hex "
			    "digits (dashes allowed)");
		m->has_event_id = 1;
	}
	item = cJSON_GetObjectItemCaseSensitive(ev, "tags");
	if (cJSON_IsArray(item)) {
		/* Sentry's other form: a list of [key, value] pairs. */
		const cJSON	*pair;

		cJSON_ArrayForEach(pair, item) {
			if (!cJSON_IsArray(pair) ||
			    cJSON_GetArraySize(pair) != 2 ||
			    !cJSON_IsString(cJSON_GetArrayItem(pair, 0)) ||
			    !msg_is_scalar(cJSON_GetArrayItem(pair, 1)))
				return MSG_BAD(m, e, "event.tags must be an "
				    "object or a list of [key, value] pairs");
		}
	} else if (item != NULL && !cJSON_IsNull(item) && msg_check_tags(m, e, item, "event.tags") == -1)
		return -1;
	item = cJSON_GetObjectItemCaseSensitive(ev, "breadcrumbs");
	if (item != NULL && !cJSON_IsNull(item)) {
		values = item;
		if (cJSON_IsObject(item))
			values = cJSON_GetObjectItemCaseSensitive(item,
			    "values");
		if (!cJSON_IsArray(values))
			return MSG_BAD(m, e, "event.breadcrumbs must be a list "
			    "or an object with a \"values\" list");
	}
	for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		item = cJSON_GetObjectItemCaseSensitive(ev, strs[i]);
		if (item != NULL && !cJSON_IsNull(item) &&
		    !cJSON_IsString(item))
			return MSG_BAD(m, e, "event.%s must be a string",
			    strs[i]);
	}
	for (i = 0; i < sizeof objs / sizeof objs[0]; i++) {
		item = cJSON_GetObjectItemCaseSensitive(ev, objs[i]);
		if (item != NULL && !cJSON_IsNull(item) &&
		    !cJSON_IsObject(item))
			return MSG_BAD(m, e, "event.%s must be an object",
			    objs[i]);
	}
	m->event = ev;
	return 0;
}

/*
 * Parse and validate one line.  On success *m owns the cJSON tree and the
 * id text; on failure nothing is left in *m and *e holds the code, the
 * text and a copy of the id once the id was found valid.
 */
int
msg_parse(const char *line, size_t len, struct msg *m, struct msg_error *e)
{
	cJSON		*item;
	const char	*end = NULL, *why = NULL;
	size_t		 i;
	int		 op, rc;

	memset(m, 0, sizeof *m);
	memset(e, 0, sizeof *e);

	for (i = 0; i < len && msg_is_space(line[i]); i++)
		;
	if (i == len)
		return msg_fail(e, MSG_E_BAD_JSON, NULL, "empty line");
	if (!msg_utf8_valid(line, len))
		return msg_fail(e, MSG_E_BAD_JSON, NULL, "invalid UTF-8");
	if (msg_scan(line, len, &why) == -1)
		return msg_fail(e, MSG_E_BAD_JSON, NULL, "%s", why);

	m->root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
	if (m->root == NULL)
		return msg_fail(e, MSG_E_BAD_JSON, NULL, "invalid JSON");
	if (end != NULL) {
		for (i = (size_t)(end - line); i < len; i++)
			if (!msg_is_space(line[i]))
				break;
		if (i < len) {
			rc = msg_fail(e, MSG_E_BAD_JSON, NULL,
			    "invalid JSON: text after the object");
			goto fail;
		}
	}
	if (!cJSON_IsObject(m->root)) {
		rc = msg_fail(e, MSG_E_BAD_JSON, NULL,
		    "the message must be a JSON object");
		goto fail;
	}

	if ((rc = msg_parse_id(line, len, m, e)) == -1)
		goto fail;

	item = cJSON_GetObjectItemCaseSensitive(m->root, "op");
	op = -1;
	if (cJSON_IsString(item) && item->valuestring != NULL) {
		for (i = 0; i < MSG_OP_COUNT; i++)
			if (strcmp(item->valuestring, msg_op_names[i]) == 0)
				op = (int)i;
	}
	if (op == -1) {
		rc = msg_fail(e, MSG_E_BAD_OP, m->id_json, "op must be one of "
		    "hello, set, crumb, fork, end, event");
		goto fail;
	}
	m->op = (enum msg_op)op;

	if (m->op != MSG_HELLO) {
		if ((rc = msg_parse_fiber(line, len, m, e, "fiber", m->fiber,
		    &m->has_fiber)) == -1)
			goto fail;
	}
	switch (m->op) {
	case MSG_HELLO:
		rc = msg_check_hello(m, e);
		break;
	case MSG_SET:
		rc = msg_check_set(m, e);
		break;
	case MSG_CRUMB:
		rc = msg_check_crumb(m, e);
		break;
	case MSG_FORK:
		rc = msg_parse_fiber(line, len, m, e, "from", m->from,
		    &m->has_from);
		if (rc == 0 && !m->has_fiber)
			rc = MSG_BAD(m, e, "fork needs a fiber");
		else if (rc == 0 && !m->has_from)
			rc = MSG_BAD(m, e, "fork needs from, the fiber to "
			    "copy");
		break;
	case MSG_END:
		rc = 0;
		if (!m->has_fiber)
			rc = MSG_BAD(m, e, "end needs a fiber");
		break;
	case MSG_EVENT:
		rc = msg_check_event(m, e);
		break;
	}
	if (rc == -1)
		goto fail;
	return 0;

fail:
	msg_free(m);
	return -1;
}

void
msg_free(struct msg *m)
{
	if (m == NULL)
		return;
	cJSON_Delete(m->root);
	free(m->id_json);
	memset(m, 0, sizeof *m);
}

void
msg_error_free(struct msg_error *e)
{
	if (e == NULL)
		return;
	free(e->id_json);
	e->id_json = NULL;
}
