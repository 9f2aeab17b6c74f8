/* Counts API requests into Firecracker's get/put/patch_api_requests metric
 * groups: <resource>_count for every request to a resource, <resource>_fails
 * for those answered with an error. */
#ifndef EMBER_API_METRICS_H
#define EMBER_API_METRICS_H

#include "vmm/metrics.h"

void api_metrics_count(struct metrics *m, const char *method, const char *path, int status);

#endif
