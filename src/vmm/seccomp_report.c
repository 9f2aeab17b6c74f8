#include "vmm/seccomp_report.h"

#include <time.h>
#include <unistd.h>

#include "seccomp/seccomp.h"
#include "util/sigsafe_fmt.h"
#include "util/log.h"

static struct metrics *fault_metrics;
static const struct metrics_sink *fault_sink;

/* In the SIGSYS handler. The last metrics line is hand-built: a full flush
 * (metrics_write) builds its JSON with jansson, that is with malloc, and
 * the faulting thread may have been inside malloc. So the line carries the
 * timestamp and the seccomp group only; earlier flushes carried the rest. */
static void on_fault(void *ctx)
{
	(void)ctx;
	struct metrics *m = fault_metrics;
	const struct metrics_sink *s = fault_sink;
	if (!m)
		return;
	metric_set(&m->seccomp.num_faults, 1); /* a store, as Firecracker's */
	if (!s || s->fd < 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char buf[160], *p = buf, *end = buf + sizeof(buf);
	if (s->torn)
		p = sigsafe_str(p, end, "\n");
	p = sigsafe_str(p, end, "{\"utc_timestamp_ms\":");
	p = sigsafe_u64(p, end, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, 0);
	p = sigsafe_str(p, end, ",\"seccomp\":{\"num_faults\":1}}\n");
	ssize_t rc = write(s->fd, buf, (size_t)(p - buf));
	(void)rc; /* a full FIFO loses it, as any flush */
}

void seccomp_report_to(struct metrics *m, const struct metrics_sink *sink)
{
	fault_metrics = m;
	fault_sink = sink;
	seccomp_set_reporter(&(struct seccomp_reporter){.log = log_signal_safe, .fault = on_fault});
}
