/* The legacy devices, driven through their I/O ops as a guest would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/serial.h"

static uint8_t rd(const struct io_device_ops *ops, void *dev, uint64_t off)
{
	uint8_t v;
	ops->read(dev, off, &v, 1);
	return v;
}

static void wr(const struct io_device_ops *ops, void *dev, uint64_t off, uint8_t v)
{
	ops->write(dev, off, &v, 1);
}

/* Interrupts raised on an eventfd since the last call. */
static uint64_t irqs(int fd)
{
	uint64_t n = 0;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void serial_tx_and_thre_irq(void **state)
{
	(void)state;
	int out[2];
	assert_int_equal(pipe(out), 0);
	int irq = eventfd(0, EFD_NONBLOCK);
	struct serial s;
	serial_init(&s, out[1], irq);

	wr(&serial_ops, &s, 0, 'h');
	wr(&serial_ops, &s, 0, 'i');
	serial_flush_output(&s, 5000); /* a writer thread writes it out */
	char buf[8] = {0};
	assert_int_equal(read(out[0], buf, sizeof(buf)), 2);
	assert_string_equal(buf, "hi");
	assert_int_equal(irqs(irq), 0); /* interrupts not enabled yet */

	wr(&serial_ops, &s, 1, 0x02); /* IER: THR empty */
	assert_true(irqs(irq) > 0);
	assert_int_equal(rd(&serial_ops, &s, 2) & 0x0f, 0x02); /* IIR: THRE */
	assert_int_equal(rd(&serial_ops, &s, 2) & 0x0f, 0x01); /* acknowledged */
	assert_int_equal(rd(&serial_ops, &s, 5) & 0x60, 0x60); /* LSR: empty */

	serial_destroy(&s);
	close(out[0]);
	close(out[1]);
	close(irq);
}

static void serial_rx_fifo(void **state)
{
	(void)state;
	int irq = eventfd(0, EFD_NONBLOCK);
	struct serial s;
	serial_init(&s, -1, irq);
	wr(&serial_ops, &s, 1, 0x01); /* IER: data received */

	uint8_t big[100];
	memset(big, 'x', sizeof(big));
	big[0] = 'a';
	assert_int_equal(serial_enqueue(&s, big, sizeof(big)), SERIAL_FIFO_SIZE);
	assert_int_equal(serial_rx_space(&s), 0);
	assert_true(irqs(irq) > 0);
	assert_int_equal(rd(&serial_ops, &s, 2) & 0x0f, 0x04); /* IIR: data */
	assert_int_equal(rd(&serial_ops, &s, 5) & 1, 1);	   /* LSR: ready */
	assert_int_equal(rd(&serial_ops, &s, 0), 'a');
	for (int i = 1; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(rd(&serial_ops, &s, 0), 'x');
	assert_int_equal(rd(&serial_ops, &s, 5) & 1, 0);
	assert_int_equal(rd(&serial_ops, &s, 0), 0); /* empty FIFO reads 0 */
	serial_destroy(&s);
	close(irq);
}

static void serial_loopback_and_dlab(void **state)
{
	(void)state;
	struct serial s;
	serial_init(&s, -1, -1);
	wr(&serial_ops, &s, 4, 0x10 | 0x0a); /* MCR: loop, RTS, OUT2 */
	assert_int_equal(rd(&serial_ops, &s, 6) & 0xf0, 0x90); /* CTS + DCD */
	wr(&serial_ops, &s, 0, 0x5a);
	assert_int_equal(rd(&serial_ops, &s, 0), 0x5a); /* looped back */

	wr(&serial_ops, &s, 3, 0x80); /* DLAB */
	wr(&serial_ops, &s, 0, 0x01);
	wr(&serial_ops, &s, 1, 0x00);
	assert_int_equal(rd(&serial_ops, &s, 0), 0x01);
	wr(&serial_ops, &s, 3, 0x03);
	wr(&serial_ops, &s, 7, 0x77);
	assert_int_equal(rd(&serial_ops, &s, 7), 0x77);
	wr(&serial_ops, &s, 2, 0x01); /* FIFO on: IIR says 16550A */
	assert_int_equal(rd(&serial_ops, &s, 2) & 0xc0, 0xc0);
	serial_destroy(&s);
}

static int resets;
static void count_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static void i8042_probe_and_reset(void **state)
{
	(void)state;
	struct i8042 k;
	i8042_init(&k, -1, count_reset, NULL);
	resets = 0;

	wr(&i8042_ops, &k, 4, 0xaa); /* self test */
	assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 1);
	assert_int_equal(rd(&i8042_ops, &k, 0), 0x55);
	assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 0);

	wr(&i8042_ops, &k, 4, 0x60); /* write CTR */
	wr(&i8042_ops, &k, 0, 0x65);
	wr(&i8042_ops, &k, 4, 0x20); /* read CTR */
	assert_int_equal(rd(&i8042_ops, &k, 0), 0x65);

	wr(&i8042_ops, &k, 0, 0xf2); /* keyboard: get id */
	assert_int_equal(rd(&i8042_ops, &k, 0), 0xfa);
	assert_int_equal(rd(&i8042_ops, &k, 0), 0xab);
	assert_int_equal(rd(&i8042_ops, &k, 0), 0x83);

	wr(&i8042_ops, &k, 4, 0xa9); /* AUX test fails: no mouse */
	uint8_t aux = rd(&i8042_ops, &k, 0);
	assert_true(aux != 0 && aux != 0xfa && aux != 0xff);

	/* Overflow is bounded. */
	for (int i = 0; i < 100; i++)
		wr(&i8042_ops, &k, 4, 0x20);
	for (int i = 0; i < I8042_BUF_SIZE; i++)
		assert_int_equal(rd(&i8042_ops, &k, 0), 0x65);
	assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 0);

	assert_int_equal(resets, 0);
	wr(&i8042_ops, &k, 4, 0xfe);
	assert_int_equal(resets, 1);
	wr(&i8042_ops, &k, 4, 0xd1); /* write output port with reset low */
	wr(&i8042_ops, &k, 0, 0x02);
	assert_int_equal(resets, 2);
	i8042_destroy(&k);
}

