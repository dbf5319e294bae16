/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics and health endpoint: libmicrohttpd in external-select mode,
 * driven by the supervisor's loop, so that no thread exists when the
 * supervisor forks. GET /metrics is Prometheus's text format, GET /health
 * is 200 "ok" or 503 with the stalled workers (bridge/daemon/exposition.c renders
 * both). */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "bridge/daemon/exposition.h"
#include "bridge/common/log.h"
#include "bridge/daemon/metrics.h"
#include "bridge/common/util.h"

struct metrics {
	struct MHD_Daemon *daemon;
	const struct fleet *fleet;
};

/* Split listen into host and port (METRICS_DEFAULT_PORT when it names
 * none); 0 when valid. */
static int
split_listen(const char *listen, char **host, char **port, char **err)
{
	const char *colon;

	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');

		if (end == NULL || (end[1] != ':' && end[1] != '\0')) {
			*err = xasprintf("\"%s\" is not [ADDRESS]:PORT", listen);
			return -1;
		}
		*host = xstrndup(listen + 1, (size_t)(end - listen - 1));
		colon = end[1] ? end + 1 : NULL;
	} else {
		colon = strrchr(listen, ':');
		if (colon == listen) {
			*err = xasprintf("\"%s\" is not ADDRESS:PORT, e.g. \"127.0.0.1:%s\"", listen,
			    METRICS_DEFAULT_PORT);
			return -1;
		}
		*host = colon ? xstrndup(listen, (size_t)(colon - listen)) : xstrdup(listen);
	}
	*port = xstrdup(colon ? colon + 1 : METRICS_DEFAULT_PORT);
	return 0;
}

static int
resolve(const char *listen, struct addrinfo **res, char **err)
{
	struct addrinfo hints;
	char *host = NULL, *port = NULL;
	int rc;

	if (split_listen(listen, &host, &port, err) < 0)
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, res);
	if (rc != 0)
		*err = xasprintf("\"%s\" is not a numeric address and port: %s", listen, gai_strerror(rc));
	free(host);
	free(port);
	return rc == 0 ? 0 : -1;
}

int
metrics_check_listen(const char *listen, char **err)
{
	struct addrinfo *res = NULL;

	if (resolve(listen, &res, err) < 0)
		return -1;
	freeaddrinfo(res);
	return 0;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
    const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct metrics *m = cls;
	struct MHD_Response *resp;
	struct buf body = { 0 };
	const char *type = "text/plain; charset=utf-8";
	unsigned int code;
	enum MHD_Result ret;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		buf_appendf(&body, "method not allowed\n");
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") == 0) {
		exposition_metrics(m->fleet, &body);
		exposition_build_info(&body);
		exposition_process(m->fleet, &body);
		type = "text/plain; version=0.0.4; charset=utf-8";
		code = MHD_HTTP_OK;
	} else if (strcmp(url, "/health") == 0) {
		code = exposition_health(m->fleet, &body) ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	} else {
		buf_appendf(&body, "not found: try /metrics or /health\n");
		code = MHD_HTTP_NOT_FOUND;
	}
	resp = MHD_create_response_from_buffer(body.len, body.data ? body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	buf_free(&body);
	return ret;
}

struct metrics *
metrics_start(const char *listen, const struct fleet *f)
{
	struct addrinfo *res = NULL;
	struct metrics *m;
	char *err = NULL;

	if (resolve(listen, &res, &err) < 0) {
		log_error("could not start the metrics endpoint: %s", err);
		free(err);
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->fleet = f;
	m->daemon = MHD_start_daemon(MHD_USE_ERROR_LOG | (res->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0,
	    NULL, NULL, answer, m,
	    MHD_OPTION_SOCK_ADDR, res->ai_addr,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
	    MHD_OPTION_END);
	freeaddrinfo(res);
	if (m->daemon == NULL) {
		log_error("could not listen for metrics on \"%s\": %s", listen, strerror(errno));
		free(m);
		return NULL;
	}
	log_info("serving metrics and health on http://%s/metrics and /health", listen);
	return m;
}

void
metrics_stop(struct metrics *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->daemon);
	free(m);
}

void
metrics_close_in_child(struct metrics *m)
{
	const union MHD_DaemonInfo *info;

	if (m == NULL)
		return;
	info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_LISTEN_FD);
	if (info)
		close(info->listen_fd);
}

void
metrics_wait(struct metrics *m, int64_t ms)
{
	fd_set rs, ws, es;
	MHD_socket max = 0;
	MHD_UNSIGNED_LONG_LONG mhd_timeout;
	struct timeval tv;

	if (m == NULL) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

		nanosleep(&ts, NULL); /* cut short by signals, which is what we want */
		return;
	}
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_ZERO(&es);
	if (MHD_get_fdset(m->daemon, &rs, &ws, &es, &max) != MHD_YES) {
		metrics_wait(NULL, ms);
		return;
	}
	if (MHD_get_timeout(m->daemon, &mhd_timeout) == MHD_YES && (int64_t)mhd_timeout < ms)
		ms = (int64_t)mhd_timeout;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (select(max + 1, &rs, &ws, &es, &tv) < 0 && errno != EINTR)
		log_debug("select for the metrics endpoint failed: %s", strerror(errno));
	MHD_run_from_select(m->daemon, &rs, &ws, &es);
}
