/*
 * check_client.c -- unit tests for clients/c/errrelay.c, liberrrelay.
 *
 * Each test runs a fake errrelayd: a listening AF_UNIX socket in a temp
 * dir served by a thread that accepts connections one after another,
 * records every line it reads (with the connection it came on) and
 * answers according to the test's mode.  The tests assert the exact lines
 * the library writes (SPEC §3), how it reads replies, its ack timeout,
 * its one reconnect, SIGPIPE safety after a fork or a lost peer, and the
 * escaping of strings.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <cjson/cJSON.h>

#include "clients/c/errrelay.h"
#include "tests/check_run.h"

#define SDK		"\"sdk\":\"liberrrelay/" PACKAGE_VERSION "\""
#define SRV_EVENT_ID	"00112233445566778899aabbccddeeff"
#define MAX_LINES	64
#define MAX_CONNS	8

/* How the fake daemon answers a line. */
enum fake_mode {
	FM_SILENT,		/* never answers (fire-and-forget) */
	FM_ACK,			/* {"id":N,"ok":true}, events with SRV_EVENT_ID */
	FM_REFUSE_EVENT,	/* as FM_ACK, but events get spool_full */
	FM_NOID_ERROR,		/* as FM_ACK, but events get an id-less error */
	FM_STALE_FIRST,		/* as FM_ACK, a stale reply before each */
	FM_GARBAGE,		/* as FM_ACK, but events get a non-JSON line */
	FM_IGNORE_EVENT,	/* as FM_ACK, but events get nothing */
	FM_CLOSE_AFTER,		/* no answers; close conn 0 after line `arg` */
	FM_SHUT_AFTER,		/* no answers; shut conn 0 for reading after
				 * line `arg` (writes to it then fail EPIPE) */
	FM_ACK_CLOSE_EVENT	/* as FM_ACK, but conn 0 is closed on an event */
};

/* What the fake daemon does after a line. */
enum fake_act {
	FA_NONE,
	FA_REPLY,
	FA_CLOSE,
	FA_SHUT_RD
};

struct fake {
	char		 dir[64];
	char		 path[100];
	int		 lfd;
	int		 nconn;		/* connections to serve, in turn */
	enum fake_mode	 mode;
	int		 arg;
	pthread_t	 thr;
	int		 running;

	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	char		*lines[MAX_LINES];
	int		 conn_of[MAX_LINES];
	int		 nlines;
	pid_t		 peer[MAX_CONNS];
	int		 dropped;	/* connections the fake closed or shut */
	int		 held[MAX_CONNS];
	int		 nheld;
};

static struct fake	 F;

/* The reply to one line under the fake's mode (into buf, '\n' ended). */
static enum fake_act
fake_answer(struct fake *f, int conn, int idx, const char *line, char *buf,
    size_t len)
{
	cJSON		*j, *id, *op;
	long long	 n = -1;
	int		 event;

	switch (f->mode) {
	case FM_SILENT:
		return FA_NONE;
	case FM_CLOSE_AFTER:
		return conn == 0 && idx == f->arg ? FA_CLOSE : FA_NONE;
	case FM_SHUT_AFTER:
		return conn == 0 && idx == f->arg ? FA_SHUT_RD : FA_NONE;
	default:
		break;
	}
	j = cJSON_Parse(line);
	ck_assert_msg(cJSON_IsObject(j), "the library wrote a non-object: %s",
	    line);
	id = cJSON_GetObjectItemCaseSensitive(j, "id");
	op = cJSON_GetObjectItemCaseSensitive(j, "op");
	if (cJSON_IsNumber(id))
		n = (long long)id->valuedouble;
	event = cJSON_IsString(op) && strcmp(op->valuestring, "event") == 0;
	cJSON_Delete(j);
	ck_assert_msg(n >= 1, "an ack-mode line without a numeric id: %s",
	    line);
	if (event) {
		switch (f->mode) {
		case FM_REFUSE_EVENT:
			snprintf(buf, len, "{\"id\":%lld,\"ok\":false,"
			    "\"error\":\"spool_full\",\"message\":"
			    "\"spool is \\\"full\\\"\"}\n", n);
			return FA_REPLY;
		case FM_NOID_ERROR:
			snprintf(buf, len, "{\"ok\":false,\"error\":\"bad_json\","
			    "\"message\":\"invalid JSON\",\"line\":%d}\n",
			    idx + 1);
			return FA_REPLY;
		case FM_GARBAGE:
			snprintf(buf, len, "this is not JSON\n");
			return FA_REPLY;
		case FM_IGNORE_EVENT:
			return FA_NONE;
		case FM_ACK_CLOSE_EVENT:
			if (conn == 0)
				return FA_CLOSE;
			break;
		default:
			break;
		}
		snprintf(buf, len, "{\"id\":%lld,\"ok\":true,\"event_id\":"
		    "\"" SRV_EVENT_ID "\"}\n", n);
	} else if (f->mode == FM_STALE_FIRST)
		snprintf(buf, len, "{\"id\":%lld,\"ok\":false,\"error\":"
		    "\"bad_op\",\"message\":\"stale\"}\n\n{\"id\":%lld,"
		    "\"ok\":true}\n", n + 1000, n);
	else
		snprintf(buf, len, "{\"id\":%lld,\"ok\":true}\n", n);
	return FA_REPLY;
}

