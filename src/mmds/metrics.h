/* Firecracker's "mmds" metrics group, counted by the MMDS stack of every
 * interface together. */
#ifndef EMBER_MMDS_METRICS_H
#define EMBER_MMDS_METRICS_H

#include "util/metrics.h"

#define METRICS_MMDS(X, a) \
	X(a, inc, rx_accepted) \
	X(a, inc, rx_accepted_err) \
	X(a, inc, rx_accepted_unusual) \
	X(a, inc, rx_bad_eth) \
	X(a, inc, rx_invalid_token) \
	X(a, inc, rx_no_token) \
	X(a, inc, rx_count) \
	X(a, inc, tx_bytes) \
	X(a, inc, tx_count) \
	X(a, inc, tx_errors) \
	X(a, inc, tx_frames) \
	X(a, inc, connections_created) \
	X(a, inc, connections_destroyed)

struct mmds_metrics { METRICS_MMDS(METRICS_MEMBER, _) };
extern const struct metrics_group mmds_metrics_group;

#endif
