/*
 * check_fibers.c -- unit tests of daemon/fibers.c: scope identity is
 * (pid, fiber); fork copies and isolates; end frees; the lifetimes and
 * bounds of SPEC §3 (least recently used eviction at max_fibers, idle
 * fibers freed after fiber_ttl, a process's scopes kept for scope_grace
 * after its last connection), each eviction counted; and the walk.
 *
 * The clock is a plain number passed in by the tests.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "daemon/fibers.h"
#include "daemon/scope.h"
#include "proto/msg.h"
#include "tests/check_run.h"

static const char *const set_names[MSG_F_COUNT] = {
	"tags", "extra", "contexts", "user", "level", "transaction",
	"fingerprint"
};

static const struct fibers_limits default_limits = {
	.max_fibers = 100,
	.ttl = 3600,
	.grace = 60
};

/* Apply a `set` whose fields are the members of the JSON object text. */
static void
apply_set(struct scope *s, const char *json)
{
	struct msg	m;
	size_t		i;

	ck_assert_ptr_nonnull(s);
	memset(&m, 0, sizeof m);
	m.op = MSG_SET;
	m.root = cJSON_Parse(json);
	ck_assert_ptr_nonnull(m.root);
	for (i = 0; i < MSG_F_COUNT; i++)
		m.field[i] = cJSON_GetObjectItemCaseSensitive(m.root,
		    set_names[i]);
	scope_set(s, &m);
	cJSON_Delete(m.root);
}

/*
 * The tag's value in scope s, or NULL.  The tags are parsed afresh each
 * time; the returned string stays valid until the next call.
 */
static const char *
tag(const struct scope *s, const char *key)
{
	static char	 buf[256];
	const cJSON	*v;
	cJSON		*tags;
	const char	*r = NULL;

	if (s == NULL || (tags = scope_map_json(s, SCOPE_TAGS)) == NULL)
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(tags, key);
	if (cJSON_IsString(v) && strlen(v->valuestring) < sizeof buf) {
		memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
		r = buf;
	}
	cJSON_Delete(tags);
	return r;
}

static struct fibers_counts
counts(const struct fibers *fs)
{
	struct fibers_counts	c;

	fibers_get_counts(fs, &c);
	return c;
}

/*
 * The walk collects "pid/fiber" (fiber "-" for a process scope) into a
 * space-separated sorted-free list; tests look names up in it.
 */
struct seen {
	char	text[1024];
	int	nproc;
	int	nfiber;
	int	stop_after;	/* 0: never stop */
	int	calls;
};

static int
seen_cb(pid_t pid, const char *fiber, const struct scope *s,
    double last_used, void *arg)
{
	struct seen	*w = arg;
	size_t		 len = strlen(w->text);

	(void)last_used;
	ck_assert_ptr_nonnull(s);
	snprintf(w->text + len, sizeof w->text - len, " %d/%s", (int)pid,
	    fiber == NULL ? "-" : fiber);
	if (fiber == NULL)
		w->nproc++;
	else
		w->nfiber++;
	w->calls++;
	return w->stop_after != 0 && w->calls >= w->stop_after;
}

/* 1 if the fiber is live, found with a walk (which touches nothing). */
static int
has(const struct fibers *fs, pid_t pid, const char *fiber)
{
	struct seen	w;
	char		want[200];

	memset(&w, 0, sizeof w);
	fibers_walk(fs, pid, seen_cb, &w);
	snprintf(want, sizeof want, " %d/%s", (int)pid, fiber);
	strcat(w.text, " ");
	strcat(want, " ");
	return strstr(w.text, want) != NULL;
}

