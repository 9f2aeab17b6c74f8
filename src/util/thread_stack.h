/* The stack size of the threads Ember starts itself (vCPUs, the API server).
 * Kept under 2 MiB on purpose: glibc's default is RLIMIT_STACK (8 MiB), and
 * on a host whose transparent huge pages are "always", a stack mapping that
 * holds an aligned 2 MiB range gets a whole huge page at its first touch:
 * 2 MiB of RSS per thread for a few KiB used (measured in bench/: the VMM
 * overhead went from 2.9 to 5.0 MiB once guest RAM, mapped just above the
 * stacks, became 2 MiB-aligned). 1 MiB is far more than either thread uses:
 * the deepest path is jansson's parser, bounded by its nesting limit. */
#ifndef EMBER_THREAD_STACK_H
#define EMBER_THREAD_STACK_H

#define EMBER_THREAD_STACK_SIZE (1u << 20)

#endif