static void
fake_dropped(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	f->dropped++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* The server thread: serve f->nconn connections one after another. */
static void *
fake_main(void *arg)
{
	struct fake	*f = arg;
	struct ucred	 uc;
	socklen_t	 ulen;
	static char	 buf[65536];
	char		 reply[1024], *nl;
	size_t		 len, used;
	ssize_t		 n;
	int		 c, fd, idx;
	enum fake_act	 act;

	for (c = 0; c < f->nconn; c++) {
		if ((fd = accept(f->lfd, NULL, NULL)) == -1)
			break;
		ulen = sizeof uc;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ulen) == 0)
			f->peer[c] = uc.pid;
		len = 0;
		idx = 0;
		act = FA_NONE;
		for (;;) {
			while (act == FA_NONE || act == FA_REPLY) {
				if ((nl = memchr(buf, '\n', len)) == NULL)
					break;
				*nl = '\0';
				pthread_mutex_lock(&f->mu);
				if (f->nlines < MAX_LINES) {
					f->lines[f->nlines] = strdup(buf);
					f->conn_of[f->nlines++] = c;
				}
				pthread_mutex_unlock(&f->mu);
				act = fake_answer(f, c, idx++, buf, reply,
				    sizeof reply);
				used = (size_t)(nl - buf) + 1;
				memmove(buf, buf + used, len - used);
				len -= used;
				if (act == FA_REPLY)
					send(fd, reply, strlen(reply),
					    MSG_NOSIGNAL);
			}
			if (act == FA_CLOSE || act == FA_SHUT_RD)
				break;
			n = read(fd, buf + len, sizeof buf - len);
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		if (act == FA_SHUT_RD) {
			shutdown(fd, SHUT_RD);
			f->held[f->nheld++] = fd;	/* closed at the end */
			fake_dropped(f);
		} else {
			close(fd);
			if (act == FA_CLOSE)
				fake_dropped(f);
		}
	}
	return NULL;
}

/* Listen on a fresh socket in a temp dir (no thread yet). */
static void
fake_listen(struct fake *f)
{
	struct sockaddr_un	 sun;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(f->lfd, -1);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(f->lfd, 16), 0);
}

static void
fake_run(struct fake *f, enum fake_mode mode, int nconn, int arg)
{
	f->mode = mode;
	f->nconn = nconn;
	f->arg = arg;
	ck_assert_int_eq(pthread_create(&f->thr, NULL, fake_main, f), 0);
	f->running = 1;
}

/* Wait for the server thread to finish its connections. */
static void
fake_join(struct fake *f)
{
	if (f->running)
		pthread_join(f->thr, NULL);
	f->running = 0;
}

