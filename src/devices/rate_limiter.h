/* Firecracker's token-bucket rate limiter, shared by the virtio devices.
 *
 * A limiter has two independent buckets, bandwidth (bytes) and ops
 * (requests). Each holds up to `size` tokens and refills at size tokens per
 * refill_time ms, plus a one-time burst spent before the bucket itself and
 * never refilled. A request larger than the bucket is let through once the
 * bucket is not in debt and blocks the limiter until the excess has refilled.
 * A bucket with size 0 or refill_time 0 is disabled: it lets everything
 * through. docs/rate-limiter.md has the details.
 *
 * The logic is pure: time comes in as now_ns (CLOCK_MONOTONIC nanoseconds in
 * devices, a fake clock in tests). The math is exact integer arithmetic.
 *
 * Device protocol: consume before doing a request's I/O; when it fails, keep
 * the request for later, arm the timer (rate_limiter_timer_arm) and stop the
 * queue. When the timer fd is readable, clear it and call
 * rate_limiter_timer_fired; if that returns true, process the queue again,
 * else arm the timer again. After rate_limiter_update, arm the timer again
 * (it disarms when the limiter is no longer blocked) and, if the update
 * returned true, process the queue. */
#ifndef EMBER_RATE_LIMITER_H
#define EMBER_RATE_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

/* refill_time_ms * 1e6 must fit in 64 bits of nanoseconds. */
#define RATE_LIMITER_MAX_REFILL_MS (UINT64_MAX / 1000000u)

/* Firecracker's TokenBucket object. size == 0 or refill_time_ms == 0 means
 * the bucket is disabled. */
struct token_bucket_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};

/* Firecracker's RateLimiter object, shared by the config-file and API
 * parsers. A has_X false means the field was absent (or null): for a new
 * limiter the bucket is disabled, for an update (PATCH) it is left as is. */
struct rate_limiter_config {
	bool has_bandwidth, has_ops;
	struct token_bucket_config bandwidth, ops;
};

bool token_bucket_config_enabled(const struct token_bucket_config *c);

/* Parses a RateLimiter object strictly (unknown fields, wrong types,
 * negative values and refill times past RATE_LIMITER_MAX_REFILL_MS are
 * errors naming the field). JSON null parses as an empty config, as in
 * Firecracker, so a device parser can pass its field through. Messages start
 * with "rate_limiter: "; the _named variant uses `name` instead, e.g.
 * "rx_rate_limiter". */
int rate_limiter_config_parse(json_t *j, struct rate_limiter_config *out, ember_err *e);
int rate_limiter_config_parse_named(json_t *j, const char *name, struct rate_limiter_config *out,
				    ember_err *e);
/* GET /vm/config view in Firecracker's shape: {"bandwidth": B, "ops": B}
 * with B = {"size", "one_time_burst", "refill_time"} or null for a disabled
 * bucket, one_time_burst null when 0, and JSON null for a limiter without an
 * enabled bucket. New reference. */
json_t *rate_limiter_config_json(const struct rate_limiter_config *c);
/* The PATCH rule on plain configs: each bucket present in `patch` replaces
 * the one in `base`; absent ones stay. */
void rate_limiter_config_apply_update(struct rate_limiter_config *base,
				      const struct rate_limiter_config *patch);

enum rate_limiter_token { RL_BANDWIDTH = 0, RL_OPS = 1 };

struct token_bucket {
	/* Configuration; size == 0 means disabled. */
	uint64_t size, initial_burst, refill_time_ms, refill_ns;
	/* Refill rate as the exact fraction rate_tokens / rate_ns tokens per
	 * ns: size / refill_ns reduced by their gcd. */
	uint64_t rate_tokens, rate_ns;
	/* State. */
	uint64_t burst;	 /* one-time burst left */
	uint64_t budget; /* tokens in the bucket, at most size */
	/* Time up to which refill is accounted; after an oversize request it
	 * lies in the future (the bucket is in debt until then). */
	uint64_t last_ns;
	/* Refill carried over from last_ns, in units of 1/rate_ns token: the
	 * fraction of a token already earned, so no time is lost to rounding. */
	uint64_t frac;
};

struct rate_limiter {
	struct token_bucket bucket[2]; /* indexed by enum rate_limiter_token */
	/* A failed consume blocks every consume until unblock_ns (Firecracker
	 * blocks the whole limiter until its timer fires). */
	bool blocked;
	uint64_t unblock_ns;
};

void rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *c,
		       uint64_t now_ns);
/* False when both buckets are disabled: consume always succeeds. */
bool rate_limiter_enabled(const struct rate_limiter *rl);
/* Takes `tokens` of one kind; false (nothing taken, limiter blocked) when
 * the bucket lacks them. A disabled bucket always succeeds, unless the
 * limiter is blocked. */
bool rate_limiter_consume(struct rate_limiter *rl, uint64_t tokens, enum rate_limiter_token t,
			  uint64_t now_ns);
/* Takes bytes and ops together, all or nothing, so a device need not put
 * back the ops token when the bandwidth bucket refuses a request. */
bool rate_limiter_consume_both(struct rate_limiter *rl, uint64_t bytes, uint64_t ops,
			       uint64_t now_ns);
/* Puts tokens back, e.g. for a request that failed after consume (what
 * Firecracker calls manual_replenish): into the one-time burst while some
 * is left, else the bucket, never above their configured sizes. */
void rate_limiter_replenish(struct rate_limiter *rl, uint64_t tokens, enum rate_limiter_token t,
			    uint64_t now_ns);
bool rate_limiter_is_blocked(const struct rate_limiter *rl);
/* CLOCK_MONOTONIC time at which a blocked limiter can make progress; 0 when
 * not blocked. */
uint64_t rate_limiter_deadline_ns(const struct rate_limiter *rl);
/* Nanoseconds from now_ns to that time: 0 when not blocked, at least 1 when
 * blocked (a zero timerfd value would disarm the timer). */
uint64_t rate_limiter_wait_ns(const struct rate_limiter *rl, uint64_t now_ns);
/* The timer went off: unblocks and returns true once the deadline has
 * passed (or the limiter was not blocked); false if it fired early, in which
 * case the timer must be armed again. */
bool rate_limiter_timer_fired(struct rate_limiter *rl, uint64_t now_ns);
/* PATCH: each bucket present in `c` is replaced by a new, full bucket
 * (disabled if its size or refill_time is 0); absent buckets keep their
 * state. Returns true if this unblocked the limiter, so the device should
 * process its queue. */
bool rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *c,
			 uint64_t now_ns);
/* The configuration in force, for GET /vm/config: enabled buckets only, with
 * their configured one_time_burst. */
void rate_limiter_get_config(const struct rate_limiter *rl, struct rate_limiter_config *out);

/* The timerfd a device adds to its epoll set (EPOLLIN). */
struct rate_limiter_timer {
	int fd;
};

uint64_t rate_limiter_now_ns(void); /* CLOCK_MONOTONIC */
int rate_limiter_timer_open(struct rate_limiter_timer *t, ember_err *e);
void rate_limiter_timer_close(struct rate_limiter_timer *t);
/* Arms the timer for the limiter's deadline, or disarms it when the limiter
 * is not blocked. */
int rate_limiter_timer_arm(struct rate_limiter_timer *t, const struct rate_limiter *rl,
			   ember_err *e);
/* Reads the fd so it stops being readable; returns the number of
 * expirations (0 if none), -1 on error. */
int rate_limiter_timer_clear(struct rate_limiter_timer *t);

#endif
