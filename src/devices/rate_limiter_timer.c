/* The timerfd that wakes a device when its rate limiter can make progress.
 * It is armed at the limiter's absolute CLOCK_MONOTONIC deadline, the clock
 * devices read now_ns from, so no time is lost between computing the wait
 * and arming. */
#include "devices/rate_limiter.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000u

uint64_t rate_limiter_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

int rate_limiter_timer_open(struct rate_limiter_timer *t, ember_err *e)
{
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0)
		return err_set(e, "rate limiter: timerfd_create: %s", strerror(errno));
	return 0;
}

void rate_limiter_timer_close(struct rate_limiter_timer *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

int rate_limiter_timer_arm(struct rate_limiter_timer *t, const struct rate_limiter *rl,
			   ember_err *e)
{
	struct itimerspec its = {{0, 0}, {0, 0}};
	uint64_t when = rate_limiter_deadline_ns(rl);
	if (when) {
		/* An all-zero value would disarm; a past one fires at once. */
		its.it_value.tv_sec = (time_t)(when / NS_PER_S);
		its.it_value.tv_nsec = (long)(when % NS_PER_S);
	}
	if (timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL))
		return err_set(e, "rate limiter: timerfd_settime: %s", strerror(errno));
	return 0;
}

int rate_limiter_timer_clear(struct rate_limiter_timer *t)
{
	uint64_t n;
	ssize_t r = read(t->fd, &n, sizeof(n));
	if (r == (ssize_t)sizeof(n))
		return n > INT32_MAX ? INT32_MAX : (int)n;
	if (r < 0 && errno == EAGAIN)
		return 0;
	return -1;
}
