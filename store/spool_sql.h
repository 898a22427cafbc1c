/*
 * spool_sql.h -- every SQL statement of the spool (store/spool.c), as named
 * constants in the manner of Fluent Bit's tail_sql.h.
 *
 * Storage layout, schema version 1 (PRAGMA user_version):
 *
 *   events   id INTEGER PRIMARY KEY AUTOINCREMENT: ids are never reused,
 *            so a delivery cursor "id > X" never misses a new row.
 *            route, event_id: UNIQUE together (the duplicate rule).
 *            received: Unix seconds.  body: a BLOB, so that length(body)
 *            counts bytes (length() of TEXT counts characters).
 *   dead     a copy of an events row plus the upstream's HTTP status, a
 *            reason and the time it was dead-lettered.
 *
 * Indexes: events(route, id) serves the delivery read "route = ? AND id > ?
 * ORDER BY id LIMIT ?" (the UNIQUE index on (route, event_id) cannot);
 * events(received) makes MIN(received) a b-tree lookup rather than a scan
 * of the whole spool, as delivery removes the oldest rows at almost every
 * commit; dead(event_id) serves a requeue by event_id.
 *
 * Positional parameters are numbered (?1, ?2, ...) and documented beside
 * each statement.
 */
#ifndef ERRRELAY_SPOOL_SQL_H
#define ERRRELAY_SPOOL_SQL_H

#define SPOOL_SCHEMA_VERSION	1

/* ---------------------------------------------------------------- open */

#define SQL_PRAGMA_WAL		"PRAGMA journal_mode = WAL;"
#define SQL_PRAGMA_SYNC_FULL	"PRAGMA synchronous = FULL;"
#define SQL_PRAGMA_SYNC_NORMAL	"PRAGMA synchronous = NORMAL;"
#define SQL_PRAGMA_NO_FK	"PRAGMA foreign_keys = OFF;"
/* Truncate a -wal file that a burst grew, once it has been checkpointed. */
#define SQL_PRAGMA_WAL_LIMIT	"PRAGMA journal_size_limit = 67108864;"
#define SQL_GET_VERSION		"PRAGMA user_version;"
#define SQL_SET_VERSION		"PRAGMA user_version = 1;"

#define SQL_CREATE_EVENTS						\
	"CREATE TABLE IF NOT EXISTS events ("				\
	"  id        INTEGER PRIMARY KEY AUTOINCREMENT,"		\
	"  route     TEXT    NOT NULL,"					\
	"  event_id  TEXT    NOT NULL,"					\
	"  received  REAL    NOT NULL,"					\
	"  body      BLOB    NOT NULL,"					\
	"  UNIQUE (route, event_id)"					\
	");"
#define SQL_CREATE_EVENTS_ROUTE						\
	"CREATE INDEX IF NOT EXISTS events_route_id ON events (route, id);"
#define SQL_CREATE_EVENTS_RECEIVED					\
	"CREATE INDEX IF NOT EXISTS events_received ON events (received);"
#define SQL_CREATE_DEAD							\
	"CREATE TABLE IF NOT EXISTS dead ("				\
	"  id        INTEGER PRIMARY KEY AUTOINCREMENT,"		\
	"  route     TEXT    NOT NULL,"					\
	"  event_id  TEXT    NOT NULL,"					\
	"  received  REAL    NOT NULL,"					\
	"  body      BLOB    NOT NULL,"					\
	"  status    INTEGER NOT NULL,"					\
	"  reason    TEXT    NOT NULL,"					\
	"  time      REAL    NOT NULL"					\
	");"
#define SQL_CREATE_DEAD_EVENT_ID					\
	"CREATE INDEX IF NOT EXISTS dead_event_id ON dead (event_id);"

/* The figures read once at open: rows, bytes, oldest received (0 if none). */
#define SQL_STATS							\
	"SELECT count(*), coalesce(sum(length(body)), 0),"		\
	"  coalesce(min(received), 0) FROM events;"
