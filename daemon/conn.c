/*
 * conn.c -- one data connection: bytes in, lines out to ingest, replies
 * back in message order.
 *
 * The framing is done by proto/frame.c on the bytes libevent read, so the
 * line limit holds before any newline arrives.  Each read callback drains
 * the whole input buffer (bounded by one libevent read), so no high
 * watermark is needed on input.  Replies are queued in slots: an event's
 * slot fills only after its commit, and a later reply waits behind it.
 * A client that does not read its replies is paused once its output
 * passes CONN_OUT_MAX, so memory stays bounded.
 *
 * A connection is freed only when the last pending commit has released it
 * (refs): a closed connection's events are still committed, their replies
 * dropped.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

#define CONN_OUT_MAX	(4 * 1024 * 1024)

struct conns	conns = TAILQ_HEAD_INITIALIZER(conns);
size_t		nconns;
static uint64_t	conn_next_id;
static int	conn_global_pause;

static void	conn_read_cb(struct bufferevent *, void *);
static void	conn_write_cb(struct bufferevent *, void *);
static void	conn_event_cb(struct bufferevent *, short, void *);

static void
conn_update_read(struct conn *c)
{
	if (c->bev == NULL || c->eof)
		return;
	if (conn_global_pause || c->paused || shutting_down)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

void
conn_accept(int fd)
{
	struct conn	*c;
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;
	struct timeval	 idle;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->id = ++conn_next_id;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->app = xstrdup("default");
	c->refs = 1;
	frame_init(&c->frame, cfg->max_line_bytes);
	TAILQ_INIT(&c->replies);
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new failed");
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	idle.tv_sec = (time_t)cfg->idle_timeout;
	idle.tv_usec = 0;
	bufferevent_set_timeouts(c->bev, &idle, NULL);
	TAILQ_INSERT_TAIL(&conns, c, entry);
	nconns++;
	stats.connections_total++;
	fibers_attach(fibers, c->pid);
	conn_update_read(c);
	log_debug("conn %llu: pid %ld uid %ld connected",
	    (unsigned long long)c->id, (long)c->pid, (long)c->uid);
}

/* Process every complete line buffered in the frame. */
static void
conn_process(struct conn *c)
{
	const char	*line;
	size_t		 len;
	uint64_t	 lineno;
	enum frame_kind	 k;

	while (c->bev != NULL &&
	    (k = frame_next(&c->frame, &line, &len, &lineno)) != FRAME_NONE) {
		if (k == FRAME_TOO_LONG)
			ingest_line_too_long(c, lineno);
		else
			ingest_line(c, line, len, lineno);
	}
}

/* Move what libevent read into the frame and process it. */
static void
conn_read_input(struct conn *c)
{
	struct evbuffer		*in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec	 v[8];
	int			 i, n;
	size_t			 total;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		total = 0;
		for (i = 0; i < n; i++) {
			frame_push(&c->frame, v[i].iov_base, v[i].iov_len);
			total += v[i].iov_len;
		}
		evbuffer_drain(in, total);
		conn_process(c);
		if (c->bev == NULL)
			return;
	}
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;

	(void)bev;
	c->refs++;
	conn_read_input(c);
	conn_unref(c);
}