/* Wait until the fake has dropped n connections of its own accord. */
static void
fake_wait_dropped(struct fake *f, int n)
{
	pthread_mutex_lock(&f->mu);
	while (f->dropped < n)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

static void
setup(void)
{
	memset(&F, 0, sizeof F);
	snprintf(F.dir, sizeof F.dir, "/tmp/check_client.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(F.dir));
	snprintf(F.path, sizeof F.path, "%s/data.sock", F.dir);
	pthread_mutex_init(&F.mu, NULL);
	pthread_cond_init(&F.cv, NULL);
	F.lfd = -1;
	fake_listen(&F);
}

static void
teardown(void)
{
	int	 i;

	fake_join(&F);
	for (i = 0; i < F.nlines; i++)
		free(F.lines[i]);
	for (i = 0; i < F.nheld; i++)
		close(F.held[i]);
	if (F.lfd != -1)
		close(F.lfd);
	unlink(F.path);
	rmdir(F.dir);
	pthread_mutex_destroy(&F.mu);
	pthread_cond_destroy(&F.cv);
}

/* Assert that line i was s, read on connection conn. */
static void
line_is(int i, int conn, const char *s)
{
	ck_assert_msg(i < F.nlines, "line %d never arrived (%d lines)", i,
	    F.nlines);
	ck_assert_str_eq(F.lines[i], s);
	ck_assert_int_eq(F.conn_of[i], conn);
}

static int
is_hex32(const char *s)
{
	size_t	 i;

	if (strlen(s) != 32)
		return 0;
	for (i = 0; i < 32; i++) {
		if (strchr("0123456789abcdef", s[i]) == NULL)
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------ lines */

START_TEST(test_lines_fire_and_forget)
{
	struct errrelay		*h;
	struct errrelay_tag	 tags[] = { { "color", "blue" },
				    { "gone", NULL } };
	struct errrelay_scope	 s;
	char			 eid[ERRRELAY_EVENT_ID_SIZE], want[512];

	fake_run(&F, FM_SILENT, 1, 0);
	h = errrelay_open(F.path, "shop", 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(errrelay_connected(h), 1);
	ck_assert_str_eq(errrelay_error(h), "");

	memset(&s, 0, sizeof s);
	s.tags = tags;
	s.ntags = 2;
	s.extra = "{\"n\": 1}";
	s.user = "{\"id\":\"42\"}";
	s.contexts = "null";
	s.fingerprint = "[\"a\",\"b\"]";
	s.level = "warning";
	s.transaction = "GET /cart";
	ck_assert_int_eq(errrelay_set(h, "f1", &s), 0);
	ck_assert_int_eq(errrelay_set_tag(h, NULL, "k", "v"), 0);
	ck_assert_int_eq(errrelay_set_json(h, "f1",
	    "{\"level\":null,\n \"tags\":{\"a\":\"1\"}}"), 0);
	ck_assert_int_eq(errrelay_set_json(h, "f1", " { } "), 0);
	ck_assert_int_eq(errrelay_crumb(h, "f1", "db", "SELECT 1", "info"), 0);
	ck_assert_int_eq(errrelay_crumb(h, NULL, NULL, "only", NULL), 0);
	ck_assert_int_eq(errrelay_crumb_json(h, "f1",
	    "{\"type\":\"http\",\"data\":{\"status\":500}}"), 0);
	ck_assert_int_eq(errrelay_fork(h, "child", "f1"), 0);
	ck_assert_int_eq(errrelay_end(h, "child"), 0);
	ck_assert_int_eq(errrelay_event(h, "f1", "{\"event_id\":"
	    "\"ABCDEF01-2345-6789-abcd-ef0123456789\",\"message\":\"boom\"}",
	    eid), 0);
	/* Without ack, the id returned is the one sent, normalised. */
	ck_assert_str_eq(eid, "abcdef0123456789abcdef0123456789");
	ck_assert_int_eq(errrelay_message(h, NULL, "warning", "hi", eid), 0);
	ck_assert(is_hex32(eid));
	ck_assert_int_eq(eid[12], '4');		/* a version 4 uuid */
	ck_assert_int_eq(errrelay_event(h, NULL, "{}", NULL), 0);
	errrelay_close(h);
	fake_join(&F);

	ck_assert_int_eq(F.nlines, 13);
	line_is(0, 0, "{\"op\":\"hello\",\"app\":\"shop\",\"ack\":false," SDK
	    "}");
	line_is(1, 0, "{\"op\":\"set\",\"fiber\":\"f1\",\"tags\":{\"color\":"
	    "\"blue\",\"gone\":null},\"extra\":{\"n\": 1},\"user\":{\"id\":"
	    "\"42\"},\"contexts\":null,\"fingerprint\":[\"a\",\"b\"],"
	    "\"level\":\"warning\",\"transaction\":\"GET /cart\"}");
	line_is(2, 0, "{\"op\":\"set\",\"tags\":{\"k\":\"v\"}}");
	line_is(3, 0, "{\"op\":\"set\",\"fiber\":\"f1\",\"level\":null,  "
	    "\"tags\":{\"a\":\"1\"}}");
	line_is(4, 0, "{\"op\":\"set\",\"fiber\":\"f1\"}");
	line_is(5, 0, "{\"op\":\"crumb\",\"fiber\":\"f1\",\"crumb\":"
	    "{\"message\":\"SELECT 1\",\"category\":\"db\",\"level\":"
	    "\"info\"}}");
	line_is(6, 0, "{\"op\":\"crumb\",\"crumb\":{\"message\":\"only\"}}");
	line_is(7, 0, "{\"op\":\"crumb\",\"fiber\":\"f1\",\"crumb\":"
	    "{\"type\":\"http\",\"data\":{\"status\":500}}}");
	line_is(8, 0, "{\"op\":\"fork\",\"fiber\":\"child\",\"from\":\"f1\"}");
	line_is(9, 0, "{\"op\":\"end\",\"fiber\":\"child\"}");
	line_is(10, 0, "{\"op\":\"event\",\"fiber\":\"f1\",\"event\":"
	    "{\"event_id\":\"ABCDEF01-2345-6789-abcd-ef0123456789\","
	    "\"message\":\"boom\"}}");
	snprintf(want, sizeof want, "{\"op\":\"event\",\"event\":{\"event_id\":"
	    "\"%s\",\"message\":\"hi\",\"level\":\"warning\"}}", eid);
	line_is(11, 0, want);
	ck_assert(strncmp(F.lines[12], "{\"op\":\"event\",\"event\":"
	    "{\"event_id\":\"", 35) == 0);
	ck_assert_int_eq(strlen(F.lines[12]), 70);
	memcpy(want, F.lines[12] + 35, 32);
	want[32] = '\0';
	ck_assert(is_hex32(want));
	ck_assert_str_eq(F.lines[12] + 67, "\"}}");
}
END_TEST

START_TEST(test_lines_no_app_and_int_fiber)
{
	struct errrelay	*h;
	char		 fb[ERRRELAY_FIBER_U64_SIZE];

	fake_run(&F, FM_SILENT, 1, 0);
	h = errrelay_open(F.path, NULL, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(errrelay_fiber_u64(fb, 18446744073709551615ULL),
	    "18446744073709551615");
	ck_assert_int_eq(errrelay_end(h, fb), 0);
	ck_assert_int_eq(errrelay_end(h, errrelay_fiber_u64(fb, 0)), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 3);
	line_is(0, 0, "{\"op\":\"hello\",\"ack\":false," SDK "}");
	line_is(1, 0, "{\"op\":\"end\",\"fiber\":\"18446744073709551615\"}");
	line_is(2, 0, "{\"op\":\"end\",\"fiber\":\"0\"}");
}
END_TEST

START_TEST(test_lines_escaping)
{
	struct errrelay		*h;
	struct errrelay_tag	 tags[] = {
		{ "k\"q", "line1\nline2\ttab \\ back\r\b\f" },
		{ "ctl", "\x01\x1f\x7f" },
		{ "utf8", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\x9b" },
		{ "bad", "a\xff" "b\xc3(c\xed\xa0\x80" "d\xe6\x97" }
	};
	struct errrelay_scope	 s;

	fake_run(&F, FM_SILENT, 1, 0);
	h = errrelay_open(F.path, "caf\xc3\xa9 \"x\"", 0);
	ck_assert_ptr_nonnull(h);
	memset(&s, 0, sizeof s);
	s.tags = tags;
	s.ntags = 4;
	ck_assert_int_eq(errrelay_set(h, "f\"\n\xc3\xa9", &s), 0);
	ck_assert_int_eq(errrelay_message(h, NULL, NULL,
	    "He said \"no\"\n\tat main.c:1 \xe2\x80\xa8 \\", NULL), 0);
	/* Raw JSON: the newline between tokens becomes a space, the
	 * escaped one inside the string stays as written. */
	ck_assert_int_eq(errrelay_crumb_json(h, NULL,
	    "{\"message\":\"a\\nb \\u00e9\",\r\n\"level\":\"info\"}"), 0);
	errrelay_close(h);
	fake_join(&F);

	ck_assert_int_eq(F.nlines, 4);
	line_is(0, 0, "{\"op\":\"hello\",\"app\":\"caf\xc3\xa9 \\\"x\\\"\","
	    "\"ack\":false," SDK "}");
	line_is(1, 0, "{\"op\":\"set\",\"fiber\":\"f\\\"\\n\xc3\xa9\","
	    "\"tags\":{"
	    "\"k\\\"q\":\"line1\\nline2\\ttab \\\\ back\\r\\b\\f\","
	    "\"ctl\":\"\\u0001\\u001f\x7f\","
	    "\"utf8\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
	    "\xf0\x9f\x90\x9b\","
	    "\"bad\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd(c\xef\xbf\xbd\xef\xbf\xbd"
	    "\xef\xbf\xbd" "d\xef\xbf\xbd\xef\xbf\xbd\"}}");
	ck_assert(strstr(F.lines[2], ",\"message\":\"He said \\\"no\\\"\\n\\t"
	    "at main.c:1 \xe2\x80\xa8 \\\\\"}}") != NULL);
	line_is(3, 0, "{\"op\":\"crumb\",\"crumb\":{\"message\":\"a\\nb "
	    "\\u00e9\",  \"level\":\"info\"}}");
	/* Each line the library wrote is valid JSON. */
	{
		int	 i;
		cJSON	*j;

		for (i = 0; i < F.nlines; i++) {
			j = cJSON_Parse(F.lines[i]);
			ck_assert_msg(cJSON_IsObject(j), "not JSON: %s",
			    F.lines[i]);
			cJSON_Delete(j);
		}
	}
}
END_TEST

START_TEST(test_bad_arguments_send_nothing)
{
	struct errrelay		*h;
	struct errrelay_tag	 nokey[] = { { NULL, "v" } };
	struct errrelay_scope	 s;
	char			 fiber[ERRRELAY_FIBER_MAX + 2];
	char			 eid[ERRRELAY_EVENT_ID_SIZE];

	fake_run(&F, FM_SILENT, 1, 0);
	h = errrelay_open(F.path, "shop", 0);
	ck_assert_ptr_nonnull(h);
	memset(fiber, 'x', sizeof fiber);
	fiber[ERRRELAY_FIBER_MAX + 1] = '\0';
	ck_assert_int_eq(errrelay_end(h, fiber), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_ARG);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "129"));
	fiber[ERRRELAY_FIBER_MAX] = '\0';	/* 128 bytes: fine */
	ck_assert_int_eq(errrelay_end(h, ""), -1);
	ck_assert_int_eq(errrelay_end(h, NULL), -1);
	ck_assert_int_eq(errrelay_end(h, "\xff"), -1);
	ck_assert_int_eq(errrelay_fork(h, "a", NULL), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_ARG);

	memset(&s, 0, sizeof s);
	s.extra = "[1]";
	ck_assert_int_eq(errrelay_set(h, "f", &s), -1);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "extra"));
	s.extra = NULL;
	s.user = "{\"id\":";
	ck_assert_int_eq(errrelay_set(h, "f", &s), -1);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "user"));
	s.user = NULL;
	s.fingerprint = "{}";
	ck_assert_int_eq(errrelay_set(h, "f", &s), -1);
	s.fingerprint = NULL;
	s.tags = nokey;
	s.ntags = 1;
	ck_assert_int_eq(errrelay_set(h, "f", &s), -1);
	ck_assert_int_eq(errrelay_set(h, "f", NULL), -1);
	ck_assert_int_eq(errrelay_set_json(h, "f", "{\"fiber\":\"g\"}"), -1);
	ck_assert_int_eq(errrelay_set_json(h, "f", "{\"op\":\"end\"}"), -1);
	ck_assert_int_eq(errrelay_set_json(h, "f", "{} {}"), -1);
	ck_assert_int_eq(errrelay_crumb_json(h, NULL, "\"text\""), -1);
	ck_assert_int_eq(errrelay_event(h, NULL, "not json", eid), -1);
	ck_assert_str_eq(eid, "");
	ck_assert_int_eq(errrelay_event(h, NULL, "{\"a\":\"\xc3\"}", eid), -1);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "UTF-8"));
	ck_assert_int_eq(errrelay_event(h, NULL, "{\"event_id\":\"xyz\"}",
	    eid), -1);
	ck_assert_int_eq(errrelay_event(h, NULL, "{\"event_id\":7}", eid), -1);
	ck_assert_int_eq(errrelay_message(h, NULL, "info", NULL, eid), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_ARG);
	ck_assert_ptr_null(errrelay_errcode(h));

	/* A good call clears the error. */
	ck_assert_int_eq(errrelay_end(h, fiber), 0);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_NONE);
	ck_assert_str_eq(errrelay_error(h), "");
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 2);
	ck_assert(strncmp(F.lines[0], "{\"op\":\"hello\"", 13) == 0);
	ck_assert(strncmp(F.lines[1], "{\"op\":\"end\",\"fiber\":\"xxx", 24)
	    == 0);
	ck_assert_int_eq(strlen(F.lines[1]), 24 + ERRRELAY_FIBER_MAX - 3 + 2);
}
END_TEST