START_TEST(test_identity_per_pid)
{
	struct fibers	*fs;
	struct scope	*a1, *a2, *p1;

	fs = fibers_new(&default_limits);
	fibers_attach(fs, 100);
	fibers_attach(fs, 200);
	a1 = fibers_scope(fs, 100, "a", 1, 1);
	a2 = fibers_scope(fs, 200, "a", 1, 1);
	ck_assert_ptr_nonnull(a1);
	ck_assert_ptr_nonnull(a2);
	ck_assert_ptr_ne(a1, a2);
	apply_set(a1, "{\"tags\":{\"who\":\"one\"}}");
	ck_assert_ptr_null(tag(a2, "who"));
	ck_assert_str_eq(tag(fibers_scope(fs, 100, "a", 0, 2), "who"), "one");
	ck_assert_ptr_eq(fibers_scope(fs, 100, "a", 0, 2), a1);

	/* The process scope is another scope again. */
	p1 = fibers_scope(fs, 100, NULL, 1, 2);
	ck_assert_ptr_nonnull(p1);
	ck_assert_ptr_ne(p1, a1);
	ck_assert_ptr_null(tag(p1, "who"));

	/* Without create, nothing is made. */
	ck_assert_ptr_null(fibers_scope(fs, 100, "b", 0, 3));
	ck_assert_ptr_null(fibers_scope(fs, 300, "a", 0, 3));
	ck_assert_ptr_null(fibers_scope(fs, 300, NULL, 0, 3));
	ck_assert_uint_eq(counts(fs).procs, 2);
	ck_assert_uint_eq(counts(fs).live, 2);
	fibers_free(fs);
}
END_TEST

START_TEST(test_fork_copies_and_isolates)
{
	struct fibers	*fs;
	struct scope	*p, *c;

	fs = fibers_new(&default_limits);
	fibers_attach(fs, 1);
	p = fibers_scope(fs, 1, "parent", 1, 1);
	apply_set(p, "{\"tags\":{\"req\":\"42\"},\"level\":\"info\"}");
	fibers_fork(fs, 1, "child", "parent", 2);

	c = fibers_scope(fs, 1, "child", 0, 3);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(tag(c, "req"), "42");
	ck_assert_str_eq(c->level, "info");

	/* A change in the child does not reach the parent, nor back. */
	apply_set(c, "{\"tags\":{\"req\":\"child\",\"only\":\"c\"}}");
	p = fibers_scope(fs, 1, "parent", 0, 4);
	ck_assert_str_eq(tag(p, "req"), "42");
	ck_assert_ptr_null(tag(p, "only"));
	apply_set(p, "{\"level\":\"fatal\"}");
	c = fibers_scope(fs, 1, "child", 0, 5);
	ck_assert_str_eq(c->level, "info");

	/* Fork onto an existing fiber replaces its scope whole. */
	fibers_fork(fs, 1, "child", "parent", 6);
	c = fibers_scope(fs, 1, "child", 0, 7);
	ck_assert_str_eq(tag(c, "req"), "42");
	ck_assert_ptr_null(tag(c, "only"));
	ck_assert_str_eq(c->level, "fatal");

	/* Fork from an unknown fiber gives an empty scope, made if needed. */
	fibers_fork(fs, 1, "child", "nobody", 8);
	c = fibers_scope(fs, 1, "child", 0, 9);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scope_empty(c), 1);
	fibers_fork(fs, 1, "fresh", "nobody", 10);
	c = fibers_scope(fs, 1, "fresh", 0, 11);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scope_empty(c), 1);

	/* Fork of a fiber onto itself changes nothing, makes nothing. */
	fibers_fork(fs, 1, "parent", "parent", 12);
	p = fibers_scope(fs, 1, "parent", 0, 13);
	ck_assert_str_eq(tag(p, "req"), "42");
	fibers_fork(fs, 1, "ghost", "ghost", 14);
	ck_assert_ptr_null(fibers_scope(fs, 1, "ghost", 0, 15));

	/* Fork stays within the pid. */
	fibers_attach(fs, 2);
	fibers_fork(fs, 2, "child", "parent", 16);
	c = fibers_scope(fs, 2, "child", 0, 17);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scope_empty(c), 1);
	ck_assert_uint_eq(counts(fs).live, 4);
	fibers_free(fs);
}
END_TEST

START_TEST(test_fork_when_full)
{
	struct fibers_limits	 l = default_limits;
	struct fibers		*fs;
	struct scope		*p, *c;

	/* With room for one fiber, making the child evicts the parent. */
	l.max_fibers = 1;
	fs = fibers_new(&l);
	fibers_attach(fs, 1);
	p = fibers_scope(fs, 1, "parent", 1, 1);
	apply_set(p, "{\"tags\":{\"k\":\"v\"}}");
	fibers_fork(fs, 1, "child", "parent", 2);
	c = fibers_scope(fs, 1, "child", 0, 3);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(tag(c, "k"), "v");
	ck_assert_ptr_null(fibers_scope(fs, 1, "parent", 0, 4));
	ck_assert_uint_eq(counts(fs).live, 1);
	ck_assert_uint_eq(counts(fs).evicted_lru, 1);
	fibers_free(fs);
}
END_TEST

