/*
 * check_spool.c -- tests of the sqlite spool (store/spool.c, SPEC §5).
 *
 * Every test works on a fresh database in its own mkdtemp directory, which
 * it removes.  Where a test needs to see the file from outside the spool
 * (visibility before commit, integrity, file modes) it opens the database
 * with sqlite3 directly or with a second spool.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/spool.h"
#include "tests/check_run.h"

#define EID_A	"0123456789abcdef0123456789abcdef"
#define EID_B	"11111111111111111111111111111111"
#define EID_C	"22222222222222222222222222222222"
#define EID_D	"33333333333333333333333333333333"

static char	dir[64];
static char	dbpath[128];

static void
tmp_setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/check_spool.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dbpath, sizeof dbpath, "%s/spool.db", dir);
}

static void
tmp_teardown(void)
{
	char	p[160];

	unlink(dbpath);
	snprintf(p, sizeof p, "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", dbpath);
	unlink(p);
	snprintf(p, sizeof p, "%s-journal", dbpath);
	unlink(p);
	rmdir(dir);
}

static struct spool *
open_ok(void)
{
	struct spool	*sp;
	char		*cause = NULL;

	sp = spool_open(dbpath, SPOOL_SYNC_NORMAL, &cause);
	ck_assert_msg(sp != NULL, "spool_open: %s", cause ? cause : "?");
	return sp;
}

static void
begin_ok(struct spool *sp)
{
	char	*cause = NULL;

	ck_assert_msg(spool_begin(sp, &cause) == 0, "begin: %s", cause);
}

static void
commit_ok(struct spool *sp)
{
	char	*cause = NULL;

	ck_assert_msg(spool_commit(sp, &cause) == 0, "commit: %s", cause);
}

/* Put one event; returns its dup flag. */
static int
put_ok(struct spool *sp, const char *route, const char *eid, double recv,
    const char *body)
{
	char	*cause = NULL;
	int	 dup = -1;

	ck_assert_msg(spool_put(sp, route, eid, recv, body, strlen(body),
	    &dup, &cause) == 0, "put: %s", cause);
	ck_assert(dup == 0 || dup == 1);
	return dup;
}

static size_t
take_ok(struct spool *sp, const char *route, int64_t after, int max,
    struct spool_row **rows)
{
	char	*cause = NULL;
	size_t	 n = 99;

	ck_assert_msg(spool_take(sp, route, after, max, rows, &n,
	    &cause) == 0, "take: %s", cause);
	return n;
}

/* A one-integer query run with sqlite3 directly on the file. */
static int64_t
raw_int(const char *sql)
{
	sqlite3		*db;
	sqlite3_stmt	*s;
	int64_t		 v;

	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY,
	    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void
raw_exec(const char *sql)
{
	sqlite3	*db;
	char	*err = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 1000);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK,
	    "%s: %s", sql, err ? err : "?");
	sqlite3_close(db);
}

static void
stats_eq(struct spool *sp, int64_t rows, int64_t bytes, double oldest,
    int64_t dead)
{
	struct spool_stats	st;

	spool_get_stats(sp, &st);
	ck_assert_int_eq(st.rows, rows);
	ck_assert_int_eq(st.bytes, bytes);
	ck_assert_msg(st.oldest == oldest, "oldest %f, want %f", st.oldest,
	    oldest);
	ck_assert_int_eq(st.dead, dead);
}

/* ------------------------------------------------------------ put/take */

