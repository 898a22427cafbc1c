/*
 * spool.c -- the durable event spool (SPEC §5): one sqlite database in WAL
 * mode, one connection, written in grouped transactions (see spool.h).
 *
 * Expected workload: per loop iteration the daemon opens a transaction,
 * puts up to thousands of events, deletes or dead-letters the ones the
 * upstreams settled, and commits.  So every statement is prepared once at
 * open (SQLITE_PREPARE_PERSISTENT), bound, stepped, and reset after use; a
 * put is one step of one statement.  Reads (take, dead list) outside a
 * transaction see committed data only, because every write goes through
 * spool_begin/spool_commit; inside one they also see its own writes (one
 * connection).  Other connections never see uncommitted rows (WAL).
 *
 * The figures (rows, bytes, oldest, dead) live in memory.  They are read
 * from disk at open and afterwards describe committed data only: a
 * transaction collects its changes as pending deltas, which spool_commit
 * applies once COMMIT has succeeded and spool_rollback (or a failed
 * commit) throws away.  The oldest received time is kept as a minimum over
 * puts; when a delete may have removed the oldest row, it is read again
 * with MIN(received), an index lookup, just before COMMIT.
 *
 * The schema is drawn in spool_sql.h; its version is PRAGMA user_version,
 * and a newer one than ours is refused.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/xmalloc.h"
#include "store/spool.h"
#include "store/spool_sql.h"

/* The prepared statements, indexes into spool->stmt. */
enum spool_stmt {
	SPOOL_ST_BEGIN,
	SPOOL_ST_COMMIT,
	SPOOL_ST_ROLLBACK,
	SPOOL_ST_PUT,
	SPOOL_ST_EVENT_INFO,
	SPOOL_ST_DELETE,
	SPOOL_ST_TAKE,
	SPOOL_ST_OLDEST,
	SPOOL_ST_DEAD_PUT,
	SPOOL_ST_DEAD_LIST,
	SPOOL_ST_DEAD_NEXT,
	SPOOL_ST_DEAD_NEXT_ID,
	SPOOL_ST_REQUEUE,
	SPOOL_ST_DEAD_DELETE,
	SPOOL_ST_COUNT_ROUTE,
	SPOOL_ST_ROUTES,
	SPOOL_ST_FIRST,
	SPOOL_ST_EXPIRED,
	SPOOL_ST_MAX
};

static const char *const spool_stmt_sql[SPOOL_ST_MAX] = {
	[SPOOL_ST_BEGIN] = SQL_BEGIN,
	[SPOOL_ST_COMMIT] = SQL_COMMIT,
	[SPOOL_ST_ROLLBACK] = SQL_ROLLBACK,
	[SPOOL_ST_PUT] = SQL_PUT,
	[SPOOL_ST_EVENT_INFO] = SQL_EVENT_INFO,
	[SPOOL_ST_DELETE] = SQL_DELETE,
	[SPOOL_ST_TAKE] = SQL_TAKE,
	[SPOOL_ST_OLDEST] = SQL_OLDEST,
	[SPOOL_ST_DEAD_PUT] = SQL_DEAD_PUT,
	[SPOOL_ST_DEAD_LIST] = SQL_DEAD_LIST,
	[SPOOL_ST_DEAD_NEXT] = SQL_DEAD_NEXT,
	[SPOOL_ST_DEAD_NEXT_ID] = SQL_DEAD_NEXT_ID,
	[SPOOL_ST_REQUEUE] = SQL_REQUEUE,
	[SPOOL_ST_DEAD_DELETE] = SQL_DEAD_DELETE,
	[SPOOL_ST_COUNT_ROUTE] = SQL_COUNT_ROUTE,
	[SPOOL_ST_ROUTES] = SQL_ROUTES,
	[SPOOL_ST_FIRST] = SQL_FIRST,
	[SPOOL_ST_EXPIRED] = SQL_EXPIRED,
};

/*
 * The spool.  Invariants: stats describes committed data only; the
 * pending_* fields are all zero unless in_txn; pending_oldest is the
 * smallest received time put in this transaction (0 if none); oldest_dirty
 * says a row removed in this transaction may have been the oldest.
 */
struct spool {
	sqlite3			*db;
	char			*path;
	sqlite3_stmt		*stmt[SPOOL_ST_MAX];

