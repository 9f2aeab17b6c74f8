/* Included by one file of each target: sends Ember's log to /dev/null.
 * Lines are still formatted (that code runs too), but a device made per
 * input logs its first complaints anew each time, which filled hundreds
 * of MB a minute and halved the speed. */
#ifndef EMBER_FUZZ_QUIET_H
#define EMBER_FUZZ_QUIET_H

#include <stdlib.h>

#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (log_set_path("/dev/null"))
		abort();
	return 0;
}

#endif
