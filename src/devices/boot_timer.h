/* Firecracker's boot-timer device: when the guest writes the magic byte 123
 * at X86_BOOT_TIMER_ADDR, Ember logs how long the boot took since the VM
 * was started, in wall-clock and in this process's CPU time. */
#ifndef EMBER_BOOT_TIMER_H
#define EMBER_BOOT_TIMER_H

#include <stdint.h>

#include "guest/io_bus.h"

#define BOOT_TIMER_MAGIC 123

struct boot_timer {
	uint64_t start_wall_us;
	uint64_t start_cpu_us;
};

extern const struct io_device_ops boot_timer_ops;

/* Takes the start timestamps now. */
void boot_timer_start(struct boot_timer *t);

#endif
