/* A 16550A UART: COM1 at 0x3f8, IRQ 4. Transmitted bytes go to out_fd
 * through a bounded queue and a writer thread (vmm/out_queue.h), so a vCPU
 * never blocks on the host's stdout: bytes that find the queue full are
 * dropped and counted (uart.missed_write_count). Bytes from the host (stdin)
 * enter a 64-byte receive FIFO. */
#ifndef EMBER_SERIAL_H
#define EMBER_SERIAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "guest/io_bus.h"
#include "util/err.h"
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
/* Console output waiting for the host to read it. */
#define SERIAL_OUT_QUEUE (64u << 10)
/* How long serial_destroy waits for a reader that makes no progress. */
#define SERIAL_FLUSH_IDLE_MS 2000

struct out_queue;

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_len;
	int thre_pending; /* a "transmitter empty" interrupt is owed */
	struct out_queue *out; /* NULL: output is discarded */
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
/* Snapshot state: the registers and the receive FIFO (output already
 * handed to the host is not state). restore re-raises a pending interrupt. */
json_t *serial_save(struct serial *s);
int serial_restore(struct serial *s, json_t *state, ember_err *e);
/* Waits until the console output queued so far has been written, or the
 * reader has taken nothing for idle_ms. */
void serial_flush_output(struct serial *s, unsigned idle_ms);

#endif
