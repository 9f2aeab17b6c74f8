/* The PS/2 controller, as much as a guest needs: Linux probes it, and resets
 * the machine through it (`reboot=k`: command 0xFE on port 0x64). */
#ifndef EMBER_I8042_H
#define EMBER_I8042_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "guest/io_bus.h"
#include "util/err.h"
#include "util/metrics.h"

/* Firecracker's "i8042" metrics group. */
#define METRICS_I8042(X, a) \
	X(a, inc, error_count) \
	X(a, inc, missed_read_count) \
	X(a, inc, missed_write_count) \
	X(a, inc, read_count) \
	X(a, inc, reset_count) \
	X(a, inc, write_count)

struct i8042_metrics { METRICS_I8042(METRICS_MEMBER, _) };
extern const struct metrics_group i8042_metrics_group;


#define I8042_BASE 0x60
#define I8042_PORTS 5 /* 0x60 data .. 0x64 status/command */
#define I8042_KBD_IRQ 1
#define I8042_BUF_SIZE 16

struct i8042 {
	pthread_mutex_t lock;
	uint8_t ctr;	  /* controller configuration ("command byte") */
	uint8_t pending;  /* controller command awaiting its data byte, or 0 */
	uint8_t kbd_pending; /* keyboard command awaiting its argument, or 0 */
	uint8_t status_cmd; /* last write went to the command port */
	uint8_t buf[I8042_BUF_SIZE];
	unsigned head, len;
	int irq_fd;
	void (*reset)(void *ctx); /* the guest asked for a CPU reset */
	void *reset_ctx;
	struct i8042_metrics *metrics; /* NULL: not counted */
};

extern const struct io_device_ops i8042_ops;

void i8042_init(struct i8042 *k, int irq_fd, void (*reset)(void *), void *reset_ctx);
void i8042_destroy(struct i8042 *k);
/* Snapshot state: the command byte, half-done commands, the output buffer. */
json_t *i8042_save(struct i8042 *k);
int i8042_restore(struct i8042 *k, json_t *state, ember_err *e);
/* Queues the scancodes of Ctrl+Alt+Del (press and release) for the guest and
 * raises IRQ 1. -1 if the guest has the keyboard disabled or the output
 * buffer has no room for the whole sequence. */
int i8042_ctrl_alt_del(struct i8042 *k);

#endif