START_TEST(test_end)
{
	struct fibers	*fs;
	struct scope	*a;

	fs = fibers_new(&default_limits);
	fibers_attach(fs, 1);
	fibers_attach(fs, 2);
	a = fibers_scope(fs, 1, "a", 1, 1);
	apply_set(a, "{\"tags\":{\"x\":\"1\"}}");
	apply_set(fibers_scope(fs, 2, "a", 1, 1), "{\"tags\":{\"x\":\"2\"}}");
	apply_set(fibers_scope(fs, 1, NULL, 1, 1), "{\"tags\":{\"p\":\"1\"}}");
	ck_assert_uint_eq(counts(fs).live, 2);

	fibers_end(fs, 1, "a");
	ck_assert_ptr_null(fibers_scope(fs, 1, "a", 0, 2));
	ck_assert_uint_eq(counts(fs).live, 1);
	/* The other pid's fiber of the same id and the process scope stay. */
	ck_assert_str_eq(tag(fibers_scope(fs, 2, "a", 0, 2), "x"), "2");
	ck_assert_str_eq(tag(fibers_scope(fs, 1, NULL, 0, 2), "p"), "1");
	/* An ended fiber that comes back starts empty. */
	ck_assert_int_eq(scope_empty(fibers_scope(fs, 1, "a", 1, 3)), 1);

	/* End of an unknown fiber, or of an unknown pid: nothing happens. */
	fibers_end(fs, 1, "unknown");
	fibers_end(fs, 99, "a");
	ck_assert_uint_eq(counts(fs).live, 2);
	ck_assert_uint_eq(counts(fs).procs, 2);
	/* end is not an eviction. */
	ck_assert_uint_eq(counts(fs).evicted_lru, 0);
	ck_assert_uint_eq(counts(fs).evicted_ttl, 0);
	ck_assert_uint_eq(counts(fs).evicted_grace, 0);
	fibers_free(fs);
}
END_TEST

START_TEST(test_lru_order)
{
	struct fibers_limits	 l = default_limits;
	struct fibers		*fs;

	l.max_fibers = 3;
	fs = fibers_new(&l);
	fibers_attach(fs, 1);
	fibers_attach(fs, 2);
	fibers_scope(fs, 1, "a", 1, 1);
	fibers_scope(fs, 2, "b", 1, 2);
	fibers_scope(fs, 1, "c", 1, 3);
	ck_assert_uint_eq(counts(fs).live, 3);
	ck_assert_uint_eq(counts(fs).evicted_lru, 0);

	/* Touching a makes b the least recently used. */
	ck_assert_ptr_nonnull(fibers_scope(fs, 1, "a", 0, 4));
	fibers_scope(fs, 1, "d", 1, 5);
	ck_assert_uint_eq(counts(fs).live, 3);
	ck_assert_uint_eq(counts(fs).evicted_lru, 1);
	ck_assert(!has(fs, 2, "b"));
	ck_assert(has(fs, 1, "a"));
	ck_assert(has(fs, 1, "c"));
	ck_assert(has(fs, 1, "d"));

	/* Next out: c (3), then a (4), then d (5). */
	fibers_scope(fs, 2, "e", 1, 6);
	ck_assert(!has(fs, 1, "c"));
	ck_assert(has(fs, 1, "a"));
	fibers_scope(fs, 2, "f", 1, 7);
	ck_assert(!has(fs, 1, "a"));
	ck_assert(has(fs, 1, "d"));
	ck_assert(has(fs, 2, "e"));
	ck_assert(has(fs, 2, "f"));
	ck_assert_uint_eq(counts(fs).evicted_lru, 3);

	/* A fork counts as use of the new fiber. */
	fibers_fork(fs, 2, "g", "e", 8);	/* e touched, d evicted */
	ck_assert(!has(fs, 1, "d"));
	ck_assert(has(fs, 2, "e"));
	ck_assert(has(fs, 2, "f"));
	ck_assert(has(fs, 2, "g"));
	ck_assert_uint_eq(counts(fs).evicted_lru, 4);

	/* Lowering the limit evicts at once, oldest first (f, then e). */
	l.max_fibers = 1;
	fibers_set_limits(fs, &l);
	ck_assert_uint_eq(counts(fs).live, 1);
	ck_assert(has(fs, 2, "g"));
	ck_assert_uint_eq(counts(fs).evicted_lru, 6);
	ck_assert_uint_eq(counts(fs).evicted_ttl, 0);
	fibers_free(fs);
}
END_TEST

