/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration reload on SIGHUP: load the files again and restart only
 * the workers whose configuration changed. */
#ifndef ONCEBRIDGE_RELOAD_H
#define ONCEBRIDGE_RELOAD_H

struct fleet;

/* Add the children every broker of f->settings needs (at start-up). */
void reload_populate(struct fleet *f);

/* Load f->settings->path again. Invalid: log every problem and keep the
 * running configuration (returns -1). Valid: retire the children whose
 * broker was removed or changed, add children for new and changed brokers
 * (the supervisor starts each once its predecessor has drained), and
 * switch f->settings to the new configuration (returns 0). */
int reload_run(struct fleet *f);

#endif
