/* Dropping to the jailed uid:gid with no capability left. */
#ifndef EMBER_JAILER_PRIVS_H
#define EMBER_JAILER_PRIVS_H

#include <sys/types.h>

#include "util/err.h"

/* Empties the capability bounding and ambient sets, drops supplementary
 * groups, sets real/effective/saved gid and uid, then clears the effective,
 * permitted and inheritable sets. Nothing is regained across exec, even for
 * uid 0. */
int privs_drop(uid_t uid, gid_t gid, ember_err *e);

#endif