START_TEST(test_put_take_order)
{
	struct spool		*sp;
	struct spool_row	*rows;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	stats_eq(sp, 0, 0, 0, 0);
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "app", EID_A, 100.5, "one"), 0);
	ck_assert_int_eq(put_ok(sp, "app", EID_B, 99.25, "second"), 0);
	ck_assert_int_eq(put_ok(sp, "app", EID_C, 101.0, "3rd body"), 0);
	commit_ok(sp);

	n = take_ok(sp, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 3);
	ck_assert(rows[0].id < rows[1].id && rows[1].id < rows[2].id);
	ck_assert_str_eq(rows[0].event_id, EID_A);
	ck_assert_str_eq(rows[1].event_id, EID_B);
	ck_assert_str_eq(rows[2].event_id, EID_C);
	ck_assert_str_eq(rows[0].route, "app");
	ck_assert_uint_eq(rows[0].len, 3);
	ck_assert_str_eq(rows[0].body, "one");
	ck_assert_uint_eq(rows[1].len, 6);
	ck_assert_str_eq(rows[1].body, "second");
	ck_assert_uint_eq(rows[2].len, 8);
	ck_assert_str_eq(rows[2].body, "3rd body");
	ck_assert(rows[1].received == 99.25);
	spool_rows_free(rows, n);

	/* 3 + 6 + 8 bytes; the oldest is the smallest received, not the first. */
	stats_eq(sp, 3, 17, 99.25, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_binary_and_empty_body)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			*cause = NULL;
	size_t			 n;
	int			 dup;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	ck_assert_int_eq(spool_put(sp, "r", EID_A, 1, "a\0b\xff", 4, &dup,
	    &cause), 0);
	ck_assert_int_eq(spool_put(sp, "r", EID_B, 2, "", 0, &dup, &cause),
	    0);
	commit_ok(sp);
	n = take_ok(sp, "r", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(rows[0].len, 4);
	ck_assert_int_eq(memcmp(rows[0].body, "a\0b\xff", 4), 0);
	ck_assert_uint_eq(rows[1].len, 0);
	ck_assert_str_eq(rows[1].body, "");
	spool_rows_free(rows, n);
	stats_eq(sp, 2, 4, 1, 0);
	ck_assert_int_eq(raw_int("SELECT sum(length(body)) FROM events"), 4);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_take_route_after)
{
	struct spool		*sp;
	struct spool_row	*rows;
	size_t			 n;
	int64_t			 cursor;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 1, "a1");
	put_ok(sp, "b", EID_A, 1, "b1");
	put_ok(sp, "a", EID_B, 2, "a2");
	put_ok(sp, "b", EID_B, 2, "b2");
	put_ok(sp, "a", EID_C, 3, "a3");
	commit_ok(sp);

	n = take_ok(sp, "a", 0, 2, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].body, "a1");
	ck_assert_str_eq(rows[1].body, "a2");
	cursor = rows[1].id;
	spool_rows_free(rows, n);

	n = take_ok(sp, "a", cursor, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "a3");
	ck_assert_str_eq(rows[0].route, "a");
	cursor = rows[0].id;
	spool_rows_free(rows, n);

	n = take_ok(sp, "a", cursor, 10, &rows);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(rows);

	n = take_ok(sp, "b", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].body, "b1");
	ck_assert_str_eq(rows[1].body, "b2");
	ck_assert_str_eq(rows[1].route, "b");
	spool_rows_free(rows, n);

	n = take_ok(sp, "nosuch", 0, 10, &rows);
	ck_assert_uint_eq(n, 0);
	n = take_ok(sp, "a", 0, 0, &rows);
	ck_assert_uint_eq(n, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* The delivery read must use the (route, id) index, not sort. */
START_TEST(test_take_uses_index)
{
	struct spool	*sp;
	sqlite3		*db;
	sqlite3_stmt	*s;
	char		 plan[1024] = "";
	size_t		 len = 0;

	tmp_setup();
	sp = open_ok();
	spool_close(sp);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN "
	    "SELECT id, route, event_id, received, body FROM events "
	    "WHERE route = ?1 AND id > ?2 ORDER BY id LIMIT ?3", -1, &s,
	    NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW)
		len += (size_t)snprintf(plan + len, sizeof plan - len, "%s;",
		    (const char *)sqlite3_column_text(s, 3));
	sqlite3_finalize(s);
	sqlite3_close(db);
	ck_assert_msg(strstr(plan, "events_route_id") != NULL, "%s", plan);
	ck_assert_msg(strstr(plan, "TEMP B-TREE") == NULL, "%s", plan);
	tmp_teardown();
}
END_TEST

/* --------------------------------------------------------- transactions */