START_TEST(test_ttl)
{
	struct fibers_limits	 l = default_limits;
	struct fibers		*fs;

	l.ttl = 10;
	fs = fibers_new(&l);
	fibers_attach(fs, 1);
	fibers_scope(fs, 1, "a", 1, 0);
	fibers_scope(fs, 1, "b", 1, 5);
	fibers_scope(fs, 1, "c", 1, 6);

	fibers_expire(fs, 10);		/* a idle 10: not more than ttl */
	ck_assert_uint_eq(counts(fs).live, 3);
	ck_assert_uint_eq(counts(fs).evicted_ttl, 0);

	fibers_expire(fs, 10.5);	/* a idle 10.5 */
	ck_assert(!has(fs, 1, "a"));
	ck_assert(has(fs, 1, "b"));
	ck_assert(has(fs, 1, "c"));
	ck_assert_uint_eq(counts(fs).evicted_ttl, 1);

	/* Use keeps a fiber alive: b touched at 14. */
	ck_assert_ptr_nonnull(fibers_scope(fs, 1, "b", 0, 14));
	fibers_expire(fs, 16.5);	/* c idle 10.5, b idle 2.5 */
	ck_assert(!has(fs, 1, "c"));
	ck_assert(has(fs, 1, "b"));
	ck_assert_uint_eq(counts(fs).evicted_ttl, 2);
	fibers_expire(fs, 30);
	ck_assert_uint_eq(counts(fs).live, 0);
	ck_assert_uint_eq(counts(fs).evicted_ttl, 3);
	/* The attached process itself stays. */
	ck_assert_uint_eq(counts(fs).procs, 1);
	ck_assert_uint_eq(counts(fs).evicted_lru, 0);
	ck_assert_uint_eq(counts(fs).evicted_grace, 0);
	fibers_free(fs);
}
END_TEST

START_TEST(test_grace)
{
	struct fibers	*fs;

	fs = fibers_new(&default_limits);	/* grace 60 */
	fibers_attach(fs, 7);
	apply_set(fibers_scope(fs, 7, NULL, 1, 0), "{\"tags\":{\"p\":\"1\"}}");
	apply_set(fibers_scope(fs, 7, "f1", 1, 0), "{\"tags\":{\"f\":\"1\"}}");
	fibers_scope(fs, 7, "f2", 1, 0);

	/* Detach at 100, re-attach within the grace: everything kept. */
	fibers_detach(fs, 7, 100);
	fibers_expire(fs, 150);
	ck_assert_uint_eq(counts(fs).procs, 1);
	fibers_attach(fs, 7);
	fibers_expire(fs, 500);
	ck_assert_str_eq(tag(fibers_scope(fs, 7, NULL, 0, 500), "p"), "1");
	ck_assert_str_eq(tag(fibers_scope(fs, 7, "f1", 0, 500), "f"), "1");
	ck_assert_uint_eq(counts(fs).live, 2);

	/* Two connections: closing one keeps the process attached. */
	fibers_attach(fs, 7);
	fibers_detach(fs, 7, 600);
	fibers_expire(fs, 1000);
	ck_assert_uint_eq(counts(fs).procs, 1);

	/* Last close at 1000: kept through 1060, gone after. */
	fibers_detach(fs, 7, 1000);
	fibers_expire(fs, 1060);
	ck_assert_uint_eq(counts(fs).procs, 1);
	ck_assert_uint_eq(counts(fs).evicted_grace, 0);
	fibers_expire(fs, 1061);
	ck_assert_uint_eq(counts(fs).procs, 0);
	ck_assert_uint_eq(counts(fs).live, 0);
	ck_assert_uint_eq(counts(fs).evicted_grace, 2);
	ck_assert_ptr_null(fibers_scope(fs, 7, NULL, 0, 1062));
	ck_assert_ptr_null(fibers_scope(fs, 7, "f1", 0, 1062));
	ck_assert_uint_eq(counts(fs).evicted_ttl, 0);

	/* A reconnect after the grace starts empty. */
	fibers_attach(fs, 7);
	ck_assert_int_eq(scope_empty(fibers_scope(fs, 7, NULL, 1, 1100)), 1);
	fibers_free(fs);
}
END_TEST

