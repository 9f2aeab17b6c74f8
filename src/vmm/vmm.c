/* Running a built VM: its vCPUs, its own event loop (nested in the
 * controller's), the console, and an orderly end on guest reset or vCPU
 * failure. */
#include "vmm/vmm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

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
	if (event_loop_init(&m->loop, e))
		return -1;
	if (event_loop_add(&m->loop, m->exit_fd, EPOLLIN, on_exit_event, m) ||
	    event_loop_add(&m->loop, m->wake_fd, EPOLLIN, on_wake, m))
		return err_set(e, "epoll: %s", strerror(errno));
	if (virtio_devs_listen(&m->virtio, &m->loop, e))
		return -1;
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

int vmm_start(struct vmm *m, ember_err *e)
{
	if (setup_loop(m, e))
		return -1;
	console_raw(m);
	m->env = (struct vcpu_env){
		.pio = &m->pio, .mmio = &m->mmio, .on_exit = on_vcpu_exit, .ctx = m, .stop = &m->stop,
		.pause = &m->pause, .metrics = m->metrics ? &m->metrics->vcpu : NULL,
	};
	boot_timer_start(&m->boot_timer);
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		if (vcpu_start(&m->vcpus[i], &m->env, e)) {
			vmm_request_exit(m, 1, e->msg);
			return -1;
		}
	}
	return 0;
}

int vmm_event_fd(const struct vmm *m)
{
	return m->loop.epfd;
}

void vmm_dispatch(struct vmm *m)
{
	if (event_loop_run_once(&m->loop, 0) < 0)
		vmm_request_exit(m, 1, "epoll_wait failed");
}

bool vmm_ended(struct vmm *m)
{
	return atomic_load(&m->stop);
}

void vmm_pause(struct vmm *m)
{
	pthread_mutex_lock(&m->pause.lock);
	m->pause.requested = true;
	pthread_mutex_unlock(&m->pause.lock);
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		vcpu_kick(&m->vcpus[i]);
	pthread_mutex_lock(&m->pause.lock);
	while (m->pause.parked < m->nr_vcpus && !atomic_load(&m->stop))
		pthread_cond_wait(&m->pause.cond, &m->pause.lock);
	pthread_mutex_unlock(&m->pause.lock);
}

void vmm_resume(struct vmm *m)
{
	pthread_mutex_lock(&m->pause.lock);
	m->pause.requested = false;
	pthread_cond_broadcast(&m->pause.cond);
	pthread_mutex_unlock(&m->pause.lock);
}

/* Kicks every vCPU out of KVM_RUN and out of a pause; they see `stop`. */
static void stop_vcpus(struct vmm *m)
{
	atomic_store(&m->stop, true);
	pthread_mutex_lock(&m->pause.lock);
	pthread_cond_broadcast(&m->pause.cond);
	pthread_mutex_unlock(&m->pause.lock);
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		vcpu_kick(&m->vcpus[i]);
}

int vmm_finish(struct vmm *m, ember_err *e)
{
	stop_vcpus(m);
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		vcpu_join(&m->vcpus[i]);
	if (m->exit_code)
		err_set(e, "%s", m->exit_why);
	return m->exit_code;
}

void vmm_destroy(struct vmm *m)
{
	stop_vcpus(m);
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		vcpu_join(&m->vcpus[i]);
		vcpu_destroy(&m->vcpus[i]);
	}
	if (m->tty_raw)
		tcsetattr(m->tty_fd, TCSANOW, &m->saved_tty);
	m->tty_raw = false;
	if (m->loop.epfd > 0)
		event_loop_destroy(&m->loop);
	int fds[] = {m->serial_irq_fd, m->kbd_irq_fd, m->exit_fd, m->wake_fd, m->vmgenid_irq_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	m->serial_irq_fd = m->kbd_irq_fd = m->exit_fd = m->wake_fd = m->vmgenid_irq_fd = -1;
	virtio_devs_destroy(&m->virtio);
	serial_destroy(&m->serial);
	i8042_destroy(&m->i8042);
	pthread_cond_destroy(&m->pause.cond);
	pthread_mutex_destroy(&m->pause.lock);
	vm_destroy(&m->vm);
	if (m->uffd >= 0)
		close(m->uffd);
	m->uffd = -1;
}