	struct spool_stats	 stats;

	int			 in_txn;
	int64_t			 pending_rows;
	int64_t			 pending_bytes;
	int64_t			 pending_dead;
	double			 pending_oldest;
	int			 oldest_dirty;
};

static void	spool_error(struct spool *, char **, const char *);
static int	spool_step_done(struct spool *, enum spool_stmt,
		    const char *, char **);
static int	spool_need_txn(struct spool *, const char *, char **);
static void	spool_pending_clear(struct spool *);
static double	spool_current_oldest(struct spool *);
static void	spool_removed(struct spool *, double, int64_t);
static int	spool_remove_next(struct spool *, enum spool_stmt, int *,
		    int64_t *, const char *, char **);
static int	spool_event_info(struct spool *, int64_t, double *,
		    int64_t *, int *, char **);
static char	*spool_column_dup(sqlite3_stmt *, int, size_t *);
static int	spool_create_file(const char *, char **);
static int	spool_pragma_text(sqlite3 *, const char *, char *, size_t);
static int	spool_pragma_int(sqlite3 *, const char *, int64_t *);
static int	spool_configure(struct spool *, enum spool_sync, char **);
static int	spool_schema(struct spool *, char **);
static int	spool_load_stats(struct spool *, char **);

/* Set *cause to "what: <sqlite's last error>" (if cause is not NULL). */
static void
spool_error(struct spool *sp, char **cause, const char *what)
{
	if (cause != NULL)
		xasprintf(cause, "%s: %s", what, sqlite3_errmsg(sp->db));
}

/*
 * Step a statement that returns no rows and reset it.  Returns 0, or -1
 * with *cause.  The statement is reset either way.
 */
