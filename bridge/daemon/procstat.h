/* SPDX-License-Identifier: Apache-2.0 */
/* What the kernel says of one process, for the process metrics of each
 * role (bridge/daemon/exposition_process.c): read from /proc/PID by the
 * supervisor, which knows the pids of its fleet. */
#ifndef ONCEBRIDGE_PROCSTAT_H
#define ONCEBRIDGE_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct procstat {
	double cpu_seconds;      /* user + system */
	double start_time_s;     /* since the epoch */
	int64_t resident_bytes;
	int64_t open_fds;
	int64_t max_fds;         /* soft limit; -1 when unknown */
};

/* 0, or -1 when the process is gone or /proc cannot be read. */
int procstat_read(pid_t pid, struct procstat *out);

#endif
