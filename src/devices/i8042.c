#include "devices/i8042.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "util/blob.h"

const struct metrics_group i8042_metrics_group = METRICS_GROUP("i8042", METRICS_I8042, struct i8042_metrics);

#define PORT_DATA 0
#define PORT_CMD 4

#define STS_OBF 0x01  /* output buffer full */
#define STS_SYS 0x04  /* self-test passed */
#define STS_CMD 0x08  /* last write was a command */

#define CTR_KBD_INT 0x01
#define CTR_SYS 0x04
#define CTR_KBD_DISABLE 0x10
#define CTR_AUX_DISABLE 0x20
#define CTR_XLATE 0x40

enum {
	CMD_READ_CTR = 0x20,
	CMD_WRITE_CTR = 0x60,
	CMD_AUX_DISABLE = 0xa7,
	CMD_AUX_ENABLE = 0xa8,
	CMD_AUX_TEST = 0xa9,
	CMD_SELF_TEST = 0xaa,
	CMD_KBD_TEST = 0xab,
	CMD_KBD_DISABLE = 0xad,
	CMD_KBD_ENABLE = 0xae,
	CMD_READ_OUTP = 0xd0,
	CMD_WRITE_OUTP = 0xd1,
	CMD_WRITE_KBD_OUTBUF = 0xd2,
	CMD_AUX_LOOP = 0xd3,
	CMD_WRITE_AUX = 0xd4,
	CMD_RESET_CPU = 0xfe,
};

#define KBD_ACK 0xfa
#define KBD_RESET 0xff
#define KBD_GET_ID 0xf2
#define KBD_SET_LEDS 0xed
#define KBD_SET_RATE 0xf3
#define KBD_SCANCODE_SET 0xf0
#define KBD_SELF_TEST_OK 0xaa

#define COUNT(k, field)                                    \
	do {                                               \
		if ((k)->metrics)                          \
			metric_inc(&(k)->metrics->field);  \
	} while (0)

/* One edge on IRQ 1. A real controller raises its interrupt each time a
 * byte lands in the output buffer; Linux reads one byte per interrupt. */
static void raise_irq(struct i8042 *k)
{
	if ((k->ctr & CTR_KBD_INT) && k->irq_fd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(k->irq_fd, &one, sizeof(one));
		(void)r;
	}
}

static void push(struct i8042 *k, uint8_t b)
{
	if (k->len == I8042_BUF_SIZE) {
		COUNT(k, missed_write_count);
		return;
	}
	k->buf[(k->head + k->len) % I8042_BUF_SIZE] = b;
	k->len++;
	/* Only the byte that fills an empty buffer interrupts; the rest follow
	 * as the guest reads (edges sent while it still handles the first
	 * would merge into one and leave bytes stranded). */
	if (k->len == 1)
		raise_irq(k);
}

void i8042_init(struct i8042 *k, int irq_fd, void (*reset)(void *), void *reset_ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->ctr = CTR_KBD_INT | CTR_SYS | CTR_XLATE;
	k->irq_fd = irq_fd;
	k->reset = reset;
	k->reset_ctx = reset_ctx;
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* A command to the controller itself (port 0x64). */
static void controller_cmd(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR:
		push(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OUTBUF:
	case CMD_WRITE_AUX:
		k->pending = cmd;
		break;
	case CMD_AUX_DISABLE:
		k->ctr |= CTR_AUX_DISABLE;
		break;
	case CMD_AUX_ENABLE:
		k->ctr &= ~CTR_AUX_DISABLE;
		break;
	case CMD_AUX_LOOP:
		/* No mouse: the loop test answers wrong, and the port test
		 * below then tells Linux there is no AUX port at all. */
		k->pending = cmd;
		break;
	case CMD_AUX_TEST:
		push(k, 0x01);
		break;
	case CMD_SELF_TEST:
		push(k, 0x55);
		break;
	case CMD_KBD_TEST:
		push(k, 0x00);
		break;
	case CMD_KBD_DISABLE:
		k->ctr |= CTR_KBD_DISABLE;
		break;
	case CMD_KBD_ENABLE:
		k->ctr &= ~CTR_KBD_DISABLE;
		break;
	case CMD_READ_OUTP:
		push(k, 0x03); /* reset line high, A20 enabled */
		break;
	case CMD_RESET_CPU:
		COUNT(k, reset_count);
		if (k->reset)
			k->reset(k->reset_ctx);
		break;
	default:
		break;
	}
}

/* A byte for the keyboard (port 0x60 with no controller command pending):
 * answer like a standard MF2 keyboard that never has a key pressed. */
static void keyboard_byte(struct i8042 *k, uint8_t b)
{
	if (k->kbd_pending) {
		k->kbd_pending = 0;
		push(k, KBD_ACK);
		return;
	}
	push(k, KBD_ACK);
	switch (b) {
	case KBD_RESET:
		push(k, KBD_SELF_TEST_OK);
		break;
	case KBD_GET_ID:
		push(k, 0xab);
		push(k, 0x83);
		break;
	case KBD_SET_LEDS:
	case KBD_SET_RATE:
	case KBD_SCANCODE_SET:
		k->kbd_pending = b;
		break;
	default:
		break;
	}
}

static void data_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;
	k->pending = 0;
	switch (cmd) {
	case CMD_WRITE_CTR: {
		bool was_on = k->ctr & CTR_KBD_INT;
		k->ctr = v;
		if (!was_on && k->len)
			raise_irq(k); /* interrupts on with a byte waiting */
		break;
	}
	case CMD_WRITE_OUTP:
		if (!(v & 0x01) && k->reset) /* bit 0 low holds the CPU in reset */
			k->reset(k->reset_ctx);
		break;
	case CMD_WRITE_KBD_OUTBUF:
		push(k, v);
		break;
	case CMD_AUX_LOOP:
		push(k, (uint8_t)~v);
		break;
	case CMD_WRITE_AUX:
		break; /* nobody there */
	default:
		keyboard_byte(k, v);
		break;
	}
}

