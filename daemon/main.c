/*
 * main.c -- errrelayd: start-up, signals, shutdown.
 *
 * The daemon runs in the foreground (systemd or any supervisor keeps it),
 * logs to stderr, and owns four things for its whole life: the config, the
 * spool, the fiber table and the event base.  SIGTERM stops accepting,
 * commits everything received, makes one flush bounded by
 * shutdown_timeout and exits 0.  SIGHUP reloads the config, keeping the old
 * one if the new one is invalid.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/log.h"
#include "common/xmalloc.h"
#include "daemon/errrelayd.h"

struct event_base	*base;
struct config		*cfg;
struct spool		*spool;
struct fibers		*fibers;
struct merge_global	 merge_global;
int			 shutting_down;
double			 start_time;

static struct event	*ev_term, *ev_int, *ev_hup, *ev_sweep, *ev_deadline;
static char		 hostname[256];

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: errrelayd [-dht] [-c file]\n");
	exit(1);
}

double
now_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
main_set_globals(void)
{
	struct fibers_limits	lim;

	merge_global.environment = cfg->environment;
	merge_global.release = cfg->release;
	merge_global.server_name = cfg->server_name != NULL ?
	    cfg->server_name : hostname;
	merge_global.tags = cfg->tags;

	lim.max_fibers = cfg->max_fibers;
	lim.ttl = cfg->fiber_ttl;
	lim.grace = cfg->scope_grace;
	if (fibers == NULL)
		fibers = fibers_new(&lim);
	else
		fibers_set_limits(fibers, &lim);
}

/* Create the parent directory of path if it is missing (one level). */
static void
main_mkparent(const char *path, mode_t mode)
{
	char	*dir, *slash;

	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, mode) == -1 && errno != EEXIST)
			log_warn("mkdir %s", dir);
	}
	free(dir);
}

/* Exit once shutdown is under way and the last flush is over. */
void
daemon_exit_check(void)
{
	if (!shutting_down)
		return;
	if (commit_queued() == 0 && forward_idle())
		event_base_loopexit(base, NULL);
}

static void
main_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	log_warnx("shutdown: flush did not finish within %.1fs",
	    cfg->shutdown_timeout);
	event_base_loopexit(base, NULL);
}

static void
main_term_cb(evutil_socket_t sig, short events, void *arg)
{
	struct timeval	tv;

	(void)events; (void)arg;
	if (shutting_down)
		return;
	log_info("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	listen_close();
	metrics_close();	/* a scraper's connection goes too */
	conn_drain_all();	/* what clients already wrote is received */
	shutting_down = 1;
	if (commit_run() == -1)
		log_warnx("shutdown: the last commit failed");
	forward_flush();

	tv.tv_sec = (time_t)cfg->shutdown_timeout;
	tv.tv_usec = (suseconds_t)((cfg->shutdown_timeout -
	    (double)tv.tv_sec) * 1e6);
	ev_deadline = evtimer_new(base, main_deadline_cb, NULL);
	evtimer_add(ev_deadline, &tv);
	daemon_exit_check();
}

/* Warn that key changed from old to new (either may be NULL). */
static void
main_restart_only(const char *key, const char *old, const char *new)
{
	if (old == NULL && new == NULL)
		return;
	if (old != NULL && new != NULL && strcmp(old, new) == 0)
		return;
	log_warnx("SIGHUP: %s changed; it takes effect on restart", key);
}

/* Move the value in use (*old) into the new config (*new). */
static void
main_keep(char **new, char **old)
{
	free(*new);
	*new = *old;
	*old = NULL;
}

static void
main_hup_cb(evutil_socket_t sig, short events, void *arg)
{
	struct config	*nc;
	char		*cause = NULL;

	(void)sig; (void)events; (void)arg;
	if ((nc = config_load(cfg->file, &cause)) == NULL) {
		log_warnx("SIGHUP: config not reloaded, keeping the old one:");
		log_warnx("%s", cause);
		free(cause);
		return;
	}
	/*
	 * The sockets, the spool and its sync level are opened once: a new
	 * value takes effect on restart, and the log says so.  Everything
	 * else applies now: routes (forward.c keeps the state of unchanged
	 * upstreams), the scope layer, fiber limits, spool bounds.
	 */
	main_restart_only("socket", cfg->socket, nc->socket);
	main_restart_only("control_socket", cfg->control_socket,
	    nc->control_socket);
	main_restart_only("spool", cfg->spool, nc->spool);
	main_restart_only("metrics_listen", cfg->metrics_listen,
	    nc->metrics_listen);
	if (cfg->sync_full != nc->sync_full)
		log_warnx("SIGHUP: sync changed; it takes effect on restart");
	if (cfg->socket_mode != nc->socket_mode ||
	    cfg->has_socket_group != nc->has_socket_group ||
	    cfg->socket_group != nc->socket_group)
		log_warnx("SIGHUP: socket_mode or socket_group changed; they "
		    "take effect on restart");
	/* Keep what is in use, so that status tells the truth. */
	main_keep(&nc->socket, &cfg->socket);
	main_keep(&nc->control_socket, &cfg->control_socket);
	main_keep(&nc->spool, &cfg->spool);
	main_keep(&nc->metrics_listen, &cfg->metrics_listen);
	nc->sync_full = cfg->sync_full;
	nc->socket_mode = cfg->socket_mode;
	nc->has_socket_group = cfg->has_socket_group;
	nc->socket_group = cfg->socket_group;

	log_info("SIGHUP: config reloaded from %s", nc->file != NULL ?
	    nc->file : "built-in defaults");
	config_free(cfg);
	cfg = nc;
	main_set_globals();
	forward_reload();
}

static void
main_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	struct spool_stats	st;
	double			now;

	(void)fd; (void)events; (void)arg;
	now = now_s();
	fibers_expire(fibers, now);
	/* max_age (SPEC §5): the next commit expires what is too old. */
	spool_get_stats(spool, &st);
	if (cfg->max_age > 0 && st.rows > 0 && st.oldest != 0 &&
	    st.oldest < now - cfg->max_age)
		commit_expire();
}

