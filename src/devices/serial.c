#include "devices/serial.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "util/blob.h"
#include "util/out_queue.h"

const struct metrics_group uart_metrics_group = METRICS_GROUP("uart", METRICS_UART, struct uart_metrics);

/* Register offsets; DLAB (LCR bit 7) turns 0 and 1 into the divisor latch. */
enum { REG_DATA = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3, REG_MCR = 4, REG_LSR = 5,
       REG_MSR = 6, REG_SCR = 7 };

#define IER_RDA 0x01 /* interrupt when data is received */
#define IER_THRE 0x02 /* interrupt when the transmitter is empty */
#define IIR_NONE 0x01
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_FIFO_ENABLED 0xc0
#define FCR_FIFO_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20
#define LSR_IDLE 0x40
#define MCR_LOOP 0x10
/* Outside loopback the modem lines read as carrier, data-set-ready and
 * clear-to-send: a connected, always-ready terminal. */
#define MSR_DEFAULT 0xb0

static void raise_irq(struct serial *s)
{
	uint64_t one = 1;
	if (s->irq_fd >= 0 && write(s->irq_fd, &one, sizeof(one)) < 0) {
		/* The eventfd counter cannot overflow in practice; nothing to do. */
	}
}

/* Raise the line if an enabled interrupt condition holds. */
static void update_irq(struct serial *s)
{
	if (((s->ier & IER_RDA) && s->rx_len) || ((s->ier & IER_THRE) && s->thre_pending))
		raise_irq(s);
}

void serial_init(struct serial *s, int out_fd, int irq_fd)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out = out_fd >= 0 ? out_queue_create(out_fd, SERIAL_OUT_QUEUE) : NULL;
	/* Its writer starts here, on the VMM thread building the VM: never
	 * from the vCPU that prints first (util/out_queue.h). */
	if (s->out && out_queue_start(s->out)) {
		out_queue_destroy(s->out, 0);
		s->out = NULL;
	}
	s->irq_fd = irq_fd;
	s->lcr = 0x03; /* 8N1 */
	s->mcr = 0x08; /* OUT2, which gates the interrupt line on PCs */
	s->dll = 0x0c; /* 9600 baud */
}

void serial_destroy(struct serial *s)
{
	out_queue_destroy(s->out, SERIAL_FLUSH_IDLE_MS);
	s->out = NULL;
	pthread_mutex_destroy(&s->lock);
}

void serial_flush_output(struct serial *s, unsigned idle_ms)
{
	if (s->out)
		out_queue_flush(s->out, idle_ms);
}

static size_t push_rx(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	while (n < len && s->rx_len < SERIAL_FIFO_SIZE) {
		s->rx[(s->rx_head + s->rx_len) % SERIAL_FIFO_SIZE] = buf[n++];
		s->rx_len++;
	}
	return n;
}