static int
spool_step_done(struct spool *sp, enum spool_stmt st, const char *what,
    char **cause)
{
	sqlite3_stmt	*s = sp->stmt[st];
	int		 rc;

	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		spool_error(sp, cause, what);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

/* Writes happen inside spool_begin/spool_commit only. */
static int
spool_need_txn(struct spool *sp, const char *what, char **cause)
{
	if (sp->in_txn)
		return 0;
	if (cause != NULL)
		xasprintf(cause, "%s: no transaction open", what);
	return -1;
}

static void
spool_pending_clear(struct spool *sp)
{
	sp->pending_rows = 0;
	sp->pending_bytes = 0;
	sp->pending_dead = 0;
	sp->pending_oldest = 0;
	sp->oldest_dirty = 0;
}

/* The oldest received time as the open transaction sees it (0: none). */
static double
spool_current_oldest(struct spool *sp)
{
	double	o = sp->stats.oldest, p = sp->pending_oldest;

	if (sp->stats.rows == 0)
		o = 0;
	if (o == 0 || (p != 0 && p < o))
		return p;
	return o;
}

/* Account for a row leaving events in the open transaction. */
static void
spool_removed(struct spool *sp, double received, int64_t len)
{
	double	oldest;

	oldest = spool_current_oldest(sp);
	if (oldest == 0 || received <= oldest)
		sp->oldest_dirty = 1;
	sp->pending_rows--;
	sp->pending_bytes -= len;
}

/*
 * Look up an events row: *found is 0 if there is none, else *received and
 * *len are its received time and body length.  Returns 0 or -1.
 */
static int
spool_event_info(struct spool *sp, int64_t id, double *received,
    int64_t *len, int *found, char **cause)
{
	sqlite3_stmt	*s = sp->stmt[SPOOL_ST_EVENT_INFO];
	int		 rc;

	*found = 0;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*found = 1;
		*received = sqlite3_column_double(s, 0);
		*len = sqlite3_column_int64(s, 1);
	} else if (rc != SQLITE_DONE) {
		spool_error(sp, cause, "read event");
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

/*
 * Copy column i (text or blob) into a new NUL-terminated buffer the caller
 * frees; *len (if not NULL) gets its length in bytes.  NULL gives "".
 */
static char *
spool_column_dup(sqlite3_stmt *s, int i, size_t *len)
{
	const void	*p;
	size_t		 n;
	char		*out;

	p = sqlite3_column_blob(s, i);
	n = (size_t)sqlite3_column_bytes(s, i);
	out = xmalloc(n + 1);
	if (n != 0)
		memcpy(out, p, n);
	out[n] = '\0';
	if (len != NULL)
		*len = n;
	return out;
}

/*
 * Create the database file with mode 0600 if it does not exist, and take
 * group and other permissions off an existing one.  sqlite gives the -wal
 * and -shm files the mode of the database file.  Returns 0 or -1.
 */
static int
spool_create_file(const char *path, char **cause)
{
	struct stat	 sb;
	int		 fd;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd == -1) {
		xasprintf(cause, "open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == -1) {
		xasprintf(cause, "stat %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		xasprintf(cause, "%s: not a regular file", path);
		goto fail;
	}
	if ((sb.st_mode & 077) != 0 && fchmod(fd, 0600) == -1) {
		xasprintf(cause, "chmod %s: %s", path, strerror(errno));
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

/*
 * Run a PRAGMA (or any one-row statement) and copy the first column of its
 * first row into buf.  Returns 0 or -1 (sqlite3_errmsg says why).
 */
static int
spool_pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt		*s;
	const unsigned char	*t;
	int			 rc;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if ((t = sqlite3_column_text(s, 0)) != NULL)
			snprintf(buf, size, "%s", (const char *)t);
	} else if (rc != SQLITE_DONE) {
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

/* The same for an integer result (0 when there is no row). */
static int
spool_pragma_int(sqlite3 *db, const char *sql, int64_t *v)
{
	sqlite3_stmt	*s;
	int		 rc;

	*v = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

/* Connection settings: WAL, sync level, busy timeout.  Returns 0 or -1. */
static int
spool_configure(struct spool *sp, enum spool_sync sync, char **cause)
{
	char	mode[32];

	if (sqlite3_busy_timeout(sp->db, 5000) != SQLITE_OK) {
		spool_error(sp, cause, "busy_timeout");
		return -1;
	}
	if (spool_pragma_text(sp->db, SQL_PRAGMA_WAL, mode,
	    sizeof mode) == -1) {
		spool_error(sp, cause, "journal_mode");
		return -1;
	}
	if (strcasecmp(mode, "wal") != 0) {
		xasprintf(cause, "journal_mode: %s refused WAL mode (got %s)",
		    sp->path, mode[0] == '\0' ? "nothing" : mode);
		return -1;
	}
	if (sqlite3_exec(sp->db, sync == SPOOL_SYNC_NORMAL ?
	    SQL_PRAGMA_SYNC_NORMAL : SQL_PRAGMA_SYNC_FULL, NULL, NULL,
	    NULL) != SQLITE_OK) {
		spool_error(sp, cause, "synchronous");
		return -1;
	}
	if (sqlite3_exec(sp->db, SQL_PRAGMA_NO_FK, NULL, NULL,
	    NULL) != SQLITE_OK) {
		spool_error(sp, cause, "foreign_keys");
		return -1;
	}
	if (sqlite3_exec(sp->db, SQL_PRAGMA_WAL_LIMIT, NULL, NULL,
	    NULL) != SQLITE_OK) {
		spool_error(sp, cause, "journal_size_limit");
		return -1;
	}
	return 0;
}

/*
 * Check the schema version and create the schema when it is missing.  A
 * current database is only read, so a second connection can open while
 * the first holds the write lock.  Returns 0 or -1.
 */
static int
spool_schema(struct spool *sp, char **cause)
{
	static const char *const create[] = {
		SQL_CREATE_EVENTS,
		SQL_CREATE_EVENTS_ROUTE,
		SQL_CREATE_EVENTS_RECEIVED,
		SQL_CREATE_DEAD,
		SQL_CREATE_DEAD_EVENT_ID,
		SQL_SET_VERSION
	};
	int64_t	 version;
	size_t	 i;

	if (spool_pragma_int(sp->db, SQL_GET_VERSION, &version) == -1) {
		spool_error(sp, cause, "read schema version");
		return -1;
	}
	if (version == SPOOL_SCHEMA_VERSION)
		return 0;
	if (version > SPOOL_SCHEMA_VERSION)
		goto newer;

	if (sqlite3_exec(sp->db, SQL_BEGIN, NULL, NULL, NULL) != SQLITE_OK) {
		spool_error(sp, cause, "create schema");
		return -1;
	}
	/* Read again under the write lock: another process may have won. */
	if (spool_pragma_int(sp->db, SQL_GET_VERSION, &version) == -1) {
		spool_error(sp, cause, "read schema version");
		goto fail;
	}
	if (version > SPOOL_SCHEMA_VERSION) {
		sqlite3_exec(sp->db, SQL_ROLLBACK, NULL, NULL, NULL);
		goto newer;
	}
	if (version < SPOOL_SCHEMA_VERSION) {
		for (i = 0; i < sizeof create / sizeof create[0]; i++) {
			if (sqlite3_exec(sp->db, create[i], NULL, NULL,
			    NULL) != SQLITE_OK) {
				spool_error(sp, cause, "create schema");
				goto fail;
			}
		}
	}
	if (sqlite3_exec(sp->db, SQL_COMMIT, NULL, NULL, NULL) != SQLITE_OK) {
		spool_error(sp, cause, "create schema");
		goto fail;
	}
	return 0;

newer:
	xasprintf(cause, "%s: schema version %lld is newer than this "
	    "errrelay supports (%d); use a newer errrelayd or another spool "
	    "path", sp->path, (long long)version, SPOOL_SCHEMA_VERSION);
	return -1;
fail:
	if (!sqlite3_get_autocommit(sp->db))
		sqlite3_exec(sp->db, SQL_ROLLBACK, NULL, NULL, NULL);
	return -1;
}

/* Read the figures from disk.  Returns 0 or -1. */
static int
spool_load_stats(struct spool *sp, char **cause)
{
	sqlite3_stmt	*s;
	int64_t		 dead;

	if (sqlite3_prepare_v2(sp->db, SQL_STATS, -1, &s,
	    NULL) != SQLITE_OK) {
		spool_error(sp, cause, "read spool figures");
		return -1;
	}
	if (sqlite3_step(s) != SQLITE_ROW) {
		spool_error(sp, cause, "read spool figures");
		sqlite3_finalize(s);
		return -1;
	}
	sp->stats.rows = sqlite3_column_int64(s, 0);
	sp->stats.bytes = sqlite3_column_int64(s, 1);
	sp->stats.oldest = sqlite3_column_double(s, 2);
	sqlite3_finalize(s);

	if (spool_pragma_int(sp->db, SQL_DEAD_COUNT, &dead) == -1) {
		spool_error(sp, cause, "read dead-letter count");
		return -1;
	}
	sp->stats.dead = dead;
	return 0;
}

/*
 * Open (creating if needed) the spool at path.  The umask is 077 while the
 * files are created and restored before returning.  Returns the spool, or
 * NULL with *cause.
 */
struct spool *
spool_open(const char *path, enum spool_sync sync, char **cause)
{
	struct spool	*sp;
	mode_t		 omask;
	char		*what;
	int		 i;

	sp = xcalloc(1, sizeof *sp);
	sp->path = xstrdup(path);

	omask = umask(077);
	if (spool_create_file(path, cause) == -1)
		goto fail;
	if (sqlite3_open_v2(path, &sp->db, SQLITE_OPEN_READWRITE,
	    NULL) != SQLITE_OK) {
		if (sp->db == NULL)
			xasprintf(cause, "open %s: out of memory", path);
		else
			xasprintf(cause, "open %s: %s", path,
			    sqlite3_errmsg(sp->db));
		goto fail;
	}
	sqlite3_extended_result_codes(sp->db, 1);
	if (spool_configure(sp, sync, cause) == -1)
		goto fail;
	if (spool_schema(sp, cause) == -1)
		goto fail;
	for (i = 0; i < SPOOL_ST_MAX; i++) {
		if (sqlite3_prepare_v3(sp->db, spool_stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &sp->stmt[i],
		    NULL) != SQLITE_OK) {
			xasprintf(&what, "prepare \"%s\"", spool_stmt_sql[i]);
			spool_error(sp, cause, what);
			free(what);
			goto fail;
		}
	}
	if (spool_load_stats(sp, cause) == -1)
		goto fail;
	umask(omask);
	return sp;

fail:
	umask(omask);
	spool_close(sp);
	return NULL;
}

/* Roll back anything open, finalize the statements, close the database. */
void
spool_close(struct spool *sp)
{
	int	i;

	if (sp == NULL)
		return;
	if (sp->db != NULL) {
		spool_rollback(sp);
		for (i = 0; i < SPOOL_ST_MAX; i++)
			sqlite3_finalize(sp->stmt[i]);
		sqlite3_close(sp->db);
	}
	free(sp->path);
	free(sp);
}

int
spool_begin(struct spool *sp, char **cause)
{
	if (sp->in_txn) {
		if (cause != NULL)
			xasprintf(cause, "begin: a transaction is already "
			    "open");
		return -1;
	}
	if (spool_step_done(sp, SPOOL_ST_BEGIN, "begin", cause) == -1)
		return -1;
	sp->in_txn = 1;
	spool_pending_clear(sp);
	return 0;
}

/*
 * Commit the open transaction and apply its pending figures.  On failure
 * the transaction is rolled back, the figures are unchanged and the spool
 * is ready for the next spool_begin.  Returns 0 or -1 with *cause.
 */
int
spool_commit(struct spool *sp, char **cause)
{
	sqlite3_stmt	*s;
	double		 oldest;
	int		 rc;

	if (spool_need_txn(sp, "commit", cause) == -1)
		return -1;

	oldest = spool_current_oldest(sp);
	if (sp->oldest_dirty) {
		s = sp->stmt[SPOOL_ST_OLDEST];
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			spool_error(sp, cause, "commit: read oldest");
			sqlite3_reset(s);
			spool_rollback(sp);
			return -1;
		}
		oldest = sqlite3_column_double(s, 0);	/* NULL: 0 */
		sqlite3_reset(s);
	}

	if (spool_step_done(sp, SPOOL_ST_COMMIT, "commit", cause) == -1) {
		spool_rollback(sp);
		return -1;
	}
	sp->in_txn = 0;
	sp->stats.rows += sp->pending_rows;
	sp->stats.bytes += sp->pending_bytes;
	sp->stats.dead += sp->pending_dead;
	sp->stats.oldest = sp->stats.rows > 0 ? oldest : 0;
	spool_pending_clear(sp);
	return 0;
}

/*
 * Throw away the open transaction and its pending figures.  Without one
 * (or when sqlite already rolled it back after an error) it does nothing.
 */
void
spool_rollback(struct spool *sp)
{
	if (!sqlite3_get_autocommit(sp->db) &&
	    sp->stmt[SPOOL_ST_ROLLBACK] != NULL) {
		sqlite3_step(sp->stmt[SPOOL_ST_ROLLBACK]);
		sqlite3_reset(sp->stmt[SPOOL_ST_ROLLBACK]);
	}
	sp->in_txn = 0;
	spool_pending_clear(sp);
}

int
spool_put(struct spool *sp, const char *route, const char *event_id,
    double received, const char *body, size_t len, int *dup, char **cause)
{
	sqlite3_stmt	*s = sp->stmt[SPOOL_ST_PUT];

	*dup = 0;
	if (spool_need_txn(sp, "put", cause) == -1)
		return -1;
	/* OR IGNORE would also swallow a NOT NULL failure as a duplicate. */
	if (route == NULL || event_id == NULL) {
		if (cause != NULL)
			xasprintf(cause, "put: no route or event_id");
		return -1;
	}
	if (body == NULL)
		body = "";	/* a NULL pointer would bind SQL NULL */

	if (sqlite3_bind_text(s, 1, route, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, event_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_double(s, 3, received) != SQLITE_OK ||
	    sqlite3_bind_blob64(s, 4, body, (sqlite3_uint64)len,
	    SQLITE_STATIC) != SQLITE_OK) {
		spool_error(sp, cause, "put");
		return -1;
	}
	if (spool_step_done(sp, SPOOL_ST_PUT, "put", cause) == -1)
		return -1;
	if (sqlite3_changes(sp->db) == 0) {
		*dup = 1;
		return 0;
	}
	sp->pending_rows++;
	sp->pending_bytes += (int64_t)len;
	if (sp->pending_oldest == 0 || received < sp->pending_oldest)
		sp->pending_oldest = received;
	return 0;
}

int
spool_delete(struct spool *sp, int64_t id, char **cause)
{
	double	received;
	int64_t	len;
	int	found;

	if (spool_need_txn(sp, "delete", cause) == -1)
		return -1;
	if (spool_event_info(sp, id, &received, &len, &found, cause) == -1)
		return -1;
	if (!found)
		return 0;
	sqlite3_bind_int64(sp->stmt[SPOOL_ST_DELETE], 1, id);
	if (spool_step_done(sp, SPOOL_ST_DELETE, "delete", cause) == -1)
		return -1;
	spool_removed(sp, received, len);
	return 0;
}

/* Copy the row into dead, then delete it from events; unknown id: no-op. */
int
spool_dead_put(struct spool *sp, int64_t id, int status, const char *reason,
    double now, char **cause)
{
	sqlite3_stmt	*s = sp->stmt[SPOOL_ST_DEAD_PUT];
	double		 received;
	int64_t		 len;
	int		 found;

	if (spool_need_txn(sp, "dead-letter", cause) == -1)
		return -1;
	if (spool_event_info(sp, id, &received, &len, &found, cause) == -1)
		return -1;
	if (!found)
		return 0;
	if (reason == NULL)
		reason = "";
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, status);
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 4, now);
	if (spool_step_done(sp, SPOOL_ST_DEAD_PUT, "dead-letter", cause) == -1)
		return -1;
	sqlite3_bind_int64(sp->stmt[SPOOL_ST_DELETE], 1, id);
	if (spool_step_done(sp, SPOOL_ST_DELETE, "dead-letter", cause) == -1)
		return -1;
	spool_removed(sp, received, len);
	sp->pending_dead++;
	return 0;
}

/*
 * Step next (SQL_FIRST or SQL_EXPIRED, already bound) for one row, and
 * delete that row.  *found is 0 when there was none; else *len is its body
 * length.  Returns 0 or -1 with *cause.
 */
static int
spool_remove_next(struct spool *sp, enum spool_stmt st, int *found,
    int64_t *len, const char *what, char **cause)
{
	sqlite3_stmt	*s = sp->stmt[st];
	double		 received;
	int64_t		 id;
	int		 rc;

	*found = 0;
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		spool_error(sp, cause, what);
		sqlite3_reset(s);
		return -1;
	}
	id = sqlite3_column_int64(s, 0);
	received = sqlite3_column_double(s, 1);
	*len = sqlite3_column_int64(s, 2);
	sqlite3_reset(s);	/* done reading before the table changes */

	sqlite3_bind_int64(sp->stmt[SPOOL_ST_DELETE], 1, id);
	if (spool_step_done(sp, SPOOL_ST_DELETE, what, cause) == -1)
		return -1;
	spool_removed(sp, received, *len);
	*found = 1;
	return 0;
}

/*
 * Delete the lowest-id rows until bytes_to_free body bytes are gone or the
 * spool is empty.  Returns 0 or -1; the counts cover the rows deleted
 * before an error too (the caller rolls back then).
 */
int
spool_drop_oldest(struct spool *sp, int64_t bytes_to_free,
    int64_t *rows_dropped, int64_t *bytes_dropped, char **cause)
{
	int64_t	rows = 0, bytes = 0, len;
	int	found, rc = 0;

	if (spool_need_txn(sp, "drop oldest", cause) == -1)
		rc = -1;
	while (rc == 0 && bytes < bytes_to_free) {
		rc = spool_remove_next(sp, SPOOL_ST_FIRST, &found, &len,
		    "drop oldest", cause);
		if (rc == -1 || !found)
			break;
		rows++;
		bytes += len;
	}
	if (rows_dropped != NULL)
		*rows_dropped = rows;
	if (bytes_dropped != NULL)
		*bytes_dropped = bytes;
	return rc;
}

/* Delete every row received before older_than.  Returns 0 or -1. */
int
spool_expire(struct spool *sp, double older_than, int64_t *rows,
    char **cause)
{
	int64_t	n = 0, len;
	int	found, rc = 0;

	if (spool_need_txn(sp, "expire", cause) == -1)
		rc = -1;
	while (rc == 0) {
		sqlite3_bind_double(sp->stmt[SPOOL_ST_EXPIRED], 1, older_than);
		rc = spool_remove_next(sp, SPOOL_ST_EXPIRED, &found, &len,
		    "expire", cause);
		if (rc == -1 || !found)
			break;
		n++;
	}
	if (rows != NULL)
		*rows = n;
	return rc;
}

/* Rows of one route waiting for delivery, or -1 on a read error. */
int64_t
spool_count_route(struct spool *sp, const char *route)
{
	sqlite3_stmt	*s = sp->stmt[SPOOL_ST_COUNT_ROUTE];
	int64_t		 n = -1;

	sqlite3_bind_text(s, 1, route, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return n;
}

/*
 * The distinct route names of the waiting rows, sorted, into a new array
 * *names of *n strings (NULL when none); free each and the array.
 * Returns 0, or -1 with *cause and nothing allocated.
 */
int
spool_routes(struct spool *sp, char ***names, size_t *n, char **cause)
{
	sqlite3_stmt	*s = sp->stmt[SPOOL_ST_ROUTES];
	char		**out = NULL;
	size_t		 cap = 0, count = 0, i;
	int		 rc;

	*names = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			out = xreallocarray(out, cap, sizeof *out);
		}
		out[count++] = spool_column_dup(s, 0, NULL);
	}
	if (rc != SQLITE_DONE) {
		spool_error(sp, cause, "list routes");
		sqlite3_reset(s);
		for (i = 0; i < count; i++)
			free(out[i]);
		free(out);
		return -1;
	}
	sqlite3_reset(s);
	*names = out;
	*n = count;
	return 0;
}

/*
 * Read up to max events of route with id > after, in id order.  *rows is a
 * new array of *n rows (NULL when none) whose route and body strings are
 * copies; free it with spool_rows_free.  Each body is NUL-terminated
 * beyond its len bytes.  Returns 0, or -1 with *cause and nothing
 * allocated.
 */
int
spool_take(struct spool *sp, const char *route, int64_t after, int max,
    struct spool_row **rows, size_t *n, char **cause)
{
	sqlite3_stmt		*s = sp->stmt[SPOOL_ST_TAKE];
	struct spool_row	*out = NULL, *r;
	size_t			 cap = 0, count = 0;
	const unsigned char	*t;
	int			 rc;

	*rows = NULL;
	*n = 0;
	if (max <= 0 || route == NULL)
		return 0;

	sqlite3_bind_text(s, 1, route, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, after);
	sqlite3_bind_int(s, 3, max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap == 0 ? ((size_t)max < 64 ? (size_t)max : 64) :
			    cap * 2;
			out = xreallocarray(out, cap, sizeof *out);
		}
		r = &out[count++];
		memset(r, 0, sizeof *r);
		r->id = sqlite3_column_int64(s, 0);
		r->route = spool_column_dup(s, 1, NULL);
		if ((t = sqlite3_column_text(s, 2)) != NULL)
			snprintf(r->event_id, sizeof r->event_id, "%s",
			    (const char *)t);
		r->received = sqlite3_column_double(s, 3);
		r->body = spool_column_dup(s, 4, &r->len);
	}
	if (rc != SQLITE_DONE) {
		spool_error(sp, cause, "take");
		sqlite3_reset(s);
		spool_rows_free(out, count);
		return -1;
	}
	sqlite3_reset(s);
	*rows = out;
	*n = count;
	return 0;
}

void
spool_rows_free(struct spool_row *rows, size_t n)
{
	size_t	i;

	if (rows == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].route);
		free(rows[i].body);
	}
	free(rows);
}

