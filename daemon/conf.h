/*
 * conf.h -- the configuration file (SPEC §10), parsed with libinih.
 *
 * Pure code.  config_load fills a struct config from a file, starting from
 * the built-in defaults; every unknown section or key and every bad value
 * is an error naming the file, line and key.  A config is immutable once
 * loaded; a reload builds a new one and swaps it in only if it is valid.
 */
#ifndef ERRRELAY_CONFIG_H
#define ERRRELAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "daemon/dsn.h"

#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define CONFIG_DEFAULT_FILE	SYSCONFDIR "/errrelay/errrelay.conf"
#define CONFIG_DEFAULT_SOCKET	RUNSTATEDIR "/errrelay.sock"
#define CONFIG_DEFAULT_CONTROL	RUNSTATEDIR "/errrelay/control.sock"
#define CONFIG_DEFAULT_SPOOL	LOCALSTATEDIR "/lib/errrelay/spool.db"
#define CONFIG_DEFAULT_OUTBOX	LOCALSTATEDIR "/lib/errrelay/outbox.ndjson"

enum upstream_type {
	UPSTREAM_FILE,
	UPSTREAM_HTTP,
	UPSTREAM_SENTRY
};

enum overflow_policy {
	OVERFLOW_DROP_OLDEST,
	OVERFLOW_REJECT
};

/*
 * One route: the default one ("default", from [upstream]) or a
 * [route NAME] section.  Exactly one of path (file), url (http), dsn
 * (sentry) is set, matching type.
 */
struct config_route {
	char			*name;
	enum upstream_type	 type;
	char			*path;		/* file */
	char			*url;		/* http */
	struct dsn		 dsn;		/* sentry (dsn.set) */
	int			 batch_size;
	int			 max_inflight;
	int			 gzip;
	char			*ca_file;	/* NULL: system CAs only */
	double			 timeout;	/* seconds */
};

struct config {
	char			*file;		/* where it was read, or NULL */

	/* [daemon] */
	char			*socket;
	mode_t			 socket_mode;
	int			 has_socket_group;
	gid_t			 socket_group;
	char			*control_socket;
	char			*spool;
	int			 sync_full;	/* 1 full, 0 normal */
	size_t			 max_line_bytes;
	size_t			 max_event_bytes;
	size_t			 max_fibers;
	double			 fiber_ttl;
	double			 scope_grace;
	size_t			 max_breadcrumbs;
	uint64_t		 max_spool_bytes;
	enum overflow_policy	 overflow;
	double			 max_age;
	double			 shutdown_timeout;
	double			 idle_timeout;
	size_t			 max_connections;
	char			*metrics_listen;	/* NULL: none */

	/* [scope] */
	char			*environment;
	char			*release;
	char			*server_name;	/* NULL: the host name */
	cJSON			*tags;		/* object of string values */

	/* routes[0] is the default route; the rest in file order */
	struct config_route	*routes;
	size_t			 nroutes;
};

/*
 * Load path (NULL: built-in defaults only).  Returns a new config, or NULL
 * with *cause set to every problem found, one per line, each
 * "FILE:LINE: key: what is wrong".  Never echoes a DSN key.
 */
struct config	*config_load(const char *path, char **cause);
void		 config_free(struct config *);

/*
 * Check a listen address, "host:port" or "[v6addr]:port"; with host not
 * NULL also split it (*host new, *port into s).  Returns 0 or -1.
 */
int		 config_split_listen(const char *s, char **host,
		    const char **port);

/* The route for an app name: its [route NAME] or the default. */
const struct config_route *config_route_for(const struct config *,
		    const char *app);

/* Parse "30s", "500ms", "5m", "1h", "7d" or plain seconds.  0 or -1. */
int		 config_parse_duration(const char *, double *);
/* Parse "1024", "4K", "1M", "1G".  0 or -1. */
int		 config_parse_size(const char *, uint64_t *);

const char	*config_upstream_type_name(enum upstream_type);

#endif
