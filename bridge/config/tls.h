/* SPDX-License-Identifier: Apache-2.0 */
/* The "tls" group of a broker file, checked the same way for every
 * protocol; each adapter hands the settings to its library. */
#ifndef ONCEBRIDGE_TLS_H
#define ONCEBRIDGE_TLS_H

#include <stdbool.h>

#include <libconfig.h>

#include "bridge/config/diag.h"

struct broker;

/* Check b's TLS settings without network I/O: tls keys only with a TLS
 * URL (url_tls), readable CA and certificate files, a key file only
 * oncebridge's user can read, certificate and key together; and warn when
 * a verification is off. group is the "broker" setting, for line
 * numbers. */
void tls_check(const struct broker *b, bool url_tls, const config_setting_t *group, const char *file,
    struct diag *d);

#endif