void
spool_get_stats(struct spool *sp, struct spool_stats *st)
{
	*st = sp->stats;
}

/*
 * List every dead-lettered event, oldest first, into a new array *list of
 * *n entries (NULL when none); free it with spool_dead_free.  Returns 0, or
 * -1 with *cause and nothing allocated.
 */
int
spool_dead_list(struct spool *sp, struct spool_dead **list, size_t *n,
    char **cause)
{
	sqlite3_stmt		*s = sp->stmt[SPOOL_ST_DEAD_LIST];
	struct spool_dead	*out = NULL, *d;
	size_t			 cap = 0, count = 0;
	const unsigned char	*t;
	int			 rc;

	*list = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			out = xreallocarray(out, cap, sizeof *out);
		}
		d = &out[count++];
		memset(d, 0, sizeof *d);
		d->id = sqlite3_column_int64(s, 0);
		d->route = spool_column_dup(s, 1, NULL);
		if ((t = sqlite3_column_text(s, 2)) != NULL)
			snprintf(d->event_id, sizeof d->event_id, "%s",
			    (const char *)t);
		d->status = sqlite3_column_int(s, 3);
		d->reason = spool_column_dup(s, 4, NULL);
		d->time = sqlite3_column_double(s, 5);
		d->received = sqlite3_column_double(s, 6);
	}
	if (rc != SQLITE_DONE) {
		spool_error(sp, cause, "list dead letters");
		sqlite3_reset(s);
		spool_dead_free(out, count);
		return -1;
	}
	sqlite3_reset(s);
	*list = out;
	*n = count;
	return 0;
}

