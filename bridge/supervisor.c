/* The supervisor: forks one worker process per broker connection (paho's
 * receive thread and lock are process-wide, and a slow database for one
 * broker must not stall another), restarts a worker that dies with capped
 * backoff, and on SIGTERM or SIGINT asks every worker to drain, waiting at
 * most shutdown_timeout_ms before killing what is left. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bridge/backoff.h"
#include "bridge/log.h"
#include "bridge/settings.h"
#include "bridge/supervisor.h"
#include "bridge/util.h"
#include "bridge/worker.h"

/* a worker that ran this long before dying starts over at the first delay */
#define HEALTHY_RUN_MS 60000
#define RESTART_MAX_MS 60000

struct child {
	const struct broker *broker;
	bool relay;           /* outbox relay, else inbound worker */
	int index;            /* number within its broker and role, 0-based */
	pid_t pid;            /* 0 when not running */
	int64_t started_ms;
	int64_t restart_at_ms;
	struct backoff backoff;
};

static volatile int got_stop;
static volatile int got_hup;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
}

static void
start_child(const struct settings *s, struct child *c)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_error("could not fork a worker for broker \"%s\": %s", c->broker->name, strerror(errno));
		c->restart_at_ms = now_ms() + backoff_next(&c->backoff);
		return;
	}
	if (pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGCHLD, &sa, NULL);
		/* exit(), not _exit(): LeakSanitizer checks the worker at exit */
		exit(worker_main(s, c->broker, c->relay, c->index));
	}
	c->pid = pid;
	c->started_ms = now_ms();
	log_info("started %s %d for broker \"%s\" (pid %ld)", c->relay ? "relay" : "worker", c->index,
	    c->broker->name, (long)pid);
}

static struct child *
find_child(struct child *children, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (children[i].pid == pid)
			return &children[i];
	return NULL;
}

static void
describe_exit(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "was terminated by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "ended with status %d", status);
}

static size_t
reap(struct child *children, size_t n, bool stopping)
{
	size_t reaped = 0;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *c = find_child(children, n, pid);
		char how[96];

		if (c == NULL)
			continue;
		reaped++;
		c->pid = 0;
		describe_exit(status, how, sizeof(how));
		if (stopping) {
			log_info("worker for broker \"%s\" %s", c->broker->name, how);
			continue;
		}
		if (now_ms() - c->started_ms > HEALTHY_RUN_MS)
			backoff_reset(&c->backoff);
		{
			int64_t delay = backoff_next(&c->backoff);

			log_error("worker for broker \"%s\" %s; restarting it in %lld ms", c->broker->name, how,
			    (long long)delay);
			c->restart_at_ms = now_ms() + delay;
		}
	}
	return reaped;
}

static size_t
running(const struct child *children, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += children[i].pid != 0;
	return k;
}

static void
signal_all(struct child *children, size_t n, int sig)
{
	for (size_t i = 0; i < n; i++)
		if (children[i].pid)
			kill(children[i].pid, sig);
}

/* inbound worker processes of a broker: its "workers" key where it has one */
static int
broker_workers(const struct broker *b)
{
	if (b->n_routes == 0)
		return 0;
	return b->workers > 1 ? (int)b->workers : 1;
}

/* outbox relay processes of a broker */
static int
broker_relays(const struct broker *b)
{
	return b->outbox ? (int)b->outbox_relays : 0;
}

static void
nap(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL); /* cut short by signals, which is what we want */
}

int
supervisor_run(const struct settings *s)
{
	struct child *children;
	size_t n = 0;
	struct sigaction sa;
	int64_t deadline;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	for (size_t i = 0; i < s->n_brokers; i++)
		n += (size_t)(broker_workers(&s->brokers[i]) + broker_relays(&s->brokers[i]));
	children = xcalloc(n + 1, sizeof(struct child));
	for (size_t i = 0, k = 0; i < s->n_brokers; i++) {
		int workers = broker_workers(&s->brokers[i]);

		for (int w = 0; w < workers + broker_relays(&s->brokers[i]); w++, k++) {
			children[k].broker = &s->brokers[i];
			children[k].relay = w >= workers;
			children[k].index = w >= workers ? w - workers : w;
			backoff_init(&children[k].backoff, 1000, RESTART_MAX_MS);
			start_child(s, &children[k]);
		}
	}
	while (!got_stop) {
		reap(children, n, false);
		if (got_hup) {
			got_hup = 0;
			log_notice("received SIGHUP; configuration reload is not supported yet, "
			    "restart the service to apply changes");
		}
		for (size_t i = 0; i < n && !got_stop; i++)
			if (children[i].pid == 0 && now_ms() >= children[i].restart_at_ms)
				start_child(s, &children[i]);
		nap(200);
	}

	log_info("shutting down: asking %zu workers to finish their in-flight work", running(children, n));
	signal_all(children, n, SIGTERM);
	deadline = now_ms() + s->shutdown_timeout_ms;
	while (running(children, n) > 0 && now_ms() < deadline) {
		reap(children, n, true);
		if (running(children, n) > 0)
			nap(50);
	}
	if (running(children, n) > 0) {
		log_warn("%zu workers did not stop within %lld ms; killing them (their unacked messages "
		    "will be redelivered)", running(children, n), (long long)s->shutdown_timeout_ms);
		signal_all(children, n, SIGKILL);
		while (running(children, n) > 0) {
			reap(children, n, true);
			nap(20);
		}
	}
	free(children);
	log_info("stopped");
	return 0;
}