START_TEST(test_grace_edge_cases)
{
	struct fibers	*fs;

	fs = fibers_new(&default_limits);

	/* Nothing set and no connection: freed at the next expiry. */
	fibers_attach(fs, 1);
	fibers_detach(fs, 1, 10);
	fibers_expire(fs, 10);
	ck_assert_uint_eq(counts(fs).procs, 0);

	/* Detach of an unknown pid, or one too many: harmless. */
	fibers_detach(fs, 2, 10);
	ck_assert_uint_eq(counts(fs).procs, 0);

	/* A pid that never attached lives one grace from its creation. */
	apply_set(fibers_scope(fs, 3, "f", 1, 1000), "{\"level\":\"info\"}");
	fibers_detach(fs, 3, 1010);		/* no connection: ignored */
	ck_assert_uint_eq(counts(fs).procs, 1);
	fibers_expire(fs, 1060);
	ck_assert_uint_eq(counts(fs).procs, 1);
	ck_assert_str_eq(fibers_scope(fs, 3, "f", 0, 1060)->level, "info");
	fibers_expire(fs, 1061);
	ck_assert_uint_eq(counts(fs).procs, 0);
	ck_assert_uint_eq(counts(fs).evicted_grace, 1);

	/* ... unless a connection comes in the meantime. */
	fibers_scope(fs, 4, NULL, 1, 2000);
	apply_set(fibers_scope(fs, 4, NULL, 0, 2000), "{\"level\":\"x\"}");
	fibers_attach(fs, 4);
	fibers_expire(fs, 5000);
	ck_assert_str_eq(fibers_scope(fs, 4, NULL, 0, 5000)->level, "x");
	fibers_free(fs);
}
END_TEST

START_TEST(test_walk)
{
	struct fibers	*fs;
	struct seen	 w;

	fs = fibers_new(&default_limits);
	fibers_attach(fs, 1);
	fibers_attach(fs, 2);
	fibers_scope(fs, 1, "a", 1, 1);
	fibers_scope(fs, 1, "b", 1, 1);
	fibers_scope(fs, 2, "c", 1, 1);

	memset(&w, 0, sizeof w);
	fibers_walk(fs, 0, seen_cb, &w);
	ck_assert_int_eq(w.nproc, 2);
	ck_assert_int_eq(w.nfiber, 3);
	ck_assert_ptr_nonnull(strstr(w.text, " 1/-"));
	ck_assert_ptr_nonnull(strstr(w.text, " 2/-"));
	ck_assert_ptr_nonnull(strstr(w.text, " 2/c"));

	memset(&w, 0, sizeof w);
	fibers_walk(fs, 1, seen_cb, &w);
	ck_assert_int_eq(w.nproc, 1);
	ck_assert_int_eq(w.nfiber, 2);
	ck_assert_ptr_null(strstr(w.text, " 2/"));
	ck_assert_ptr_nonnull(strstr(w.text, " 1/a"));
	ck_assert_ptr_nonnull(strstr(w.text, " 1/b"));

	/* Unknown pid: no call.  A non-zero return stops the walk. */
	memset(&w, 0, sizeof w);
	fibers_walk(fs, 9, seen_cb, &w);
	ck_assert_int_eq(w.calls, 0);
	memset(&w, 0, sizeof w);
	w.stop_after = 2;
	fibers_walk(fs, 0, seen_cb, &w);
	ck_assert_int_eq(w.calls, 2);
	fibers_free(fs);
}
END_TEST

static Suite *
fibers_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("fibers");
	tc = tcase_create("identity");
	tcase_add_test(tc, test_identity_per_pid);
	tcase_add_test(tc, test_fork_copies_and_isolates);
	tcase_add_test(tc, test_fork_when_full);
	tcase_add_test(tc, test_end);
	suite_add_tcase(s, tc);
	tc = tcase_create("bounds");
	tcase_add_test(tc, test_lru_order);
	tcase_add_test(tc, test_ttl);
	tcase_add_test(tc, test_grace);
	tcase_add_test(tc, test_grace_edge_cases);
	suite_add_tcase(s, tc);
	tc = tcase_create("walk");
	tcase_add_test(tc, test_walk);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(fibers_suite());
}
