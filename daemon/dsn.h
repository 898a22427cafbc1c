/*
 * dsn.h -- Sentry DSNs, parsed as Sentry's SDKs do:
 *   {scheme}://{public_key}[:{secret_key}]@{host}[:{port}]{path}/{project_id}
 * The envelope endpoint is {scheme}://{host}[:{port}]{path}/api/{project_id}/envelope/.
 *
 * The keys are secrets: dsn_redacted gives the form to show in logs and in
 * errrelayctl output.
 */
#ifndef ERRRELAY_DSN_H
#define ERRRELAY_DSN_H

struct dsn {
	int	 set;
	char	*scheme;	/* "http" or "https" */
	char	*public_key;
	char	*secret_key;	/* NULL if none */
	char	*host;		/* host, with ":port" if given */
	char	*path;		/* "" or "/prefix" (no trailing slash) */
	char	*project_id;
	char	*envelope_url;
	char	*redacted;	/* scheme://host/path/project_id, no key */
};

/* Parse s into d.  Returns 0, or -1 with *cause (which never holds a key). */
int	 dsn_parse(const char *s, struct dsn *d, char **cause);
void	 dsn_free(struct dsn *);
/* Deep copy. */
void	 dsn_copy(struct dsn *dst, const struct dsn *src);

/* The X-Sentry-Auth header value (caller frees). */
char	*dsn_auth_header(const struct dsn *, const char *client, double now);

#endif
