/*
 * load.c -- errrelay-load: a load generator that measures acked events/s.
 *
 *   errrelay-load [-c conns] [-n events per conn] [-w window] [-s bytes]
 *                 socket
 *
 * Each connection (one thread) says hello with ack:true, then sends events
 * of about -s bytes in windows of -w, reading the window's acks before the
 * next.  It prints acked events/s and ack latency percentiles (time from
 * the window's write to each ack).  A benchmark prints figures; it asserts
 * nothing about them.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchio.h"

static const char	*sock_path;
static int		 nconn = 4, nevents = 10000, window = 256, evsize = 1024;
static double		*lat;		/* one per event, all connections */
static int		 failed;

static double
now_mono(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
load_thread(void *arg)
{
	int	 t = (int)(long)arg, fd, i, k, got, nl, sent = 0;
	char	*pad, *buf, rbuf[65536];
	size_t	 cap, len;
	ssize_t	 n;
	double	 t0;

	if ((fd = bench_connect(sock_path)) == -1) {
		perror("connect");
		failed = 1;
		return NULL;
	}
	pad = malloc((size_t)evsize + 1);
	memset(pad, 'x', (size_t)evsize);
	pad[evsize > 200 ? evsize - 200 : 1] = '\0';
	cap = (size_t)window * ((size_t)evsize + 256) + 128;
	buf = malloc(cap);
	len = (size_t)snprintf(buf, cap,
	    "{\"op\":\"hello\",\"app\":\"load\",\"ack\":true}\n"
	    "{\"op\":\"set\",\"fiber\":\"f%d\",\"tags\":{\"thread\":\"%d\"}}\n",
	    t, t);
	if (bench_write_all(fd, buf, len) == -1) {
		failed = 1;
		goto out;
	}
	while (sent < nevents) {
		k = nevents - sent < window ? nevents - sent : window;
		len = 0;
		for (i = 0; i < k; i++)
			len += (size_t)snprintf(buf + len, cap - len,
			    "{\"op\":\"event\",\"id\":%d,\"fiber\":\"f%d\","
			    "\"event\":{\"message\":\"load test event %d\","
			    "\"extra\":{\"pad\":\"%s\"}}}\n", sent + i, t,
			    sent + i, pad);
		t0 = now_mono();
		if (bench_write_all(fd, buf, len) == -1) {
			failed = 1;
			goto out;
		}
		got = 0;
		while (got < k) {
			if ((n = read(fd, rbuf, sizeof rbuf)) <= 0) {
				fprintf(stderr, "read: connection lost\n");
				failed = 1;
				goto out;
			}
			for (nl = 0; nl < n; nl++) {
				if (rbuf[nl] != '\n')
					continue;
				lat[(size_t)t * (size_t)nevents +
				    (size_t)(sent + got)] = now_mono() - t0;
				got++;
			}
			if (memmem(rbuf, (size_t)n, "\"ok\":false", 10) != NULL) {
				fprintf(stderr, "rejected: %.*s\n", (int)n, rbuf);
				failed = 1;
				goto out;
			}
		}
		sent += k;
	}
out:
	free(pad);
	free(buf);
	close(fd);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	pthread_t	*th;
	int		 ch, i;
	size_t		 total;
	double		 t0, el;

	while ((ch = getopt(argc, argv, "c:n:w:s:")) != -1) {
		switch (ch) {
		case 'c': nconn = atoi(optarg); break;
		case 'n': nevents = atoi(optarg); break;
		case 'w': window = atoi(optarg); break;
		case 's': evsize = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: errrelay-load [-c conns] "
			    "[-n events] [-w window] [-s bytes] socket\n");
			return 2;
		}
	}
	if (optind + 1 != argc || nconn < 1 || nevents < 1 || window < 1 ||
	    evsize < 300) {
		fprintf(stderr, "usage: errrelay-load [-c conns] [-n events] "
		    "[-w window] [-s bytes>=300] socket\n");
		return 2;
	}
	sock_path = argv[optind];
	total = (size_t)nconn * (size_t)nevents;
	lat = calloc(total, sizeof *lat);
	th = calloc((size_t)nconn, sizeof *th);
	t0 = now_mono();
	for (i = 0; i < nconn; i++)
		pthread_create(&th[i], NULL, load_thread, (void *)(long)i);
	for (i = 0; i < nconn; i++)
		pthread_join(th[i], NULL);
	el = now_mono() - t0;
	if (failed) {
		fprintf(stderr, "errrelay-load: failed\n");
		return 1;
	}
	qsort(lat, total, sizeof *lat, cmp_double);
	printf("events %zu of ~%d bytes, %d connections, window %d\n", total,
	    evsize, nconn, window);
	printf("elapsed %.3f s, acked events/s %.0f\n", el, (double)total / el);
	printf("ack latency ms: p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
	    lat[total / 2] * 1e3, lat[total * 9 / 10] * 1e3,
	    lat[total * 99 / 100] * 1e3, lat[total - 1] * 1e3);
	free(lat);
	free(th);
	return 0;
}
