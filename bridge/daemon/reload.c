/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration reload. A worker is kept across a reload when nothing it
 * is made of changed: the main file (database, limits, retry), its broker
 * file (connection and routes) and the secrets they name, kept as a
 * SHA-256 digest for the worker's life. Everything else
 * is drained and started again with the new configuration; brokers that
 * are gone are drained and not replaced. The retention process starts
 * again with the new configuration on every reload. An invalid
 * configuration changes nothing. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bridge/config/diag.h"
#include "bridge/daemon/fleet.h"
#include "bridge/common/log.h"
#include "bridge/daemon/reload.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

static void
digest_text(EVP_MD_CTX *ctx, const char *text)
{
	EVP_DigestUpdate(ctx, text, strlen(text));
}

static void
digest_file(EVP_MD_CTX *ctx, const char *path)
{
	FILE *f = fopen(path, "r");
	char chunk[4096];
	size_t n;

	digest_text(ctx, "\n-- ");
	digest_text(ctx, path);
	digest_text(ctx, "\n");
	if (f == NULL) {
		digest_text(ctx, "(unreadable: ");
		digest_text(ctx, strerror(errno));
		digest_text(ctx, ")");
		return;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		EVP_DigestUpdate(ctx, chunk, n);
	explicit_bzero(chunk, sizeof(chunk));
	fclose(f);
}

/* What a worker of b is made of, as a SHA-256 digest to compare. */
static void
fingerprint(const struct settings *s, const struct broker *b, unsigned char *md)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;

	if (ctx == NULL)
		abort();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	digest_file(ctx, s->path);
	digest_file(ctx, b->file);
	/* a renewed CA or client certificate (a new key comes with a new
	 * certificate) restarts the broker's workers */
	if (b->tls_ca_file)
		digest_file(ctx, b->tls_ca_file);
	if (b->tls_cert_file)
		digest_file(ctx, b->tls_cert_file);
	digest_text(ctx, "\n-- secrets\n");
	digest_text(ctx, s->db_password ? s->db_password : "");
	digest_text(ctx, "\n");
	digest_text(ctx, b->password ? b->password : "");
	digest_text(ctx, "\n");
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
}

static bool
covered(const struct fleet *f, const char *name, enum role role, int index)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];

		if (!c->retiring && c->role == role && c->index == index && strcmp(c->name, name) == 0)
			return true;
	}
	return false;
}

/* Add the children of every broker of f->settings that no running child
 * covers yet; returns how many. */
static size_t
add_missing(struct fleet *f)
{
	const struct settings *s = f->settings;
	size_t added = 0;

	for (size_t i = 0; i < s->n_brokers; i++) {
		const struct broker *b = &s->brokers[i];
		int workers = fleet_broker_workers(b), relays = fleet_broker_relays(b);

		for (int w = 0; w < workers + relays; w++) {
			enum role role = w >= workers ? ROLE_RELAY : ROLE_CONSUMER;
			int index = role == ROLE_RELAY ? w - workers : w;
			unsigned char fp[FLEET_FINGERPRINT_LEN];

			if (covered(f, b->name, role, index))
				continue;
			fingerprint(s, b, fp);
			fleet_add(f, role, b, index, fp);
			added++;
		}
	}
	return added;
}

/* The retention (maintenance) process, when retention.dedupe_window_s or
 * retention.dead_letter_window_s is set, or metrics are served (it counts
 * the dead letters waiting). It is not counted among the processes a
 * reload reports. */
static void
add_retention(struct fleet *f)
{
	if (f->settings->dedupe_window_s != 0 || f->settings->dead_letter_window_s != 0 || f->settings->metrics_listen)
		fleet_add(f, ROLE_RETENTION, NULL, 0, NULL);
}

void
reload_populate(struct fleet *f)
{
	add_missing(f);
	add_retention(f);
}

int
reload_run(struct fleet *f)
{
	struct diag d = { 0 };
	struct settings *old = f->settings, *s;
	size_t kept = 0, retired = 0, added;

	s = settings_load(old->path, &d);
	if (s == NULL) {
		for (size_t i = 0; i < d.n; i++)
			log_error("%s", d.lines[i]);
		log_error("configuration \"%s\" has %d error%s; keeping the running configuration", old->path,
		    d.errors, d.errors == 1 ? "" : "s");
		diag_free(&d);
		return -1;
	}
	for (size_t i = 0; i < d.n; i++)
		log_warn("%s", d.lines[i]);
	diag_free(&d);

	for (size_t i = 0; i < f->n; i++) {
		struct child *c = &f->children[i];
		const struct broker *b;
		unsigned char fp[FLEET_FINGERPRINT_LEN];
		int needed;

		if (c->retiring)
			continue;
		if (c->role == ROLE_RETENTION) {
			fleet_retire(f, c); /* starts again with the new settings */
			continue;
		}
		b = settings_find_broker(s, c->name);
		needed = b ? (c->role == ROLE_RELAY ? fleet_broker_relays(b) : fleet_broker_workers(b)) : 0;
		if (b)
			fingerprint(s, b, fp);
		if (b && c->index < needed && memcmp(fp, c->fingerprint, sizeof(fp)) == 0) {
			c->broker = b;
			kept++;
		} else {
			log_info("%s %d of broker \"%s\" %s; draining it", role_name(c->role), c->index,
			    c->name, b == NULL ? "was removed" : c->index >= needed ? "is no longer needed" : "changed");
			fleet_retire(f, c);
			retired++;
		}
	}
	f->settings = s;
	added = add_missing(f);
	add_retention(f);
	if ((old->metrics_listen == NULL) != (s->metrics_listen == NULL) ||
	    (old->metrics_listen && strcmp(old->metrics_listen, s->metrics_listen) != 0))
		log_notice("a changed metrics.listen takes effect when oncebridge is restarted");
	settings_apply_logging(s);
	log_notice("reloaded configuration \"%s\": %zu processes kept, %zu drained, %zu to start", s->path, kept,
	    retired, added);
	settings_free(old);
	return 0;
}