static void i8042_ctrl_alt_del_scancodes(void **state)
{
	(void)state;
	struct i8042 k;
	int fds[2];
	assert_int_equal(pipe(fds), 0); /* stands in for the IRQ 1 eventfd */
	i8042_init(&k, fds[1], count_reset, NULL);
	resets = 0;

	/* Translation on (Linux's setting): scancode set 1, one IRQ a byte. */
	assert_int_equal(i8042_ctrl_alt_del(&k), 0);
	const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
	for (size_t i = 0; i < sizeof(set1); i++) {
		assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 1);
		assert_int_equal(rd(&i8042_ops, &k, 0), set1[i]);
	}
	assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 0);
	uint64_t irqs[16];
	assert_int_equal(read(fds[0], irqs, sizeof(irqs)), sizeof(set1) * sizeof(uint64_t));

	/* Translation off: the keyboard's set 2, with F0 break prefixes. */
	wr(&i8042_ops, &k, 4, 0x60);
	wr(&i8042_ops, &k, 0, 0x05);
	assert_int_equal(i8042_ctrl_alt_del(&k), 0);
	const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
	for (size_t i = 0; i < sizeof(set2); i++)
		assert_int_equal(rd(&i8042_ops, &k, 0), set2[i]);

	/* No room for the whole sequence, or keyboard disabled: refused. */
	for (int i = 0; i < 8; i++)
		wr(&i8042_ops, &k, 4, 0x20);
	assert_int_equal(i8042_ctrl_alt_del(&k), -1);
	for (int i = 0; i < 8; i++)
		rd(&i8042_ops, &k, 0);
	wr(&i8042_ops, &k, 4, 0xad); /* disable keyboard */
	assert_int_equal(i8042_ctrl_alt_del(&k), -1);
	assert_int_equal(rd(&i8042_ops, &k, 4) & 1, 0);
	assert_int_equal(resets, 0);
	i8042_destroy(&k);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(serial_tx_and_thre_irq),
		cmocka_unit_test(serial_rx_fifo),
		cmocka_unit_test(serial_loopback_and_dlab),
		cmocka_unit_test(i8042_probe_and_reset),
		cmocka_unit_test(i8042_ctrl_alt_del_scancodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