START_TEST(test_invisible_before_commit)
{
	struct spool		*sp, *other;
	struct spool_row	*rows;
	struct spool_stats	 st;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "app", EID_A, 10, "hello");
	stats_eq(sp, 0, 0, 0, 0);	/* pending, not committed */

	/* A second connection opens while the first holds the write lock. */
	other = open_ok();
	n = take_ok(other, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 0);
	spool_get_stats(other, &st);
	ck_assert_int_eq(st.rows, 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 0);

	commit_ok(sp);
	stats_eq(sp, 1, 5, 10, 0);
	n = take_ok(other, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "hello");
	spool_rows_free(rows, n);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 1);
	spool_close(other);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_rollback)
{
	struct spool		*sp;
	struct spool_row	*rows;
	struct spool_dead	*dl;
	char			*cause = NULL;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "app", EID_A, 50, "keep");
	commit_ok(sp);
	n = take_ok(sp, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);

	begin_ok(sp);
	put_ok(sp, "app", EID_B, 40, "gone1");
	put_ok(sp, "app", EID_C, 60, "gone2");
	ck_assert_int_eq(spool_delete(sp, rows[0].id, &cause), 0);
	spool_rollback(sp);
	stats_eq(sp, 1, 4, 50, 0);

	begin_ok(sp);
	ck_assert_int_eq(spool_dead_put(sp, rows[0].id, 400, "bad", 70,
	    &cause), 0);
	spool_rollback(sp);
	stats_eq(sp, 1, 4, 50, 0);
	spool_rows_free(rows, n);

	n = take_ok(sp, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "keep");
	spool_rows_free(rows, n);
	ck_assert_int_eq(spool_dead_list(sp, &dl, &n, &cause), 0);
	ck_assert_uint_eq(n, 0);

	/* Rolling back with nothing open does nothing; the spool goes on. */
	spool_rollback(sp);
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "app", EID_B, 40, "again"), 0);
	commit_ok(sp);
	stats_eq(sp, 2, 9, 40, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_misuse)
{
	struct spool	*sp;
	char		*cause = NULL;
	int		 dup;

	tmp_setup();
	sp = open_ok();
	/* Writes outside a transaction are refused. */
	ck_assert_int_eq(spool_put(sp, "app", EID_A, 1, "x", 1, &dup,
	    &cause), -1);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	cause = NULL;
	ck_assert_int_eq(spool_commit(sp, &cause), -1);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	cause = NULL;
	/* Two begins. */
	begin_ok(sp);
	ck_assert_int_eq(spool_begin(sp, &cause), -1);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	cause = NULL;
	ck_assert_int_eq(spool_put(sp, NULL, EID_A, 1, "x", 1, &dup,
	    &cause), -1);
	free(cause);
	commit_ok(sp);
	stats_eq(sp, 0, 0, 0, 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/*
 * A failure inside the transaction: a trigger rolls the whole transaction
 * back, so the put fails and the commit after it fails too.  The figures
 * stay those of the last commit and the spool keeps working.
 */
START_TEST(test_failed_commit)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			*cause = NULL;
	size_t			 n;
	int			 dup;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "app", EID_A, 5, "first");
	commit_ok(sp);
	raw_exec("CREATE TRIGGER boom BEFORE INSERT ON events "
	    "WHEN NEW.route = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); "
	    "END;");

	begin_ok(sp);
	put_ok(sp, "app", EID_B, 1, "lost");
	ck_assert_int_eq(spool_put(sp, "boom", EID_C, 1, "x", 1, &dup,
	    &cause), -1);
	ck_assert_ptr_nonnull(cause);
	ck_assert_msg(strstr(cause, "boom") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	ck_assert_int_eq(spool_commit(sp, &cause), -1);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	spool_rollback(sp);	/* what the daemon does next: harmless */
	stats_eq(sp, 1, 5, 5, 0);

	begin_ok(sp);
	put_ok(sp, "app", EID_D, 7, "later");
	commit_ok(sp);
	stats_eq(sp, 2, 10, 5, 0);
	n = take_ok(sp, "app", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].body, "first");
	ck_assert_str_eq(rows[1].body, "later");
	spool_rows_free(rows, n);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* ------------------------------------------------------ dups and deletes */

START_TEST(test_duplicate)
{
	struct spool		*sp;
	struct spool_row	*rows;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "a", EID_A, 1, "first"), 0);
	ck_assert_int_eq(put_ok(sp, "a", EID_A, 2, "second copy"), 1);
	commit_ok(sp);
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "a", EID_A, 3, "third copy"), 1);
	ck_assert_int_eq(put_ok(sp, "b", EID_A, 4, "other"), 0);
	commit_ok(sp);

	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "first");
	spool_rows_free(rows, n);
	n = take_ok(sp, "b", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "other");
	spool_rows_free(rows, n);
	stats_eq(sp, 2, 10, 1, 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 2);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_delete)
{
	struct spool		*sp;
	struct spool_row	*rows, *after;
	char			*cause = NULL;
	size_t			 n, m;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 1, "one");
	put_ok(sp, "a", EID_B, 2, "two");
	put_ok(sp, "a", EID_C, 3, "three");
	commit_ok(sp);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 3);

	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, rows[1].id, &cause), 0);
	ck_assert_int_eq(spool_delete(sp, 999999, &cause), 0);	/* no-op */
	commit_ok(sp);
	m = take_ok(sp, "a", 0, 10, &after);
	ck_assert_uint_eq(m, 2);
	ck_assert_int_eq(after[0].id, rows[0].id);
	ck_assert_int_eq(after[1].id, rows[2].id);
	spool_rows_free(after, m);
	stats_eq(sp, 2, 8, 1, 0);

	/* Deleting the oldest moves it on; deleting all empties it. */
	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, rows[0].id, &cause), 0);
	commit_ok(sp);
	stats_eq(sp, 1, 5, 3, 0);
	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, rows[2].id, &cause), 0);
	commit_ok(sp);
	stats_eq(sp, 0, 0, 0, 0);
	spool_rows_free(rows, n);

	/* A put and a delete of the oldest in one transaction. */
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 20, "x");
	put_ok(sp, "a", EID_B, 10, "yy");
	n = take_ok(sp, "a", 0, 10, &rows);	/* own transaction's rows */
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(spool_delete(sp, rows[1].id, &cause), 0);
	commit_ok(sp);
	spool_rows_free(rows, n);
	stats_eq(sp, 1, 1, 20, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_autoincrement)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			*cause = NULL;
	size_t			 n;
	int64_t			 maxid;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 1, "one");
	put_ok(sp, "a", EID_B, 2, "two");
	put_ok(sp, "a", EID_C, 3, "three");
	commit_ok(sp);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 3);
	maxid = rows[2].id;
	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, maxid, &cause), 0);
	commit_ok(sp);
	spool_rows_free(rows, n);

	/* Without AUTOINCREMENT sqlite would hand out maxid again. */
	begin_ok(sp);
	put_ok(sp, "a", EID_D, 4, "four");
	commit_ok(sp);
	n = take_ok(sp, "a", maxid - 1, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "four");
	ck_assert_int_gt(rows[0].id, maxid);
	maxid = rows[0].id;
	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, maxid, &cause), 0);
	commit_ok(sp);
	spool_rows_free(rows, n);

	/* The same across a restart. */
	spool_close(sp);
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_C, 5, "five");
	commit_ok(sp);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(rows[2].body, "five");
	ck_assert_int_gt(rows[2].id, maxid);
	spool_rows_free(rows, n);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* ------------------------------------------------------------ dead letter */

