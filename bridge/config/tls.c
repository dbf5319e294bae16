/* SPDX-License-Identifier: Apache-2.0 */
/* Checks of a broker's "tls" group that do not depend on the protocol:
 * which keys go together, files that must be readable PEM certificates, a
 * private key as private as a password file, and a warning for each
 * verification turned off. The TLS URL schemes an error names come from
 * the adapters (adapters/adapter.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "adapters/adapter.h"
#include "bridge/config/cfgtable.h"
#include "bridge/config/secret.h"
#include "bridge/config/settings.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"

/* NULL when path holds at least one PEM certificate, else why not. */
static char *
certificate_error(const char *path)
{
	FILE *f = fopen(path, "re");
	X509 *cert;
	char *err = NULL;

	if (f == NULL)
		return xasprintf("could not open file \"%s\": %s", path, strerror(errno));
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	if (cert == NULL)
		err = xasprintf("file \"%s\" holds no PEM certificate", path);
	X509_free(cert);
	ERR_clear_error();
	fclose(f);
	return err;
}

static void
check_certificate(const char *path, const char *key, const config_setting_t *tls, const char *file,
    struct diag *d)
{
	char *err;

	if (path == NULL)
		return;
	err = certificate_error(path);
	if (err)
		diag_error(d, file, cfg_key_line(tls, key), "invalid value of key \"%s\" in group \"tls\": %s", key, err);
	free(err);
}

/* The TLS URL schemes of every adapter, as "xs:// or ys://" (allocated). */
static char *
tls_schemes(void)
{
	struct buf b = { 0 };

	for (size_t i = 0; adapters[i]; i++)
		if (adapters[i]->tls_scheme)
			buf_appendf(&b, "%s%s", b.len ? " or " : "", adapters[i]->tls_scheme);
	return b.data ? b.data : xstrdup("none");
}

void
tls_check(const struct broker *b, bool url_tls, const config_setting_t *group, const char *file,
    struct diag *d)
{
	const config_setting_t *tls = group ? config_setting_get_member(group, "tls") : NULL;
	char *err = NULL;

	if (!url_tls) {
		if (tls) {
			char *schemes = tls_schemes();

			diag_error(d, file, cfg_line(tls),
			    "group \"tls\" in group \"broker\" needs a TLS URL (%s) in key \"url\"", schemes);
			free(schemes);
		}
		return;
	}
	check_certificate(b->tls_ca_file, "ca_file", tls, file, d);
	check_certificate(b->tls_cert_file, "cert_file", tls, file, d);
	if (b->tls_key_file && secret_check(b->tls_key_file, &err) < 0) {
		diag_error(d, file, cfg_key_line(tls, "key_file"), "key \"key_file\" in group \"tls\": %s", err);
		free(err);
	}
	if (b->tls_cert_file && b->tls_key_file == NULL)
		diag_error(d, file, cfg_key_line(tls, "cert_file"),
		    "key \"cert_file\" in group \"tls\" needs key \"key_file\" (the certificate's private key)");
	if (b->tls_key_file && b->tls_cert_file == NULL)
		diag_error(d, file, cfg_key_line(tls, "key_file"),
		    "key \"key_file\" in group \"tls\" needs key \"cert_file\" (the client certificate)");
	if (!b->tls_verify_peer)
		diag_warn(d, file, cfg_key_line(tls, "verify_peer"),
		    "TLS peer verification is off for broker \"%s\" (verify_peer = false): any certificate is "
		    "accepted, so anyone on the network path can pose as the broker", b->name);
	if (!b->tls_verify_hostname)
		diag_warn(d, file, cfg_key_line(tls, "verify_hostname"),
		    "TLS host name verification is off for broker \"%s\" (verify_hostname = false): a certificate "
		    "issued for any other host by a trusted CA is accepted", b->name);
}