START_TEST(test_open_arguments)
{
	char		 path[200];
	struct errrelay	*h;

	memset(path, 'p', sizeof path);
	path[0] = '/';
	path[sizeof path - 1] = '\0';
	errno = 0;
	ck_assert_ptr_null(errrelay_open(path, "a", 0));
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_ptr_null(errrelay_open(F.path, "\xc3", 0));
	ck_assert_int_eq(errno, EINVAL);
	/* Lazy: no connection until asked for. */
	h = errrelay_open(F.path, "a", ERRRELAY_LAZY);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(errrelay_connected(h), 0);
	errrelay_close(h);
	errrelay_close(NULL);
}
END_TEST

/* ------------------------------------------------------------ acks */

START_TEST(test_ack_ok)
{
	struct errrelay	*h;
	char		 eid[ERRRELAY_EVENT_ID_SIZE];

	fake_run(&F, FM_ACK, 1, 0);
	h = errrelay_open(F.path, "shop", ERRRELAY_ACK);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(errrelay_connected(h), 1);
	ck_assert_int_eq(errrelay_set_tag(h, "f1", "a", "b"), 0);
	ck_assert_int_eq(errrelay_message(h, "f1", "error", "boom", eid), 0);
	/* The id the daemon acknowledged, not the one the library made. */
	ck_assert_str_eq(eid, SRV_EVENT_ID);
	ck_assert_int_eq(errrelay_end(h, "f1"), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 4);
	line_is(0, 0, "{\"op\":\"hello\",\"id\":1,\"app\":\"shop\",\"ack\":true,"
	    SDK "}");
	line_is(1, 0, "{\"op\":\"set\",\"id\":2,\"fiber\":\"f1\",\"tags\":"
	    "{\"a\":\"b\"}}");
	ck_assert(strncmp(F.lines[2], "{\"op\":\"event\",\"id\":3,\"fiber\":"
	    "\"f1\",\"event\":{\"event_id\":\"", 55) == 0);
	ck_assert_str_eq(F.lines[2] + 55 + 32,
	    "\",\"message\":\"boom\",\"level\":\"error\"}}");
	line_is(3, 0, "{\"op\":\"end\",\"id\":4,\"fiber\":\"f1\"}");
}
END_TEST

