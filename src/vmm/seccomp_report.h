/* How a bad syscall is reported (src/seccomp's SIGSYS handler calls these):
 * the log line through the logger, seccomp.num_faults stored and a last
 * metrics line written to the sink. */
#ifndef EMBER_VMM_SECCOMP_REPORT_H
#define EMBER_VMM_SECCOMP_REPORT_H

#include "vmm/metrics.h"

/* sink is read when a fault happens, so it may be opened later (PUT
 * /metrics). Both must outlive every filtered thread. */
void seccomp_report_to(struct metrics *m, const struct metrics_sink *sink);

#endif