size_t serial_enqueue(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	size_t n = push_rx(s, buf, len);
	if (n)
		update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_space(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = SERIAL_FIFO_SIZE - s->rx_len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static uint8_t pop_rx(struct serial *s)
{
	if (!s->rx_len)
		return 0;
	uint8_t b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
	if (--s->rx_len == 0 && s->rx_drained)
		s->rx_drained(s->rx_drained_ctx);
	return b;
}

static uint8_t modem_status(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_DEFAULT;
	/* Loopback wires RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
	return (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) | ((s->mcr & 0x04) << 4) |
			 ((s->mcr & 0x08) << 4));
}

static void serial_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct serial *s = ctx;
	uint8_t v = 0;
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & LCR_DLAB;
	switch (offset) {
	case REG_DATA:
		if (dlab) {
			v = s->dll;
		} else {
			if (s->metrics)
				metric_inc(s->rx_len ? &s->metrics->read_count
						     : &s->metrics->missed_read_count);
			v = pop_rx(s);
		}
		break;
	case REG_IER:
		v = dlab ? s->dlm : s->ier;
		break;
	case REG_IIR_FCR:
		if ((s->ier & IER_RDA) && s->rx_len) {
			v = IIR_RDA;
		} else if ((s->ier & IER_THRE) && s->thre_pending) {
			v = IIR_THRE;
			s->thre_pending = 0; /* reading IIR acknowledges it */
		} else {
			v = IIR_NONE;
		}
		if (s->fcr & FCR_FIFO_ENABLE)
			v |= IIR_FIFO_ENABLED;
		break;
	case REG_LCR:
		v = s->lcr;
		break;
	case REG_MCR:
		v = s->mcr;
		break;
	case REG_LSR:
		v = LSR_THR_EMPTY | LSR_IDLE | (s->rx_len ? LSR_DATA_READY : 0);
		break;
	case REG_MSR:
		v = modem_status(s);
		break;
	case REG_SCR:
		v = s->scr;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	memset(data, 0, len);
	data[0] = v;
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		push_rx(s, &b, 1);
	} else if (s->out) {
		/* A closed or full stdout drops console output, never the VM:
		 * the queue takes the byte or counts it as dropped. */
		size_t n = out_queue_put(s->out, &b, 1, false);
		uint64_t dropped = out_queue_take_dropped(s->out);
		if (s->metrics) {
			if (n)
				metric_inc(&s->metrics->write_count);
			if (dropped)
				metric_add(&s->metrics->missed_write_count, dropped);
		}
	}
	s->thre_pending = 1;
}

static void serial_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct serial *s = ctx;
	uint8_t v = data[0];
	(void)len;
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & LCR_DLAB;
	switch (offset) {
	case REG_DATA:
		if (dlab)
			s->dll = v;
		else
			transmit(s, v);
		break;
	case REG_IER:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling THRE with an empty transmitter interrupts at once. */
			if ((v & IER_THRE) && !(s->ier & IER_THRE))
				s->thre_pending = 1;
			s->ier = v & 0x0f;
		}
		break;
	case REG_IIR_FCR:
		s->fcr = v;
		if (v & FCR_CLEAR_RX) {
			s->rx_len = 0;
			if (s->rx_drained)
				s->rx_drained(s->rx_drained_ctx);
		}
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & 0x1f;
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

const struct io_device_ops serial_ops = {.read = serial_read, .write = serial_write};

json_t *serial_save(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	uint8_t rx[SERIAL_FIFO_SIZE];
	for (unsigned i = 0; i < s->rx_len; i++)
		rx[i] = s->rx[(s->rx_head + i) % SERIAL_FIFO_SIZE];
	json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}", "ier", s->ier, "lcr",
			      s->lcr, "mcr", s->mcr, "scr", s->scr, "dll", s->dll, "dlm", s->dlm,
			      "fcr", s->fcr, "thre_pending", s->thre_pending, "rx",
			      blob_json(rx, s->rx_len));
	pthread_mutex_unlock(&s->lock);
	return j;
}

int serial_restore(struct serial *s, json_t *j, ember_err *e)
{
	static const char *const regs[] = {"ier", "lcr", "mcr", "scr", "dll", "dlm", "fcr",
					   "thre_pending"};
	uint64_t v[8];
	uint8_t rx[SERIAL_FIFO_SIZE];
	size_t n;
	if (!json_is_object(j))
		return err_set(e, "serial: state is not an object");
	for (size_t i = 0; i < 8; i++)
		if (json_get_u64(j, regs[i], i == 7 ? 1 : 0xff, &v[i], e))
			return err_prefix(e, "serial");
	if (blob_get_var(j, "rx", rx, sizeof(rx), &n, e))
		return err_prefix(e, "serial");
	pthread_mutex_lock(&s->lock);
	s->ier = (uint8_t)v[0];
	s->lcr = (uint8_t)v[1];
	s->mcr = (uint8_t)v[2];
	s->scr = (uint8_t)v[3];
	s->dll = (uint8_t)v[4];
	s->dlm = (uint8_t)v[5];
	s->fcr = (uint8_t)v[6];
	s->thre_pending = (int)v[7];
	memcpy(s->rx, rx, n);
	s->rx_head = 0;
	s->rx_len = (unsigned)n;
	/* An interrupt the guest had not taken yet is raised again. */
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