int
main(int argc, char **argv)
{
	const char	*file = NULL;
	char		*cause = NULL;
	int		 ch, test = 0, debug = 0;
	struct timeval	 one = { 1, 0 };

	while ((ch = getopt(argc, argv, "c:dht")) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 't':
			test = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	log_init(debug ? LOG_LVL_DEBUG : LOG_LVL_INFO, "errrelayd");

	if (file == NULL && access(CONFIG_DEFAULT_FILE, F_OK) == 0)
		file = CONFIG_DEFAULT_FILE;
	if ((cfg = config_load(file, &cause)) == NULL) {
		if (test) {
			printf("%s\n", cause);
			free(cause);
			return 1;
		}
		log_warnx("%s", cause);
		fatalx("invalid configuration");
	}
	if (test) {
		printf("ok\n");
		config_free(cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	if (gethostname(hostname, sizeof hostname - 1) == -1)
		snprintf(hostname, sizeof hostname, "localhost");
	start_time = now_s();
	main_set_globals();

	main_mkparent(cfg->spool, 0700);
	if ((spool = spool_open(cfg->spool, cfg->sync_full ?
	    SPOOL_SYNC_FULL : SPOOL_SYNC_NORMAL, &cause)) == NULL)
		fatalx("spool %s: %s", cfg->spool, cause);

	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	curlm_init();
	commit_init();
	if (forward_init(&cause) == -1)
		fatalx("%s", cause);
	if (control_init(&cause) == -1)
		fatalx("%s", cause);
	if (cfg->metrics_listen != NULL && metrics_init(&cause) == -1)
		fatalx("%s", cause);
	if (listen_init(&cause) == -1)
		fatalx("%s", cause);

	ev_term = evsignal_new(base, SIGTERM, main_term_cb, NULL);
	ev_int = evsignal_new(base, SIGINT, main_term_cb, NULL);
	ev_hup = evsignal_new(base, SIGHUP, main_hup_cb, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	ev_sweep = event_new(base, -1, EV_PERSIST, main_sweep_cb, NULL);
	evtimer_add(ev_sweep, &one);

	log_info("errrelayd %s ready: socket %s, spool %s", PACKAGE_VERSION,
	    cfg->socket, cfg->spool);
#ifdef HAVE_SYSTEMD
	sd_notify(0, "READY=1");
#endif
	forward_kick(NULL);
	event_base_dispatch(base);

#ifdef HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	commit_refuse_all();
	conn_close_all();
	control_close();
	metrics_close();
	listen_close();
	forward_free();
	commit_free();
	curlm_free();
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(ev_sweep);
	if (ev_deadline != NULL)
		event_free(ev_deadline);
	spool_close(spool);
	fibers_free(fibers);
	curl_global_cleanup();
	event_base_free(base);
	config_free(cfg);
	log_info("exiting");
	return 0;
}
