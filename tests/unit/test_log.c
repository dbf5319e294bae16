/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the log's JSON lines (bridge/common/log_fields.c) and of
 * repeated conditions (bridge/common/repeat.c): stderr goes to a temporary
 * file whose lines are parsed back with json-c. */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge/common/log.h"
#include "bridge/common/log_int.h"
#include "bridge/common/repeat.h"
#include "bridge/common/util.h"
#include "tests/unit/tap.h"

static FILE *captured;

/* The lines logged since the last call, parsed; *n gets their count. */
static json_object **
read_lines(size_t *n)
{
	static json_object *objs[256];
	char line[8192];

	for (size_t i = 0; i < *n; i++)
		json_object_put(objs[i]);
	*n = 0;
	fflush(stderr);
	while (*n < 256 && fgets(line, sizeof(line), captured))
		objs[(*n)++] = json_tokener_parse(line);
	clearerr(captured);
	return objs;
}

static const char *
str(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static int64_t
num(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static void
test_fields(void)
{
	struct log_ctx c = LOG_CTX_INIT;
	json_object **o;
	size_t n = 0;

	log_set_process("worker", "main", 2);
	log_set_context("broker main[2]");
	c.route = "r1";
	c.event_id = "id-\n\"quoted\"\x01\xff-end";
	c.sqlstate = "23505";
	log_warn_ctx(&c, "dead-lettered \"%s\"", "x\ty");
	log_debug("below the level: not written");
	o = read_lines(&n);
	is_int((long long)n, 1, "one JSON line per message at or above the level");
	ok(n == 1 && o[0] != NULL, "the line parses as JSON");
	is_str(str(o[0], "level"), "warning", "level");
	is_str(str(o[0], "message"), "broker main[2]: dead-lettered \"x y\"", "message with its context, on one line");
	is_str(str(o[0], "role"), "worker", "role");
	is_str(str(o[0], "broker"), "main", "broker");
	is_int((long long)num(o[0], "worker"), 2, "worker index");
	is_int((long long)num(o[0], "pid"), (long long)getpid(), "pid");
	is_str(str(o[0], "route"), "r1", "route");
	is_str(str(o[0], "event_id"), "id-?\"quoted\"?" "?-end", "an event ID's control bytes and invalid UTF-8 become ?");
	is_str(str(o[0], "sqlstate"), "23505", "SQLSTATE");
	ok(str(o[0], "condition") == NULL, "no condition field on a plain line");
	ok(str(o[0], "time") && strlen(str(o[0], "time")) == 24, "time in ISO 8601 UTC with milliseconds");
	read_lines(&n);
}

static void
test_repeat(void)
{
	json_object **o;
	size_t n = 0, warnings = 0, summaries = 0;
	int64_t t0 = now_ms();
	int fails = 0;

	repeat_set_interval(200);
	while (now_ms() - t0 < 700) {
		repeat_fail("database", NULL, "could not connect to the database: %s", "refused");
		fails++;
		sleep_ms_unless(10, &(volatile int){ 0 });
	}
	ok(repeat_active("database"), "the condition is on");
	ok(!repeat_active("broker"), "another condition is not");
	{
		pid_t child = fork();
		int status = -1;

		if (child == 0)
			_exit(repeat_active("database") ? 1 : 0);
		waitpid(child, &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child does not inherit the condition");
	}
	o = read_lines(&n);
	for (size_t i = 0; i < n; i++) {
		warnings += o[i] && strcmp(str(o[i], "level"), "warning") == 0;
		summaries += o[i] && strcmp(str(o[i], "condition_state"), "continuing") == 0;
	}
	ok(n >= 4 && n <= 5 && warnings == n, "%d failures in 700 ms, one summary per 200 ms: %zu lines", fails, n);
	is_str(str(o[0], "condition_state"), "started", "the first line starts the condition");
	is_str(str(o[0], "condition"), "database", "and names it");
	ok(str(o[0], "message") && strstr(str(o[0], "message"), "a summary every 0 s") == NULL,
	    "the interval is said in seconds");
	is_int((long long)summaries, (long long)n - 1, "the others are summaries");
	ok(n > 1 && strstr(str(o[1], "message"), "still failing after 0 s and ") != NULL &&
	    strstr(str(o[1], "message"), ": could not connect to the database: refused") != NULL,
	    "a summary says how long, how many attempts and the latest reason");
	repeat_clear("database", "connected to the database again");
	repeat_clear("database", "connected to the database again");
	o = read_lines(&n);
	is_int((long long)n, 1, "its end is logged once");
	is_str(str(o[0], "condition_state"), "ended", "as ended");
	is_str(str(o[0], "level"), "notice", "at NOTICE");
	is_int((long long)num(o[0], "attempts"), fails, "with the number of failed attempts");
	ok(num(o[0], "duration_ms") >= 700, "and how long it lasted");
	ok(!repeat_active("database"), "the condition is off");
	repeat_fail("database", NULL, "could not connect to the database: %s", "again");
	o = read_lines(&n);
	ok(n == 1 && strcmp(str(o[0], "condition_state"), "started") == 0 && num(o[0], "attempts") == 1,
	    "a new failure starts it again");
	repeat_clear("database", "connected to the database again");
	read_lines(&n);
	repeat_set_interval(0);
	repeat_fail("database", NULL, "could not connect to the database: %s", "once");
	repeat_fail("database", NULL, "could not connect to the database: %s", "twice");
	o = read_lines(&n);
	ok(n == 2 && strcmp(str(o[1], "message"), "broker main[2]: could not connect to the database: twice") == 0 &&
	    str(o[1], "condition") == NULL && !repeat_active("database"),
	    "with interval 0 (a one-shot command) every failure is logged as it is");
	read_lines(&n);
}

int
main(void)
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path);

	captured = fopen(path, "r"); /* an offset of its own, apart from the writes' */
	unlink(path);
	setenv("JOURNAL_STREAM", "1:1", 1);
	log_init("test");
	dup2(fd, STDERR_FILENO);
	ok(!log_stderr_is_journal(), "JOURNAL_STREAM naming another file is not the journal");
	is_int(log_set_format("xml"), -1, "an unknown format is refused");
	is_int(log_set_format("json"), 0, "json is a format");
	log_set_level(LOG_INFO);
	test_fields();
	test_repeat();
	return tap_done();
}
