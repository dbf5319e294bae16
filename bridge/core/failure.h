/* SPDX-License-Identifier: Apache-2.0 */
/* The failure classes of the design: what a failed message gets. */
#ifndef ONCEBRIDGE_FAILURE_H
#define ONCEBRIDGE_FAILURE_H

enum failure_class {
	FAILURE_NONE = 0,
	FAILURE_TRANSIENT, /* connection lost, 08xxx, 40001, 40P01, 53xxx, 57xxx: no ack, retry */
	FAILURE_POISON,    /* 22xxx, 23xxx, bad input: dead letter, then ack */
	FAILURE_RETRY,     /* anything else: retried, dead-lettered after max_attempts */
};

/* Classify a SQLSTATE; NULL or empty (no server answer) is transient. */
enum failure_class classify_sqlstate(const char *sqlstate);
const char *failure_class_name(enum failure_class c);

#endif
