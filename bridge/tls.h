/* The "tls" group of a broker file, checked the same way for every
 * protocol; each adapter hands the settings to its library
 * (adapters/amqp_tls.c, adapters/mqtt_conn.c). */
#ifndef ONCEBRIDGE_TLS_H
#define ONCEBRIDGE_TLS_H

#include <stdbool.h>

#include <libconfig.h>

#include "bridge/diag.h"

struct broker;

/* Check b's TLS settings without network I/O: tls keys only with a TLS
 * URL (url_tls), readable CA and certificate files, a key file only
 * oncebridge's user can read, certificate and key together; and warn when
 * a verification is off. group is the "broker" setting, for line
 * numbers. */
void tls_check(const struct broker *b, bool url_tls, const config_setting_t *group, const char *file,
    struct diag *d);

/* Check a libpq conninfo without connecting: an error when libpq cannot
 * parse it, a warning when its sslmode encrypts without checking that the
 * server's certificate names the host ("require", "verify-ca"). */
void tls_check_conninfo(const char *conninfo, const char *file, int line, struct diag *d);

#endif