START_TEST(test_ack_refused)
{
	struct errrelay	*h;
	char		 eid[ERRRELAY_EVENT_ID_SIZE];

	fake_run(&F, FM_REFUSE_EVENT, 1, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(errrelay_message(h, NULL, NULL, "boom", eid), -1);
	ck_assert_str_eq(eid, "");
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_REFUSED);
	ck_assert_str_eq(errrelay_errcode(h), "spool_full");
	ck_assert_str_eq(errrelay_error(h),
	    "errrelayd refused the event: spool_full: spool is \"full\"");
	/* A refusal leaves the connection usable. */
	ck_assert_int_eq(errrelay_connected(h), 1);
	ck_assert_int_eq(errrelay_end(h, "f"), 0);
	ck_assert_ptr_null(errrelay_errcode(h));
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 3);
	ck_assert_int_eq(F.conn_of[2], 0);
}
END_TEST

START_TEST(test_ack_error_without_id)
{
	struct errrelay	*h;

	fake_run(&F, FM_NOID_ERROR, 1, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_int_eq(errrelay_event(h, "f", "{}", NULL), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_REFUSED);
	ck_assert_str_eq(errrelay_errcode(h), "bad_json");
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "bad_json"));
	errrelay_close(h);
}
END_TEST

START_TEST(test_ack_stale_replies_skipped)
{
	struct errrelay	*h;

	fake_run(&F, FM_STALE_FIRST, 1, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_int_eq(errrelay_connected(h), 1);
	ck_assert_int_eq(errrelay_set_tag(h, "f", "a", "1"), 0);
	ck_assert_int_eq(errrelay_end(h, "f"), 0);
	errrelay_close(h);
}
END_TEST

START_TEST(test_ack_garbage)
{
	struct errrelay	*h;

	fake_run(&F, FM_GARBAGE, 1, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_int_eq(errrelay_event(h, NULL, "{}", NULL), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_PROTO);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "this is not JSON"));
	ck_assert_int_eq(errrelay_connected(h), 0);
	errrelay_close(h);
}
END_TEST