void
spool_dead_free(struct spool_dead *list, size_t n)
{
	size_t	i;

	if (list == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(list[i].route);
		free(list[i].reason);
	}
	free(list);
}

/*
 * Requeue the dead rows matching event_id (all rows when event_id is NULL):
 * each goes back into events with a new id (unless its (route, event_id)
 * is spooled already) and leaves dead.  Adds the rows taken out of dead to
 * *moved.  Returns 0 or -1.
 */
static int
spool_requeue_match(struct spool *sp, const char *event_id, size_t *moved,
    char **cause)
{
	sqlite3_stmt	*next, *s;
	int64_t		 after = 0, id, len;
	double		 received;
	int		 rc;

	if (event_id == NULL)
		next = sp->stmt[SPOOL_ST_DEAD_NEXT];
	else {
		next = sp->stmt[SPOOL_ST_DEAD_NEXT_ID];
		sqlite3_bind_text(next, 2, event_id, -1, SQLITE_STATIC);
	}
	for (;;) {
		sqlite3_bind_int64(next, 1, after);
		rc = sqlite3_step(next);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(next);
			break;
		}
		if (rc != SQLITE_ROW) {
			spool_error(sp, cause, "requeue");
			sqlite3_reset(next);
			return -1;
		}
		id = sqlite3_column_int64(next, 0);
		received = sqlite3_column_double(next, 1);
		len = sqlite3_column_int64(next, 2);
		sqlite3_reset(next);	/* nothing reads dead while it changes */
		after = id;

		s = sp->stmt[SPOOL_ST_REQUEUE];
		sqlite3_bind_int64(s, 1, id);
		if (spool_step_done(sp, SPOOL_ST_REQUEUE, "requeue",
		    cause) == -1)
			return -1;
		if (sqlite3_changes(sp->db) != 0) {
			sp->pending_rows++;
			sp->pending_bytes += len;
			if (sp->pending_oldest == 0 ||
			    received < sp->pending_oldest)
				sp->pending_oldest = received;
		}
		sqlite3_bind_int64(sp->stmt[SPOOL_ST_DEAD_DELETE], 1, id);
		if (spool_step_done(sp, SPOOL_ST_DEAD_DELETE, "requeue",
		    cause) == -1)
			return -1;
		sp->pending_dead--;
		(*moved)++;
	}
	return 0;
}

/*
 * Requeue dead-lettered events by event_id (n > 0) or all of them (n == 0).
 * An id is matched in its normalised form (dashes removed, lower case), on
 * every route.  *moved counts the rows that left the dead-letter table,
 * including those whose (route, event_id) was already spooled (they are
 * only removed from dead).  Returns 0 or -1 with *cause.
 */
int
spool_dead_requeue(struct spool *sp, const char *const *ids, size_t n,
    size_t *moved, char **cause)
{
	char		 norm[65];
	const char	*p;
	size_t		 i, j;

	*moved = 0;
	if (spool_need_txn(sp, "requeue", cause) == -1)
		return -1;
	if (n == 0)
		return spool_requeue_match(sp, NULL, moved, cause);
	for (i = 0; i < n; i++) {
		if (ids[i] == NULL)
			continue;
		j = 0;
		for (p = ids[i]; *p != '\0' && j < sizeof norm - 1; p++) {
			if (*p != '-')
				norm[j++] = tolower((unsigned char)*p);
		}
		norm[j] = '\0';
		if (spool_requeue_match(sp, norm, moved, cause) == -1)
			return -1;
	}
	return 0;
}