/* Anything left to write, or a reply still waiting for its commit? */
static int
conn_busy(struct conn *c)
{
	return !TAILQ_EMPTY(&c->replies) ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0;
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;

	(void)bev;
	if (c->paused) {
		c->paused = 0;
		conn_update_read(c);
	}
	if (c->eof && !conn_busy(c))
		conn_close(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn	*c = arg;
	const char	*line;
	size_t		 len;
	uint64_t	 lineno;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		/* The last line may come without a newline. */
		c->refs++;
		conn_read_input(c);
		if (c->bev != NULL && frame_finish(&c->frame, &line, &len,
		    &lineno) == FRAME_LINE)
			ingest_line(c, line, len, lineno);
		if (c->bev != NULL) {
			c->eof = 1;
			bufferevent_disable(c->bev, EV_READ);
			if (!conn_busy(c))
				conn_close(c);
		}
		conn_unref(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("conn %llu: idle timeout", (unsigned long long)c->id);
	else if (what & BEV_EVENT_ERROR)
		log_debug("conn %llu: %s", (unsigned long long)c->id,
		    strerror(EVUTIL_SOCKET_ERROR()));
	conn_close(c);
}

/* Write out the ready replies at the head of the queue. */
static void
conn_reply_flush(struct conn *c)
{
	struct reply	*r;
	struct evbuffer	*out;

	while ((r = TAILQ_FIRST(&c->replies)) != NULL && r->ready) {
		TAILQ_REMOVE(&c->replies, r, entry);
		if (c->bev != NULL && r->text != NULL)
			bufferevent_write(c->bev, r->text, r->len);
		free(r->text);
		free(r);
	}
	if (c->bev == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	if (!c->paused && evbuffer_get_length(out) > CONN_OUT_MAX) {
		c->paused = 1;
		conn_update_read(c);
	}
	if (c->eof && !conn_busy(c))
		conn_close(c);
}

struct reply *
conn_reply_slot(struct conn *c)
{
	struct reply	*r;

	r = xcalloc(1, sizeof *r);
	TAILQ_INSERT_TAIL(&c->replies, r, entry);
	return r;
}

void
conn_reply_fill(struct conn *c, struct reply *r, char *text, size_t len)
{
	r->text = text;
	r->len = len;
	r->ready = 1;
	if (r == TAILQ_FIRST(&c->replies))
		conn_reply_flush(c);
}

/* Send a reply now, or queue it behind replies still waiting. */
void
conn_reply_now(struct conn *c, char *text, size_t len)
{
	if (TAILQ_EMPTY(&c->replies) && c->bev != NULL) {
		bufferevent_write(c->bev, text, len);
		free(text);
		if (!c->paused && evbuffer_get_length(
		    bufferevent_get_output(c->bev)) > CONN_OUT_MAX) {
			c->paused = 1;
			conn_update_read(c);
		}
		return;
	}
	conn_reply_fill(c, conn_reply_slot(c), text, len);
}

void
conn_close(struct conn *c)
{
	struct reply	*r;

	if (c->bev == NULL)
		return;
	log_debug("conn %llu: closed", (unsigned long long)c->id);
	if (shutting_down) {
		/* Last chance for the acks already made (no waiting). */
		struct evbuffer	*out = bufferevent_get_output(c->bev);
		size_t		 len = evbuffer_get_length(out);

		if (len > 0)
			(void)!send(bufferevent_getfd(c->bev),
			    evbuffer_pullup(out, -1), len,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	/* Replies still waiting for a commit are dropped when it is done. */
	while ((r = TAILQ_FIRST(&c->replies)) != NULL && r->ready) {
		TAILQ_REMOVE(&c->replies, r, entry);
		free(r->text);
		free(r);
	}
	TAILQ_REMOVE(&conns, c, entry);
	nconns--;
	fibers_detach(fibers, c->pid, now_s());
	listen_conn_closed();
	conn_unref(c);
}

void
conn_unref(struct conn *c)
{
	struct reply	*r;

	if (--c->refs > 0)
		return;
	while ((r = TAILQ_FIRST(&c->replies)) != NULL) {
		TAILQ_REMOVE(&c->replies, r, entry);
		free(r->text);
		free(r);
	}
	frame_free(&c->frame);
	free(c->app);
	free(c);
}

/* Stop (pause) or restart reading on every connection: spool backpressure. */
void
conn_pause_all(int pause)
{
	struct conn	*c;

	if (conn_global_pause == pause)
		return;
	conn_global_pause = pause;
	TAILQ_FOREACH(c, &conns, entry)
		conn_update_read(c);
}

/*
 * Shutdown: take in what every client has already written (what the kernel
 * holds for us), process it, and stop reading.
 */
void
conn_drain_all(void)
{
	struct conn	*c, *next;
	char		 buf[65536];
	ssize_t		 n;
	int		 fd;

	TAILQ_FOREACH_SAFE(c, &conns, entry, next) {
		if (c->bev == NULL || c->eof)
			continue;
		c->refs++;
		conn_read_input(c);
		/*
		 * Read the socket directly: the bufferevent's input is frozen
		 * outside its own callbacks.
		 */
		fd = bufferevent_getfd(c->bev);
		while (c->bev != NULL &&
		    (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
			frame_push(&c->frame, buf, (size_t)n);
			conn_process(c);
		}
		if (c->bev != NULL)
			bufferevent_disable(c->bev, EV_READ);
		conn_unref(c);
	}
}

void
conn_close_all(void)
{
	struct conn	*c;

	while ((c = TAILQ_FIRST(&conns)) != NULL)
		conn_close(c);
}