START_TEST(test_ack_timeout)
{
	struct errrelay	*h;
	struct timespec	 t0, t1;
	char		 eid[ERRRELAY_EVENT_ID_SIZE];
	long		 ms;

	fake_run(&F, FM_IGNORE_EVENT, 1, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_int_eq(errrelay_connected(h), 1);
	errrelay_set_timeout(h, 300);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(errrelay_message(h, NULL, NULL, "slow", eid), -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) /
	    1000000;
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_TIMEOUT);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "within 300 ms"));
	ck_assert_str_eq(eid, "");
	/* It gave up after the timeout, not before and not much after. */
	ck_assert_int_ge(ms, 295);
	ck_assert_int_lt(ms, 3000);
	/* A timed-out connection is dropped (a late reply would confuse). */
	ck_assert_int_eq(errrelay_connected(h), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 2);
}
END_TEST

/* ------------------------------------------------------------ reconnect */

START_TEST(test_reconnect_after_close)
{
	struct errrelay	*h;

	fake_run(&F, FM_CLOSE_AFTER, 2, 1);
	h = errrelay_open(F.path, "shop", 0);
	ck_assert_int_eq(errrelay_set_tag(h, "f", "a", "1"), 0);
	fake_wait_dropped(&F, 1);
	/* The daemon went away; the next call reconnects, says hello
	 * again and sends its line on the new connection. */
	ck_assert_int_eq(errrelay_set_tag(h, "f", "b", "2"), 0);
	ck_assert_int_eq(errrelay_connected(h), 1);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 4);
	line_is(0, 0, "{\"op\":\"hello\",\"app\":\"shop\",\"ack\":false," SDK
	    "}");
	line_is(1, 0, "{\"op\":\"set\",\"fiber\":\"f\",\"tags\":{\"a\":\"1\"}}");
	line_is(2, 1, "{\"op\":\"hello\",\"app\":\"shop\",\"ack\":false," SDK
	    "}");
	line_is(3, 1, "{\"op\":\"set\",\"fiber\":\"f\",\"tags\":{\"b\":\"2\"}}");
}
END_TEST

