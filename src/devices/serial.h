/* A 16550A UART: COM1 at 0x3f8, IRQ 4. Transmitted bytes go to out_fd;
 * bytes from the host (stdin) enter a 64-byte receive FIFO. */
#ifndef EMBER_SERIAL_H
#define EMBER_SERIAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io_bus.h"
#include "util/metrics.h"

/* Firecracker's "uart": the serial port. */
#define METRICS_UART(X, a) \
	X(a, inc, error_count) \
	X(a, inc, flush_count) \
	X(a, inc, missed_read_count) \
	X(a, inc, missed_write_count) \
	X(a, inc, read_count) \
	X(a, inc, write_count)

struct uart_metrics { METRICS_UART(METRICS_MEMBER, _) };
extern const struct metrics_group uart_metrics_group;


#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ 4
#define SERIAL_PORTS 8
#define SERIAL_FIFO_SIZE 64

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_len;
	int thre_pending; /* a "transmitter empty" interrupt is owed */
	int out_fd;
	int irq_fd; /* eventfd wired to the IRQ with KVM_IRQFD */
	/* Called (with the lock held) when the guest empties the receive FIFO,
	 * so the owner can resume reading its input. */
	void (*rx_drained)(void *ctx);
	void *rx_drained_ctx;
	struct uart_metrics *metrics; /* NULL: not counted */
};

extern const struct io_device_ops serial_ops;

void serial_init(struct serial *s, int out_fd, int irq_fd);
void serial_destroy(struct serial *s);
/* Queues host input for the guest; returns how many bytes fit. */
size_t serial_enqueue(struct serial *s, const uint8_t *buf, size_t len);
size_t serial_rx_space(struct serial *s);

#endif