START_TEST(test_dead_put_list)
{
	struct spool		*sp;
	struct spool_row	*rows;
	struct spool_dead	*dl;
	char			*cause = NULL;
	size_t			 n, m;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 11, "body-one");
	put_ok(sp, "a", EID_B, 12, "body-2");
	commit_ok(sp);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);

	begin_ok(sp);
	ck_assert_int_eq(spool_dead_put(sp, rows[0].id, 400,
	    "400 Bad Request", 1000.5, &cause), 0);
	ck_assert_int_eq(spool_dead_put(sp, 999999, 413, "x", 1, &cause), 0);
	commit_ok(sp);
	/* The oldest left with the dead row. */
	stats_eq(sp, 1, 6, 12, 1);

	ck_assert_int_eq(spool_dead_list(sp, &dl, &m, &cause), 0);
	ck_assert_uint_eq(m, 1);
	ck_assert_str_eq(dl[0].route, "a");
	ck_assert_str_eq(dl[0].event_id, EID_A);
	ck_assert_int_eq(dl[0].status, 400);
	ck_assert_str_eq(dl[0].reason, "400 Bad Request");
	ck_assert(dl[0].time == 1000.5);
	ck_assert(dl[0].received == 11);
	spool_dead_free(dl, m);
	spool_rows_free(rows, n);

	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].event_id, EID_B);
	spool_rows_free(rows, n);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events WHERE "
	    "event_id = '" EID_A "'"), 0);

	/* The first copy is no longer spooled: the same id is new again. */
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "a", EID_A, 13, "resent"), 0);
	commit_ok(sp);
	stats_eq(sp, 2, 12, 12, 1);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* Dead-letter the three events of route a; returns the largest event id. */
