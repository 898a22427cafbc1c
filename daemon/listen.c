/*
 * listen.c -- the data socket: create it (or take it from systemd), accept
 * connections, respect max_connections, and pause accepting for a second
 * when file descriptors run out instead of spinning.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

static struct evconnlistener	*listener;
static struct event		*ev_resume;
static char			*listen_path;	/* set if we created it */
static int			 listen_paused;

/*
 * Bind a Unix stream socket at path, refusing to steal it from a live
 * daemon: a stale socket file is removed only when nothing answers on it.
 * Returns the listening fd, or -1 with *cause.
 */
int
listen_unix(const char *path, mode_t mode, int has_gid, gid_t gid,
    char **cause)
{
	struct sockaddr_un	 sun;
	int			 fd, probe;
	mode_t			 old;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause, "%s: socket path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);

	if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0) {
		close(probe);
		xasprintf(cause, "%s: another daemon is listening on it", path);
		return -1;
	}
	close(probe);
	if (unlink(path) == -1 && errno != ENOENT) {
		xasprintf(cause, "%s: unlink: %s", path, strerror(errno));
		return -1;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		xasprintf(cause, "%s: bind: %s", path, strerror(errno));
		goto fail;
	}
	umask(old);
	if (has_gid && chown(path, (uid_t)-1, gid) == -1) {
		xasprintf(cause, "%s: chown: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, mode) == -1) {
		xasprintf(cause, "%s: chmod: %s", path, strerror(errno));
		goto fail;
	}
	if (listen(fd, SOMAXCONN) == -1) {
		xasprintf(cause, "%s: listen: %s", path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(path);
	return -1;
}

static void
listen_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void)l; (void)sa; (void)salen; (void)arg;
	if (shutting_down || nconns >= cfg->max_connections) {
		close(fd);
		return;
	}
	conn_accept(fd);
	if (nconns >= cfg->max_connections && !listen_paused) {
		log_warnx("max_connections (%zu) reached: not accepting",
		    cfg->max_connections);
		evconnlistener_disable(listener);
		listen_paused = 1;
	}
}

static void
listen_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	if (listener != NULL && nconns < cfg->max_connections) {
		evconnlistener_enable(listener);
		listen_paused = 0;
	}
}

/* Out of descriptors (or another accept error): pause for a second. */
static void
listen_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval	one = { 1, 0 };
	int		err = EVUTIL_SOCKET_ERROR();

	(void)arg;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warnx("accept: %s: pausing for 1s", strerror(err));
		evconnlistener_disable(l);
		listen_paused = 1;
		evtimer_add(ev_resume, &one);
		return;
	}
	log_warnx("accept: %s", strerror(err));
}

/* A connection closed: accept again if we had stopped at the limit. */
void
listen_conn_closed(void)
{
	if (listener != NULL && listen_paused &&
	    nconns < cfg->max_connections && !evtimer_pending(ev_resume, NULL))
		listen_resume_cb(-1, 0, NULL);
}

int
listen_init(char **cause)
{
	int	fd = -1;

#ifdef HAVE_SYSTEMD
	int	n;

	if ((n = sd_listen_fds(1)) > 0) {
		fd = SD_LISTEN_FDS_START;
		if (n > 1)
			log_warnx("systemd passed %d sockets: using the first",
			    n);
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			xasprintf(cause, "systemd socket is not a listening "
			    "unix stream socket");
			return -1;
		}
		evutil_make_socket_nonblocking(fd);
		log_info("using the socket passed by systemd");
	}
#endif
	if (fd == -1) {
		fd = listen_unix(cfg->socket, cfg->socket_mode,
		    cfg->has_socket_group, cfg->socket_group, cause);
		if (fd == -1)
			return -1;
		listen_path = xstrdup(cfg->socket);
	}
	listener = evconnlistener_new(base, listen_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (listener == NULL) {
		xasprintf(cause, "evconnlistener_new failed");
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(listener, listen_error_cb);
	ev_resume = evtimer_new(base, listen_resume_cb, NULL);
	return 0;
}

/* Stop accepting: close the socket and remove it if we made it. */
void
listen_close(void)
{
	if (listener != NULL) {
		evconnlistener_free(listener);
		listener = NULL;
	}
	if (ev_resume != NULL) {
		event_free(ev_resume);
		ev_resume = NULL;
	}
	if (listen_path != NULL) {
		unlink(listen_path);
		free(listen_path);
		listen_path = NULL;
	}
}