#define SQL_DEAD_COUNT		"SELECT count(*) FROM dead;"

/* ---------------------------------------------------------- transactions */

/* IMMEDIATE: take the write lock now, not at the first write. */
#define SQL_BEGIN		"BEGIN IMMEDIATE;"
#define SQL_COMMIT		"COMMIT;"
#define SQL_ROLLBACK		"ROLLBACK;"

/* ---------------------------------------------------------------- events */

/* ?1 route, ?2 event_id, ?3 received, ?4 body.  No row changed: duplicate. */
#define SQL_PUT								\
	"INSERT OR IGNORE INTO events (route, event_id, received, body)"	\
	"  VALUES (?1, ?2, ?3, ?4);"

/* ?1 id.  What the figures need to know of a row about to leave. */
#define SQL_EVENT_INFO							\
	"SELECT received, length(body) FROM events WHERE id = ?1;"

/* ?1 id. */
#define SQL_DELETE		"DELETE FROM events WHERE id = ?1;"

/* ?1 route, ?2 after (id), ?3 max rows. */
#define SQL_TAKE							\
	"SELECT id, route, event_id, received, body FROM events"	\
	"  WHERE route = ?1 AND id > ?2 ORDER BY id LIMIT ?3;"

/* Rows waiting for one route (status); walks the (route, id) index. */
#define SQL_COUNT_ROUTE		"SELECT count(*) FROM events WHERE route = ?1;"

/* The routes that have rows waiting (the UNIQUE index serves DISTINCT). */
#define SQL_ROUTES		"SELECT DISTINCT route FROM events ORDER BY route;"

/*
 * Bounds (spool_drop_oldest, spool_expire): the next row to remove, read
 * one at a time so that no SELECT runs over a table being changed.
 * FIRST: lowest id.  EXPIRED: ?1 cutoff, the oldest row received before it.
 */
#define SQL_FIRST							\
	"SELECT id, received, length(body) FROM events"		\
	"  ORDER BY id LIMIT 1;"
#define SQL_EXPIRED							\
	"SELECT id, received, length(body) FROM events"		\
	"  WHERE received < ?1 ORDER BY received LIMIT 1;"

/* The oldest received time, NULL when the spool is empty. */
#define SQL_OLDEST		"SELECT min(received) FROM events;"

/* ------------------------------------------------------------ dead letter */

/* ?1 id (events), ?2 status, ?3 reason, ?4 time. */
#define SQL_DEAD_PUT							\
	"INSERT INTO dead (route, event_id, received, body, status, reason,"	\
	"  time)"							\
	"  SELECT route, event_id, received, body, ?2, ?3, ?4"		\
	"  FROM events WHERE id = ?1;"

#define SQL_DEAD_LIST							\
	"SELECT id, route, event_id, status, reason, time, received"	\
	"  FROM dead ORDER BY id;"

/*
 * Requeue walks the dead table one row at a time by id, so that no SELECT
 * is left running over a table the same connection is changing.
 * ?1 after (dead id); ?2 event_id for the _ID form.
 */
#define SQL_DEAD_NEXT							\
	"SELECT id, received, length(body) FROM dead"			\
	"  WHERE id > ?1 ORDER BY id LIMIT 1;"
#define SQL_DEAD_NEXT_ID						\
	"SELECT id, received, length(body) FROM dead"			\
	"  WHERE event_id = ?2 AND id > ?1 ORDER BY id LIMIT 1;"

/*
 * ?1 dead id.  The row gets a new events id, above the delivery cursor.
 * No row changed: the same (route, event_id) is already spooled.
 */
#define SQL_REQUEUE							\
	"INSERT OR IGNORE INTO events (route, event_id, received, body)"	\
	"  SELECT route, event_id, received, body FROM dead WHERE id = ?1;"

/* ?1 dead id. */
#define SQL_DEAD_DELETE		"DELETE FROM dead WHERE id = ?1;"

#endif