static int64_t
make_dead3(struct spool *sp)
{
	struct spool_row	*rows;
	char			*cause = NULL;
	size_t			 n, i;
	int64_t			 maxid;

	begin_ok(sp);
	put_ok(sp, "a", EID_A, 1, "one");
	put_ok(sp, "a", EID_B, 2, "two");
	put_ok(sp, "b", EID_C, 3, "three");
	commit_ok(sp);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	begin_ok(sp);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(spool_dead_put(sp, rows[i].id, 400, "bad",
		    50, &cause), 0);
	maxid = rows[n - 1].id;
	spool_rows_free(rows, n);
	n = take_ok(sp, "b", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(spool_dead_put(sp, rows[0].id, 422, "nope", 51,
	    &cause), 0);
	if (rows[0].id > maxid)
		maxid = rows[0].id;
	spool_rows_free(rows, n);
	commit_ok(sp);
	stats_eq(sp, 0, 0, 0, 3);
	return maxid;
}

START_TEST(test_requeue_all)
{
	struct spool		*sp;
	struct spool_row	*rows;
	struct spool_dead	*dl;
	char			*cause = NULL;
	size_t			 n, moved = 99;
	int64_t			 cursor;

	tmp_setup();
	sp = open_ok();
	cursor = make_dead3(sp);

	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, NULL, 0, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 3);
	commit_ok(sp);
	stats_eq(sp, 3, 11, 1, 0);
	ck_assert_int_eq(spool_dead_list(sp, &dl, &n, &cause), 0);
	ck_assert_uint_eq(n, 0);

	/* A delivery cursor already past the old ids still sees them. */
	n = take_ok(sp, "a", cursor, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].body, "one");
	ck_assert_str_eq(rows[1].body, "two");
	ck_assert(rows[0].received == 1);
	spool_rows_free(rows, n);
	n = take_ok(sp, "b", cursor, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].body, "three");
	spool_rows_free(rows, n);

	/* Requeue of an empty dead table moves nothing. */
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, NULL, 0, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 0);
	commit_ok(sp);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* spool_routes names the routes with waiting rows, sorted, each once. */
START_TEST(test_routes)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			**names, *cause = NULL;
	size_t			 n, i;

	tmp_setup();
	sp = open_ok();
	ck_assert_int_eq(spool_routes(sp, &names, &n, &cause), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(names);

	begin_ok(sp);
	put_ok(sp, "shop", EID_A, 1, "one");
	put_ok(sp, "default", EID_B, 2, "two");
	put_ok(sp, "shop", EID_C, 3, "three");
	commit_ok(sp);
	ck_assert_int_eq(spool_routes(sp, &names, &n, &cause), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(names[0], "default");
	ck_assert_str_eq(names[1], "shop");
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);

	/* Once default's row is gone, only shop is left. */
	n = take_ok(sp, "default", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	begin_ok(sp);
	ck_assert_int_eq(spool_delete(sp, rows[0].id, &cause), 0);
	commit_ok(sp);
	spool_rows_free(rows, n);
	ck_assert_int_eq(spool_routes(sp, &names, &n, &cause), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(names[0], "shop");
	free(names[0]);
	free(names);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_requeue_by_id)
{
	struct spool		*sp;
	struct spool_row	*rows;
	struct spool_dead	*dl;
	const char		*ids[2];
	char			*cause = NULL;
	size_t			 n, moved = 99;
	int64_t			 cursor;

	tmp_setup();
	sp = open_ok();
	cursor = make_dead3(sp);

	/* Given with dashes and in upper case, as a user may type it. */
	ids[0] = "01234567-89AB-CDEF-0123-456789ABCDEF";	/* EID_A */
	ids[1] = "ffffffffffffffffffffffffffffffff";		/* unknown */
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, ids, 2, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 1);
	commit_ok(sp);
	stats_eq(sp, 1, 3, 1, 2);

	n = take_ok(sp, "a", cursor, 10, &rows);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].event_id, EID_A);
	ck_assert_str_eq(rows[0].body, "one");
	spool_rows_free(rows, n);
	ck_assert_int_eq(spool_dead_list(sp, &dl, &n, &cause), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(dl[0].event_id, EID_B);
	ck_assert_str_eq(dl[1].event_id, EID_C);
	ck_assert_int_eq(dl[1].status, 422);
	ck_assert_str_eq(dl[1].route, "b");
	spool_dead_free(dl, n);

	/*
	 * EID_B is spooled again (a resend) while its dead copy waits: the
	 * requeue only removes the dead copy, one row stays.
	 */
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "a", EID_B, 9, "resent"), 0);
	commit_ok(sp);
	stats_eq(sp, 2, 9, 1, 2);
	ids[0] = EID_B;
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, ids, 1, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 1);
	commit_ok(sp);
	stats_eq(sp, 2, 9, 1, 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events WHERE "
	    "event_id = '" EID_B "'"), 1);
	n = take_ok(sp, "a", cursor, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[1].body, "resent");
	spool_rows_free(rows, n);

	/* A requeue rolled back leaves the dead row where it was. */
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, NULL, 0, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 1);
	spool_rollback(sp);
	stats_eq(sp, 2, 9, 1, 1);
	ck_assert_int_eq(spool_dead_list(sp, &dl, &n, &cause), 0);
	ck_assert_uint_eq(n, 1);
	spool_dead_free(dl, n);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* ----------------------------------------------------------- durability */