START_TEST(test_reconnect_epipe_no_sigpipe)
{
	struct errrelay	*h;

	/* Default disposition: a write without MSG_NOSIGNAL would kill. */
	signal(SIGPIPE, SIG_DFL);
	fake_run(&F, FM_SHUT_AFTER, 2, 0);
	h = errrelay_open(F.path, NULL, 0);
	fake_wait_dropped(&F, 1);
	ck_assert_int_eq(errrelay_end(h, "f"), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 3);
	line_is(1, 1, "{\"op\":\"hello\",\"ack\":false," SDK "}");
	line_is(2, 1, "{\"op\":\"end\",\"fiber\":\"f\"}");
}
END_TEST

START_TEST(test_reconnect_resends_event)
{
	struct errrelay	*h;
	char		 eid[ERRRELAY_EVENT_ID_SIZE];

	fake_run(&F, FM_ACK_CLOSE_EVENT, 2, 0);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_int_eq(errrelay_message(h, "f", NULL, "again", eid), 0);
	ck_assert_str_eq(eid, SRV_EVENT_ID);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 4);
	ck_assert_int_eq(F.conn_of[1], 0);
	ck_assert(strncmp(F.lines[2], "{\"op\":\"hello\",\"id\":3,", 21) == 0);
	/* The same line, event_id included, so the daemon stores it once. */
	line_is(3, 1, F.lines[1]);
}
END_TEST

