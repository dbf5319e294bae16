/* SPDX-License-Identifier: Apache-2.0 */
/* TLS for AMQP on rabbitmq-c's OpenSSL socket: TLS 1.2 or newer, the CA
 * file (or the system's CAs), an optional client certificate, and peer
 * and host name verification, both on unless turned off.
 *
 * rabbitmq-c 0.11 checks the host name itself after the handshake, but
 * only against DNS names (subjectAltName DNS entries, else the CN), never
 * an IP address, and says no more than "SSL hostname verification
 * failed". So when the peer is verified, OpenSSL checks the name (DNS or
 * IP) as part of the chain verification and rabbitmq-c's own check is
 * off; a verify callback keeps OpenSSL's reason for the log. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#ifdef HAVE_RABBITMQ_C_AMQP_H
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp_ssl_socket.h>
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "adapters/amqp_tls.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"

/* one connection attempt at a time per process: workers are single-threaded */
static char failure[256];

static int
on_verify(int ok, X509_STORE_CTX *store)
{
	if (!ok && failure[0] == '\0')
		snprintf(failure, sizeof(failure), "%s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)));
	return ok; /* rabbitmq-c decides, from SSL_get_verify_result() */
}

static bool
is_ip_address(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static const char *
openssl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r ? r : "unknown error";
}

amqp_socket_t *
amqpc_tls_socket(amqp_connection_state_t conn, const char *host, const struct broker *b)
{
	amqp_socket_t *sock = amqp_ssl_socket_new(conn);
	SSL_CTX *ctx;

	failure[0] = '\0';
	ERR_clear_error();
	if (sock == NULL) {
		log_warn("could not create a TLS socket: %s", openssl_reason());
		return NULL;
	}
	ctx = amqp_ssl_socket_get_context(sock);
	if (amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST) != AMQP_STATUS_OK) {
		log_warn("could not require TLS 1.2 or newer");
		return NULL;
	}
	if (b->tls_ca_file ? amqp_ssl_socket_set_cacert(sock, b->tls_ca_file) != AMQP_STATUS_OK
			   : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		log_warn("could not load the CA certificates \"%s\": %s",
		    b->tls_ca_file ? b->tls_ca_file : "(system default)", openssl_reason());
		return NULL;
	}
	if (b->tls_cert_file && amqp_ssl_socket_set_key(sock, b->tls_cert_file, b->tls_key_file) != AMQP_STATUS_OK) {
		log_warn("could not load the client certificate \"%s\" and key \"%s\": %s", b->tls_cert_file,
		    b->tls_key_file, openssl_reason());
		return NULL;
	}
	amqp_ssl_socket_set_verify_peer(sock, b->tls_verify_peer);
	if (b->tls_verify_peer && b->tls_verify_hostname) {
		X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
		int rc;

		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		rc = is_ip_address(host) ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
					 : X509_VERIFY_PARAM_set1_host(param, host, 0);
		if (rc != 1) {
			log_warn("could not set the host name \"%s\" to verify: %s", host, openssl_reason());
			return NULL;
		}
		amqp_ssl_socket_set_verify_hostname(sock, 0); /* OpenSSL's check covers it */
	} else {
		/* a name is worth nothing on a certificate nobody checked */
		amqp_ssl_socket_set_verify_hostname(sock, 0);
	}
	SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx), on_verify);
	return sock;
}

const char *
amqpc_tls_failure(void)
{
	static char reason[256];
	unsigned long e = ERR_peek_last_error();

	if (failure[0]) {
		snprintf(reason, sizeof(reason), "%s", failure);
		failure[0] = '\0';
	} else if (e) {
		snprintf(reason, sizeof(reason), "%s", openssl_reason());
	} else {
		reason[0] = '\0';
	}
	ERR_clear_error();
	return reason[0] ? reason : NULL;
}