START_TEST(test_reopen)
{
	struct spool		*sp;
	struct spool_row	*rows;
	struct spool_dead	*dl;
	char			*cause = NULL;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 30.5, "alpha");
	put_ok(sp, "a", EID_B, 20.25, "beta!");
	put_ok(sp, "b", EID_C, 40, "gamma-gamma");
	commit_ok(sp);
	n = take_ok(sp, "b", 0, 10, &rows);
	ck_assert_uint_eq(n, 1);
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_put(sp, rows[0].id, 400, "bad input",
	    99.5, &cause), 0);
	commit_ok(sp);
	spool_rows_free(rows, n);
	stats_eq(sp, 2, 10, 20.25, 1);
	spool_close(sp);

	sp = open_ok();
	stats_eq(sp, 2, 10, 20.25, 1);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].body, "alpha");
	ck_assert_str_eq(rows[1].body, "beta!");
	ck_assert(rows[0].received == 30.5);
	spool_rows_free(rows, n);
	ck_assert_int_eq(spool_dead_list(sp, &dl, &n, &cause), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(dl[0].route, "b");
	ck_assert_str_eq(dl[0].event_id, EID_C);
	ck_assert_int_eq(dl[0].status, 400);
	ck_assert_str_eq(dl[0].reason, "bad input");
	ck_assert(dl[0].time == 99.5);
	ck_assert(dl[0].received == 40);
	spool_dead_free(dl, n);

	/* The duplicate rule holds across a restart. */
	begin_ok(sp);
	ck_assert_int_eq(put_ok(sp, "a", EID_A, 31, "alpha again"), 1);
	commit_ok(sp);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_journal_mode "
	    "WHERE journal_mode = 'wal'"), 1);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_file_mode)
{
	struct spool	*sp, *other;
	struct stat	 sb;
	char		 p[160];
	mode_t		 omask;
	int		 fd;

	tmp_setup();
	omask = umask(0);		/* the spool must not rely on ours */
	sp = open_ok();
	ck_assert_int_eq(umask(omask), 0);	/* and gives ours back */
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 1, "x");
	commit_ok(sp);
	other = open_ok();		/* keeps -wal and -shm alive */

	ck_assert_int_eq(stat(dbpath, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof p, "%s-wal", dbpath);
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof p, "%s-shm", dbpath);
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	spool_close(other);
	spool_close(sp);
	tmp_teardown();

	/* An existing file that is too open is tightened. */
	tmp_setup();
	fd = open(dbpath, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, 0644), 0);
	close(fd);
	sp = open_ok();
	ck_assert_int_eq(stat(dbpath, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_open_refused)
{
	struct spool	*sp;
	char		*cause = NULL;
	int		 fd;

	/* A schema newer than ours. */
	tmp_setup();
	sp = open_ok();
	spool_close(sp);
	raw_exec("PRAGMA user_version = 2;");
	sp = spool_open(dbpath, SPOOL_SYNC_FULL, &cause);
	ck_assert_ptr_null(sp);
	ck_assert_ptr_nonnull(cause);
	ck_assert_msg(strstr(cause, "newer") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	tmp_teardown();

	/* Not a database. */
	tmp_setup();
	fd = open(dbpath, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "this is not sqlite, just some text that "
	    "is long enough to hold a header................................"
	    "..............................", 130), 130);
	close(fd);
	sp = spool_open(dbpath, SPOOL_SYNC_FULL, &cause);
	ck_assert_ptr_null(sp);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	cause = NULL;
	tmp_teardown();

	/* A directory that does not exist. */
	tmp_setup();
	snprintf(dbpath, sizeof dbpath, "%s/no/such/spool.db", dir);
	sp = spool_open(dbpath, SPOOL_SYNC_FULL, &cause);
	ck_assert_ptr_null(sp);
	ck_assert_ptr_nonnull(cause);
	ck_assert_msg(strstr(cause, "spool.db") != NULL, "%s", cause);
	free(cause);
	rmdir(dir);
}
END_TEST

/*
 * A mixed history, with a reference model of the figures kept beside it;
 * afterwards the figures match the model and the file, and sqlite finds
 * the database intact.
 */
START_TEST(test_integrity)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			 eid[33], body[64];
	char			*cause = NULL;
	size_t			 n, i, moved;
	int64_t			 bytes = 0, count = 0;
	int			 k, dup;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	for (k = 0; k < 200; k++) {
		snprintf(eid, sizeof eid, "%032x", k);
		snprintf(body, sizeof body, "{\"n\":%d%*s}", k, k % 23, "");
		ck_assert_int_eq(spool_put(sp, k % 2 ? "odd" : "even", eid,
		    1000 + k, body, strlen(body), &dup, &cause), 0);
		ck_assert_int_eq(dup, 0);
		bytes += (int64_t)strlen(body);
		count++;
	}
	commit_ok(sp);

	/* Deliver the first 30 evens, dead-letter the first 20 odds. */
	begin_ok(sp);
	n = take_ok(sp, "even", 0, 30, &rows);
	ck_assert_uint_eq(n, 30);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(spool_delete(sp, rows[i].id, &cause), 0);
		bytes -= (int64_t)rows[i].len;
		count--;
	}
	spool_rows_free(rows, n);
	n = take_ok(sp, "odd", 0, 20, &rows);
	ck_assert_uint_eq(n, 20);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(spool_dead_put(sp, rows[i].id, 400, "bad",
		    2000, &cause), 0);
		bytes -= (int64_t)rows[i].len;
		count--;
	}
	spool_rows_free(rows, n);
	commit_ok(sp);
	/* The oldest left is odd #20 (k = 41) or even #30 (k = 60): 1041. */
	stats_eq(sp, count, bytes, 1041, 20);

	spool_close(sp);
	sp = open_ok();
	stats_eq(sp, count, bytes, 1041, 20);
	begin_ok(sp);
	ck_assert_int_eq(spool_dead_requeue(sp, NULL, 0, &moved, &cause), 0);
	ck_assert_uint_eq(moved, 20);
	commit_ok(sp);
	/* The requeued odds are back, k = 1 the oldest. */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 170);
	stats_eq(sp, 170, raw_int("SELECT sum(length(body)) FROM events"),
	    1001, 0);
	spool_close(sp);

	sp = open_ok();
	stats_eq(sp, 170, raw_int("SELECT sum(length(body)) FROM events"),
	    1001, 0);
	spool_close(sp);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_integrity_check "
	    "WHERE integrity_check = 'ok'"), 1);
	tmp_teardown();
}
END_TEST

