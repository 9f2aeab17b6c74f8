#include "devices/boot_timer.h"

#include "util/log.h"
#include "util/metrics.h"

void boot_timer_start(struct boot_timer *t)
{
	t->start_wall_us = metrics_mono_us();
	t->start_cpu_us = metrics_process_cpu_us();
}

static void boot_timer_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	const struct boot_timer *t = ctx;
	(void)len;
	if (offset != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t wall = metrics_mono_us() - t->start_wall_us;
	uint64_t cpu = metrics_process_cpu_us() - t->start_cpu_us;
	LOG_I("Guest-boot-time = %6llu us %llu ms, %6llu CPU us %llu CPU ms",
	      (unsigned long long)wall, (unsigned long long)wall / 1000, (unsigned long long)cpu,
	      (unsigned long long)cpu / 1000);
}

const struct io_device_ops boot_timer_ops = {.write = boot_timer_write};