static void i8042_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct i8042 *k = ctx;
	uint8_t v = 0;
	pthread_mutex_lock(&k->lock);
	COUNT(k, read_count);
	if (offset == PORT_DATA) {
		if (!k->len)
			COUNT(k, missed_read_count);
		if (k->len) {
			v = k->buf[k->head];
			k->head = (k->head + 1) % I8042_BUF_SIZE;
			k->len--;
			if (k->len)
				raise_irq(k); /* the next byte is in the buffer now */
		}
	} else if (offset == PORT_CMD) {
		v = (k->len ? STS_OBF : 0) | STS_SYS | k->status_cmd;
	}
	pthread_mutex_unlock(&k->lock);
	memset(data, 0, len);
	data[0] = v;
}

static void i8042_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct i8042 *k = ctx;
	(void)len;
	/* The reset callback only records the request (it runs under our lock). */
	pthread_mutex_lock(&k->lock);
	COUNT(k, write_count);
	if (offset == PORT_DATA) {
		k->status_cmd = 0;
		data_write(k, data[0]);
	} else if (offset == PORT_CMD) {
		k->status_cmd = STS_CMD;
		controller_cmd(k, data[0]);
	}
	pthread_mutex_unlock(&k->lock);
}

/* Ctrl, Alt and Delete pressed, then released. With translation on (the
 * CTR bit Linux leaves set), the host side of a real controller sees
 * scancode set 1, and Linux's atkbd expects exactly that; without it, the
 * keyboard's own set 2 passes through. */
static const uint8_t cad_set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
static const uint8_t cad_set2[] = {0x14, 0x11, 0xe0, 0x71,
				   0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};

int i8042_ctrl_alt_del(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	bool xlate = k->ctr & CTR_XLATE;
	const uint8_t *seq = xlate ? cad_set1 : cad_set2;
	size_t n = xlate ? sizeof(cad_set1) : sizeof(cad_set2);
	int rc = -1;
	if (!(k->ctr & CTR_KBD_DISABLE) && I8042_BUF_SIZE - k->len >= n) {
		for (size_t i = 0; i < n; i++)
			push(k, seq[i]);
		rc = 0;
	}
	pthread_mutex_unlock(&k->lock);
	return rc;
}

const struct io_device_ops i8042_ops = {.read = i8042_read, .write = i8042_write};

json_t *i8042_save(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	uint8_t buf[I8042_BUF_SIZE];
	for (unsigned i = 0; i < k->len; i++)
		buf[i] = k->buf[(k->head + i) % I8042_BUF_SIZE];
	json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:o}", "ctr", k->ctr, "pending", k->pending,
			      "kbd_pending", k->kbd_pending, "status_cmd", k->status_cmd, "buf",
			      blob_json(buf, k->len));
	pthread_mutex_unlock(&k->lock);
	return j;
}

int i8042_restore(struct i8042 *k, json_t *j, ember_err *e)
{
	uint64_t ctr, pending, kbd_pending, status_cmd;
	uint8_t buf[I8042_BUF_SIZE];
	size_t n;
	if (!json_is_object(j))
		return err_set(e, "i8042: state is not an object");
	if (json_get_u64(j, "ctr", 0xff, &ctr, e) || json_get_u64(j, "pending", 0xff, &pending, e) ||
	    json_get_u64(j, "kbd_pending", 0xff, &kbd_pending, e) ||
	    json_get_u64(j, "status_cmd", 1, &status_cmd, e) ||
	    blob_get_var(j, "buf", buf, sizeof(buf), &n, e))
		return err_prefix(e, "i8042");
	pthread_mutex_lock(&k->lock);
	k->ctr = (uint8_t)ctr;
	k->pending = (uint8_t)pending;
	k->kbd_pending = (uint8_t)kbd_pending;
	k->status_cmd = (uint8_t)status_cmd;
	memcpy(k->buf, buf, n);
	k->head = 0;
	k->len = (unsigned)n;
	if (k->len)
		raise_irq(k);
	pthread_mutex_unlock(&k->lock);
	return 0;
}