/* -------------------------------------------------------------- bounds */

/*
 * Drop the oldest by id, not by received time: ids 1..4 with bodies of
 * 10, 20, 30, 40 bytes; received times out of id order.
 */
START_TEST(test_drop_oldest)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			*cause = NULL;
	int64_t			 nrows = -1, nbytes = -1;
	size_t			 n;

	tmp_setup();
	sp = open_ok();
	begin_ok(sp);
	put_ok(sp, "a", EID_A, 40, "aaaaaaaaaa");
	put_ok(sp, "b", EID_B, 10, "bbbbbbbbbbbbbbbbbbbb");
	put_ok(sp, "a", EID_C, 30, "cccccccccccccccccccccccccccccc");
	put_ok(sp, "a", EID_D, 20,
	    "dddddddddddddddddddddddddddddddddddddddd");
	commit_ok(sp);
	stats_eq(sp, 4, 100, 10, 0);

	/* 25 bytes: the first (10) is not enough, the second makes 30. */
	begin_ok(sp);
	ck_assert_int_eq(spool_drop_oldest(sp, 25, &nrows, &nbytes, &cause),
	    0);
	ck_assert_int_eq(nrows, 2);
	ck_assert_int_eq(nbytes, 30);
	/* Not visible in the figures before the commit. */
	stats_eq(sp, 4, 100, 10, 0);
	commit_ok(sp);
	stats_eq(sp, 2, 70, 20, 0);
	n = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].event_id, EID_C);
	ck_assert_str_eq(rows[1].event_id, EID_D);
	spool_rows_free(rows, n);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 2);

	/* Nothing to free: nothing dropped. */
	begin_ok(sp);
	ck_assert_int_eq(spool_drop_oldest(sp, 0, &nrows, &nbytes, &cause),
	    0);
	ck_assert_int_eq(nrows, 0);
	ck_assert_int_eq(nbytes, 0);
	commit_ok(sp);
	stats_eq(sp, 2, 70, 20, 0);

	/* More than there is: empties the spool, stops there. */
	begin_ok(sp);
	ck_assert_int_eq(spool_drop_oldest(sp, 1000, &nrows, &nbytes,
	    &cause), 0);
	ck_assert_int_eq(nrows, 2);
	ck_assert_int_eq(nbytes, 70);
	commit_ok(sp);
	stats_eq(sp, 0, 0, 0, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* Rows put in the same transaction count, and a rollback undoes a drop. */
START_TEST(test_drop_oldest_txn)
{
	struct spool	*sp;
	char		*cause = NULL;
	int64_t		 nrows = -1, nbytes = -1;

	tmp_setup();
	sp = open_ok();

	/* Outside a transaction: refused. */
	ck_assert_int_eq(spool_drop_oldest(sp, 1, &nrows, &nbytes, &cause),
	    -1);
	ck_assert_ptr_nonnull(cause);
	free(cause);
	cause = NULL;

	begin_ok(sp);
	put_ok(sp, "a", EID_A, 5, "12345");
	put_ok(sp, "a", EID_B, 6, "123456");
	commit_ok(sp);

	begin_ok(sp);
	ck_assert_int_eq(spool_drop_oldest(sp, 1, &nrows, &nbytes, &cause),
	    0);
	ck_assert_int_eq(nrows, 1);
	ck_assert_int_eq(nbytes, 5);
	spool_rollback(sp);
	stats_eq(sp, 2, 11, 5, 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM events"), 2);

	/* A new row in the transaction is dropped after the older ones. */
	begin_ok(sp);
	put_ok(sp, "a", EID_C, 1, "1234567");
	ck_assert_int_eq(spool_drop_oldest(sp, 12, &nrows, &nbytes, &cause),
	    0);
	ck_assert_int_eq(nrows, 3);
	ck_assert_int_eq(nbytes, 18);
	commit_ok(sp);
	stats_eq(sp, 0, 0, 0, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

START_TEST(test_expire)
{
	struct spool		*sp;
	struct spool_row	*rows;
	char			*cause = NULL;
	int64_t			 n = -1;
	size_t			 m;

	tmp_setup();
	sp = open_ok();
	ck_assert_int_eq(spool_expire(sp, 100, &n, &cause), -1);
	free(cause);
	cause = NULL;

	begin_ok(sp);
	put_ok(sp, "a", EID_A, 300, "a");
	put_ok(sp, "a", EID_B, 100, "bb");
	put_ok(sp, "b", EID_C, 99.5, "ccc");
	put_ok(sp, "a", EID_D, 200, "dddd");
	commit_ok(sp);
	stats_eq(sp, 4, 10, 99.5, 0);

	/* Strictly older than the cutoff: 100 itself stays. */
	begin_ok(sp);
	ck_assert_int_eq(spool_expire(sp, 100, &n, &cause), 0);
	ck_assert_int_eq(n, 1);
	commit_ok(sp);
	stats_eq(sp, 3, 7, 100, 0);

	begin_ok(sp);
	ck_assert_int_eq(spool_expire(sp, 250, &n, &cause), 0);
	ck_assert_int_eq(n, 2);
	commit_ok(sp);
	stats_eq(sp, 1, 1, 300, 0);
	m = take_ok(sp, "a", 0, 10, &rows);
	ck_assert_uint_eq(m, 1);
	ck_assert_str_eq(rows[0].event_id, EID_A);
	spool_rows_free(rows, m);

	/* Nothing old enough: no change. */
	begin_ok(sp);
	ck_assert_int_eq(spool_expire(sp, 300, &n, &cause), 0);
	ck_assert_int_eq(n, 0);
	commit_ok(sp);
	stats_eq(sp, 1, 1, 300, 0);

	/* Reopen: the figures read from disk agree. */
	spool_close(sp);
	sp = open_ok();
	stats_eq(sp, 1, 1, 300, 0);
	spool_close(sp);
	tmp_teardown();
}
END_TEST

/* ------------------------------------------------------------ suite */

static Suite *
spool_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("spool");

	tc = tcase_create("put_take");
	tcase_add_test(tc, test_put_take_order);
	tcase_add_test(tc, test_binary_and_empty_body);
	tcase_add_test(tc, test_take_route_after);
	tcase_add_test(tc, test_take_uses_index);
	suite_add_tcase(s, tc);

	tc = tcase_create("transactions");
	tcase_add_test(tc, test_invisible_before_commit);
	tcase_add_test(tc, test_rollback);
	tcase_add_test(tc, test_misuse);
	tcase_add_test(tc, test_failed_commit);
	suite_add_tcase(s, tc);

	tc = tcase_create("dups_deletes");
	tcase_add_test(tc, test_duplicate);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_autoincrement);
	suite_add_tcase(s, tc);

	tc = tcase_create("dead_letter");
	tcase_add_test(tc, test_dead_put_list);
	tcase_add_test(tc, test_requeue_all);
	tcase_add_test(tc, test_requeue_by_id);
	tcase_add_test(tc, test_routes);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_add_test(tc, test_drop_oldest);
	tcase_add_test(tc, test_drop_oldest_txn);
	tcase_add_test(tc, test_expire);
	suite_add_tcase(s, tc);

	tc = tcase_create("durability");
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_file_mode);
	tcase_add_test(tc, test_open_refused);
	tcase_add_test(tc, test_integrity);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return check_run(spool_suite());
}
