/* SPDX-License-Identifier: Apache-2.0 */
/* Process figures from /proc: /proc/PID/stat (CPU ticks, start time in
 * ticks since boot, resident pages), /proc/PID/fd (one entry per open
 * descriptor) and /proc/PID/limits, with the boot time from /proc/stat.
 * The names of the fields follow proc(5). */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/daemon/procstat.h"

/* Seconds since the epoch at boot ("btime" of /proc/stat); 0 when unknown. */
static double
boot_time(void)
{
	static double btime;
	char line[256];
	FILE *f;

	if (btime > 0)
		return btime;
	f = fopen("/proc/stat", "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "btime ", 6) == 0)
			btime = strtod(line + 6, NULL);
	fclose(f);
	return btime;
}

/* utime, stime, starttime and rss of /proc/PID/stat. */
static int
read_stat(pid_t pid, struct procstat *out)
{
	char path[64], buf[1024], *p;
	unsigned long long utime, stime, start;
	long long rss;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (p == NULL || tick <= 0)
		return -1;
	/* fields 3 (state) to 24 (rss) follow the name */
	if (sscanf(p + 1, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s %*s %*s %*s %*s %llu %*s %lld",
	    &utime, &stime, &start, &rss) != 4)
		return -1;
	out->cpu_seconds = (double)(utime + stime) / (double)tick;
	out->start_time_s = boot_time() + (double)start / (double)tick;
	out->resident_bytes = rss * page;
	return 0;
}

static int64_t
count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int64_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int64_t
max_fds(pid_t pid)
{
	char path[64], line[256];
	int64_t v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/limits", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Max open files", 14) == 0)
			v = strtoll(line + 14, NULL, 10);
	fclose(f);
	return v > 0 ? v : -1;
}

int
procstat_read(pid_t pid, struct procstat *out)
{
	memset(out, 0, sizeof(*out));
	if (read_stat(pid, out) < 0)
		return -1;
	out->open_fds = count_fds(pid);
	out->max_fds = max_fds(pid);
	return out->open_fds < 0 ? -1 : 0;
}
