/*
 * reply.h -- the reply lines of the data protocol (SPEC §3).
 *
 * Each function returns one complete line, '\n' included, in a buffer the
 * caller frees.  Message text is JSON-escaped here, so any text may be
 * passed.
 */
#ifndef ERRRELAY_REPLY_H
#define ERRRELAY_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/msg.h"

/* {"id":ID,"ok":true} or, with event_id, {"id":ID,"ok":true,"event_id":"..."}.
 * id_json is the compact JSON text of the id (NULL: no id member). */
char	*reply_ok(const char *id_json, const char *event_id, size_t *len);

/* {"id":ID,"ok":false,"error":"CODE","message":"..."} when id_json is set,
 * else {"ok":false,"error":"CODE","message":"...","line":N}. */
char	*reply_error(const char *id_json, uint64_t lineno, enum msg_err code,
	    const char *message, size_t *len);

#endif
