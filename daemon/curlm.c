/*
 * curlm.c -- libcurl's multi interface driven by the libevent loop.
 *
 * The pattern of curl's docs/examples/hiperfifo.c: CURLMOPT_SOCKETFUNCTION
 * keeps one struct event per curl socket (stored with curl_multi_assign),
 * CURLMOPT_TIMERFUNCTION only arms or deletes one timer (it never calls
 * libcurl itself), and both event callbacks call curl_multi_socket_action
 * and then drain curl_multi_info_read, handing each finished transfer to
 * its owner's callback.  Nothing here blocks.
 */
#include "config.h"

#include <stdlib.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

struct curlm_sock {
	struct event	*ev;
};

struct curlm_xfer {
	curlm_done_cb	 cb;
	void		*arg;
};

static CURLM		*multi;
static struct event	*curlm_timer;
static int		 curlm_running;

/* Hand every finished transfer to its owner. */
static void
curlm_check_info(void)
{
	CURLMsg			*m;
	CURL			*easy;
	CURLcode		 res;
	struct curlm_xfer	*x;
	long			 status = 0;
	int			 left;
	char			*priv;

	while ((m = curl_multi_info_read(multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		easy = m->easy_handle;
		res = m->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(multi, easy);
		x = (struct curlm_xfer *)priv;
		x->cb(easy, res, status, x->arg);
		free(x);
	}
}

static void
curlm_event_cb(evutil_socket_t fd, short kind, void *arg)
{
	int	action = 0;

	(void)arg;
	if (kind & EV_READ)
		action |= CURL_CSELECT_IN;
	if (kind & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(multi, fd, action, &curlm_running);
	/*
	 * Unlike hiperfifo, never delete the timer here when nothing runs:
	 * a done callback may just have added a transfer and armed it.
	 * libcurl deletes it itself (timeout -1) when it is not needed.
	 */
	curlm_check_info();
}

static void
curlm_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
	(void)fd; (void)kind; (void)arg;
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &curlm_running);
	curlm_check_info();
}

/* CURLMOPT_TIMERFUNCTION: arm or delete the timer; never call libcurl. */
static int
curlm_timer_fn(CURLM *m, long timeout_ms, void *userp)
{
	struct timeval	tv;

	(void)m; (void)userp;
	if (timeout_ms < 0) {
		evtimer_del(curlm_timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(curlm_timer, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per socket. */
static int
curlm_socket_fn(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
	struct curlm_sock	*cs = sockp;
	short			 kind;

	(void)e; (void)userp;
	if (what == CURL_POLL_REMOVE) {
		if (cs != NULL) {
			event_free(cs->ev);
			free(cs);
			curl_multi_assign(multi, s, NULL);
		}
		return 0;
	}
	if (cs == NULL) {
		cs = xcalloc(1, sizeof *cs);
		curl_multi_assign(multi, s, cs);
	} else
		event_free(cs->ev);
	kind = EV_PERSIST;
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	cs->ev = event_new(base, s, kind, curlm_event_cb, NULL);
	event_add(cs->ev, NULL);
	return 0;
}

void
curlm_init(void)
{
	if ((multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	curlm_timer = evtimer_new(base, curlm_timer_cb, NULL);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, curlm_socket_fn);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, curlm_timer_fn);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
}

/* Start a transfer; cb(arg) runs once it is done, whatever the outcome. */
void
curlm_add(CURL *easy, curlm_done_cb cb, void *arg)
{
	struct curlm_xfer	*x;

	x = xcalloc(1, sizeof *x);
	x->cb = cb;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		fatalx("curl_multi_add_handle failed");
}

/* Abandon a transfer that has not finished (shutdown). */
void
curlm_cancel(CURL *easy)
{
	char	*priv = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
	curl_multi_remove_handle(multi, easy);
	free(priv);
}

void
curlm_free(void)
{
	if (multi != NULL)
		curl_multi_cleanup(multi);
	multi = NULL;
	if (curlm_timer != NULL)
		event_free(curlm_timer);
	curlm_timer = NULL;
}
