#include "devices/boot_timer.h"

#include <time.h>

#include "util/log.h"

static uint64_t clock_us(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t monotonic_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

uint64_t process_cpu_us(void)
{
	return clock_us(CLOCK_PROCESS_CPUTIME_ID);
}

void boot_timer_start(struct boot_timer *t)
{
	t->start_wall_us = monotonic_us();
	t->start_cpu_us = process_cpu_us();
}

static void boot_timer_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	const struct boot_timer *t = ctx;
	(void)len;
	if (offset != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t wall = monotonic_us() - t->start_wall_us;
	uint64_t cpu = process_cpu_us() - t->start_cpu_us;
	LOG_I("Guest-boot-time = %6llu us %llu ms, %6llu CPU us %llu CPU ms",
	      (unsigned long long)wall, (unsigned long long)wall / 1000, (unsigned long long)cpu,
	      (unsigned long long)cpu / 1000);
}

const struct io_device_ops boot_timer_ops = {.write = boot_timer_write};