START_TEST(test_reconnect_only_once)
{
	struct errrelay	*h;

	fake_run(&F, FM_CLOSE_AFTER, 1, 0);
	h = errrelay_open(F.path, NULL, 0);
	fake_wait_dropped(&F, 1);
	fake_join(&F);
	close(F.lfd);
	F.lfd = -1;
	unlink(F.path);
	ck_assert_int_eq(errrelay_end(h, "f"), -1);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_CONNECT);
	ck_assert_int_eq(errrelay_errno(h), ENOENT);
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), "cannot connect to "));
	ck_assert_ptr_nonnull(strstr(errrelay_error(h), F.path));
	ck_assert_int_eq(errrelay_connected(h), 0);
	errrelay_close(h);
}
END_TEST

START_TEST(test_open_before_daemon)
{
	struct errrelay	*h;
	char		 want[256];

	close(F.lfd);
	F.lfd = -1;
	unlink(F.path);
	h = errrelay_open(F.path, NULL, ERRRELAY_ACK);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(errrelay_connected(h), 0);
	ck_assert_int_eq(errrelay_errkind(h), ERRRELAY_E_CONNECT);
	snprintf(want, sizeof want, "cannot connect to %s: %s", F.path,
	    strerror(ENOENT));
	ck_assert_str_eq(errrelay_error(h), want);
	ck_assert_int_eq(errrelay_connect(h), -1);
	/* The daemon comes up: the next call connects. */
	fake_listen(&F);
	fake_run(&F, FM_ACK, 1, 0);
	ck_assert_int_eq(errrelay_end(h, "f"), 0);
	ck_assert_int_eq(errrelay_connected(h), 1);
	ck_assert_int_eq(errrelay_connect(h), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 2);
}
END_TEST

START_TEST(test_fork_child_reconnects)
{
	struct errrelay	*h;
	pid_t		 pid;
	int		 status;

	fake_run(&F, FM_SILENT, 2, 0);
	h = errrelay_open(F.path, NULL, 0);
	ck_assert_int_eq(errrelay_connected(h), 1);
	if ((pid = fork()) == 0)
		_exit(errrelay_end(h, "child") == 0 ? 0 : 1);
	ck_assert_int_ne(pid, -1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(errrelay_end(h, "parent"), 0);
	errrelay_close(h);
	fake_join(&F);
	ck_assert_int_eq(F.nlines, 4);
	line_is(1, 0, "{\"op\":\"end\",\"fiber\":\"parent\"}");
	line_is(3, 1, "{\"op\":\"end\",\"fiber\":\"child\"}");
	ck_assert_int_eq(F.peer[0], getpid());
	ck_assert_int_eq(F.peer[1], pid);
}
END_TEST

static Suite *
client_suite(void)
{
	Suite	*s = suite_create("client");
	TCase	*tc;

	tc = tcase_create("lines");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_lines_fire_and_forget);
	tcase_add_test(tc, test_lines_no_app_and_int_fiber);
	tcase_add_test(tc, test_lines_escaping);
	tcase_add_test(tc, test_bad_arguments_send_nothing);
	tcase_add_test(tc, test_open_arguments);
	suite_add_tcase(s, tc);

	tc = tcase_create("acks");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ack_ok);
	tcase_add_test(tc, test_ack_refused);
	tcase_add_test(tc, test_ack_error_without_id);
	tcase_add_test(tc, test_ack_stale_replies_skipped);
	tcase_add_test(tc, test_ack_garbage);
	tcase_add_test(tc, test_ack_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("reconnect");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reconnect_after_close);
	tcase_add_test(tc, test_reconnect_epipe_no_sigpipe);
	tcase_add_test(tc, test_reconnect_resends_event);
	tcase_add_test(tc, test_reconnect_only_once);
	tcase_add_test(tc, test_open_before_daemon);
	tcase_add_test(tc, test_fork_child_reconnects);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(client_suite());
}
