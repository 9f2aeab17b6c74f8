/* Running a built VM: the VMM thread's event loop, the console, and an
 * orderly end on guest reset, vCPU failure, SIGTERM or SIGINT. */
#include "vmm/vmm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "vmm/log.h"

void vmm_request_exit(struct vmm *m, int code, const char *why)
{
	if (atomic_flag_test_and_set(&m->exit_claimed))
		return;
	m->exit_code = code;
	snprintf(m->exit_why, sizeof(m->exit_why), "%s", why);
	atomic_store(&m->stop, true);
	uint64_t one = 1;
	ssize_t r = write(m->exit_fd, &one, sizeof(one));
	(void)r;
}

static void on_vcpu_exit(void *ctx, int code, const char *why)
{
	vmm_request_exit(ctx, code, why);
}

static void drain(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
}

static void on_exit_event(void *ctx, uint32_t events)
{
	struct vmm *m = ctx;
	(void)events;
	drain(m->exit_fd);
}

static void on_signal(void *ctx, uint32_t events)
{
	struct vmm *m = ctx;
	struct signalfd_siginfo si;
	(void)events;
	if (read(m->signal_fd, &si, sizeof(si)) != sizeof(si))
		return;
	char why[64];
	snprintf(why, sizeof(why), "received %s", strsignal((int)si.ssi_signo));
	vmm_request_exit(m, 0, why);
}

static void arm_console(struct vmm *m, bool on)
{
	if (m->console_in < 0 || m->console_in_armed == on)
		return;
	if (event_loop_modify(&m->loop, m->console_in, on ? EPOLLIN : 0) == 0)
		m->console_in_armed = on;
}

static void on_console_in(void *ctx, uint32_t events)
{
	struct vmm *m = ctx;
	uint8_t buf[SERIAL_FIFO_SIZE];
	size_t space = serial_rx_space(&m->serial);
	(void)events;
	if (space == 0) {
		/* The guest is not reading; wait for the FIFO to drain. */
		arm_console(m, false);
		return;
	}
	ssize_t n = read(m->console_in, buf, space);
	if (n > 0) {
		serial_enqueue(&m->serial, buf, (size_t)n);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		/* End of input: the guest just sees no more bytes. */
		event_loop_remove(&m->loop, m->console_in);
		m->console_in = -1;
	}
}

static void on_wake(void *ctx, uint32_t events)
{
	struct vmm *m = ctx;
	(void)events;
	drain(m->wake_fd);
	arm_console(m, true);
}

static void console_raw(struct vmm *m)
{
	if (m->console_in < 0 || !isatty(m->console_in) || tcgetattr(m->console_in, &m->saved_tty))
		return;
	struct termios raw = m->saved_tty;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST; /* keep "\n" -> "\r\n" for the host terminal */
	if (tcsetattr(m->console_in, TCSANOW, &raw) == 0) {
		m->tty_raw = true;
		m->tty_fd = m->console_in;
	}
}

static int setup_loop(struct vmm *m, ember_err *e)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	m->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->signal_fd < 0)
		return err_set(e, "signalfd: %s", strerror(errno));
	if (event_loop_init(&m->loop, e))
		return -1;
	if (event_loop_add(&m->loop, m->exit_fd, EPOLLIN, on_exit_event, m) ||
	    event_loop_add(&m->loop, m->signal_fd, EPOLLIN, on_signal, m) ||
	    event_loop_add(&m->loop, m->wake_fd, EPOLLIN, on_wake, m))
		return err_set(e, "epoll: %s", strerror(errno));
	if (m->console_in >= 0) {
		if (event_loop_add(&m->loop, m->console_in, EPOLLIN, on_console_in, m) == 0) {
			m->console_in_armed = true;
		} else {
			/* /dev/null and regular files cannot be polled: no input. */
			m->console_in = -1;
		}
	}
	return 0;
}

int vmm_run(struct vmm *m, ember_err *e)
{
	if (setup_loop(m, e))
		return -1;
	console_raw(m);
	m->env = (struct vcpu_env){
		.pio = &m->pio, .mmio = &m->mmio, .on_exit = on_vcpu_exit, .ctx = m, .stop = &m->stop,
	};
	boot_timer_start(&m->boot_timer);
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		if (vcpu_start(&m->vcpus[i], &m->env, e)) {
			vmm_request_exit(m, 1, e->msg);
			break;
		}
	}
	while (!atomic_load(&m->stop)) {
		if (event_loop_run_once(&m->loop, -1) < 0) {
			vmm_request_exit(m, 1, "epoll_wait failed");
			break;
		}
	}
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		vcpu_kick(&m->vcpus[i]);
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		vcpu_join(&m->vcpus[i]);
	if (m->exit_code)
		err_set(e, "%s", m->exit_why);
	else
		LOG_I("VM ended: %s", m->exit_why);
	return m->exit_code;
}

void vmm_destroy(struct vmm *m)
{
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		vcpu_kick(&m->vcpus[i]);
		vcpu_join(&m->vcpus[i]);
		vcpu_destroy(&m->vcpus[i]);
	}
	if (m->tty_raw)
		tcsetattr(m->tty_fd, TCSANOW, &m->saved_tty);
	m->tty_raw = false;
	if (m->loop.epfd > 0)
		event_loop_destroy(&m->loop);
	int fds[] = {m->serial_irq_fd, m->kbd_irq_fd, m->exit_fd, m->wake_fd, m->signal_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	m->serial_irq_fd = m->kbd_irq_fd = m->exit_fd = m->wake_fd = m->signal_fd = -1;
	serial_destroy(&m->serial);
	i8042_destroy(&m->i8042);
	vm_destroy(&m->vm);
}
