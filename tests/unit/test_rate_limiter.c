#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <poll.h>
#include <string.h>

#include "devices/rate_limiter.h"

#define MS 1000000ull
/* The fake clock starts away from 0 so that nothing relies on it. */
#define T0 (1000 * MS)

static struct rate_limiter_config bw(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
	return (struct rate_limiter_config){
		.has_bandwidth = true,
		.bandwidth = {.size = size, .one_time_burst = burst, .refill_time_ms = refill_ms},
	};
}

static struct rate_limiter_config ops(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
	return (struct rate_limiter_config){
		.has_ops = true,
		.ops = {.size = size, .one_time_burst = burst, .refill_time_ms = refill_ms},
	};
}

/* Field by field: structs compared with memcmp would compare padding. */
static void assert_config_equal(const struct rate_limiter_config *a,
				const struct rate_limiter_config *b)
{
	assert_int_equal(a->has_bandwidth, b->has_bandwidth);
	assert_int_equal(a->has_ops, b->has_ops);
	const struct token_bucket_config *x[2] = {&a->bandwidth, &a->ops};
	const struct token_bucket_config *y[2] = {&b->bandwidth, &b->ops};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(x[i]->size, y[i]->size);
		assert_int_equal(x[i]->one_time_burst, y[i]->one_time_burst);
		assert_int_equal(x[i]->refill_time_ms, y[i]->refill_time_ms);
	}
}

static const struct token_bucket *bucket(const struct rate_limiter *rl, enum rate_limiter_token t)
{
	return &rl->bucket[t];
}

static void refill_over_time(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(1000, 0, 1000); /* 1 byte per ms */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_enabled(&rl));
	assert_false(rate_limiter_is_blocked(&rl));
	assert_int_equal(rate_limiter_wait_ns(&rl, T0), 0);
	assert_int_equal(rate_limiter_deadline_ns(&rl), 0);

	assert_true(rate_limiter_consume(&rl, 1000, RL_BANDWIDTH, T0));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_is_blocked(&rl));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + MS);
	assert_int_equal(rate_limiter_wait_ns(&rl, T0), MS);
	/* Blocked means blocked, whatever is asked for. */
	assert_false(rate_limiter_consume(&rl, 0, RL_OPS, T0 + MS / 2));
	assert_false(rate_limiter_timer_fired(&rl, T0 + MS - 1));
	assert_true(rate_limiter_timer_fired(&rl, T0 + MS));
	assert_false(rate_limiter_is_blocked(&rl));
	assert_true(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + MS));

	/* A failed request waits exactly for its own tokens. */
	assert_false(rate_limiter_consume(&rl, 500, RL_BANDWIDTH, T0 + MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 501 * MS);
	/* The block ends by itself once its time has come. */
	assert_true(rate_limiter_consume(&rl, 500, RL_BANDWIDTH, T0 + 501 * MS));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 0);

	/* Refill stops at size: idle time is not banked. */
	assert_true(rate_limiter_consume(&rl, 1000, RL_BANDWIDTH, T0 + 60000 * MS));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 60000 * MS));
	/* Nor is time spent full: 100 ms after a full bucket, 100 bytes. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 500, RL_BANDWIDTH, T0 + 5000 * MS));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 500);
	assert_true(rate_limiter_consume(&rl, 600, RL_BANDWIDTH, T0 + 5100 * MS));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 0);
}

static void refill_is_exact(void **state)
{
	(void)state;
	struct rate_limiter rl;
	/* 3 ops per 10 ms: one every 3.33... ms, which no ns count is. */
	struct rate_limiter_config c = ops(3, 0, 10);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 3, RL_OPS, T0));
	assert_false(rate_limiter_consume(&rl, 1, RL_OPS, T0));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 3333334);
	assert_false(rate_limiter_consume(&rl, 1, RL_OPS, T0 + 3333333));
	uint64_t now = T0 + 3333334;
	assert_true(rate_limiter_consume(&rl, 1, RL_OPS, now));
	assert_false(rate_limiter_consume(&rl, 1, RL_OPS, now));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 6666667);
	/* Take one op at each deadline for 3000 ops: rounding must not drift,
	 * so the 3003rd op is taken at exactly T0 + 10 s. */
	for (int i = 1; i < 3000; i++) {
		now = rate_limiter_deadline_ns(&rl);
		assert_true(rate_limiter_consume(&rl, 1, RL_OPS, now));
		assert_false(rate_limiter_consume(&rl, 1, RL_OPS, now));
	}
	assert_int_equal(now, T0 + 10000 * MS);

	/* Polling often loses nothing either: 1 ns steps over 10 ms. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 3, RL_OPS, T0));
	int got = 0;
	for (uint64_t t = T0; t < T0 + 10 * MS + 997; t += 997)
		if (rate_limiter_consume(&rl, 1, RL_OPS, t))
			got++;
	assert_int_equal(got, 3);
}

static void one_time_burst(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(100, 50, 1000);
	rate_limiter_init(&rl, &c, T0);
	/* The burst goes first... */
	assert_true(rate_limiter_consume(&rl, 40, RL_BANDWIDTH, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 10);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 100);
	/* ...tokens put back go to it while it lasts, up to its size... */
	rate_limiter_replenish(&rl, 30, RL_BANDWIDTH, T0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 40);
	rate_limiter_replenish(&rl, 30, RL_BANDWIDTH, T0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 50);
	/* ...a request larger than what is left of it takes the rest from the
	 * bucket... */
	assert_true(rate_limiter_consume(&rl, 120, RL_BANDWIDTH, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 30);
	/* ...and it never comes back. */
	assert_true(rate_limiter_consume(&rl, 30, RL_BANDWIDTH, T0 + 3600000 * MS));
	assert_true(rate_limiter_consume(&rl, 70, RL_BANDWIDTH, T0 + 3600000 * MS));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 3600000 * MS));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 0);

	/* A burst larger than the bucket lets a larger first request through
	 * without blocking. */
	c = bw(100, 1000, 1000);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 1100, RL_BANDWIDTH, T0));
	assert_false(rate_limiter_is_blocked(&rl));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0));
}

static void oversize_requests(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(100, 0, 100); /* 1 byte per ms */
	rate_limiter_init(&rl, &c, T0);
	/* Let through, then blocked until the excess has been earned. */
	assert_true(rate_limiter_consume(&rl, 250, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_is_blocked(&rl));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 150 * MS);
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 100 * MS));
	assert_false(rate_limiter_timer_fired(&rl, T0 + 149 * MS));
	assert_true(rate_limiter_timer_fired(&rl, T0 + 150 * MS));
	/* The debt is paid, the bucket empty: not refilled by the wait. */
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 150 * MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 151 * MS);

	/* Back-to-back oversize requests run at the configured rate (one
	 * bucketful up front, then 1 byte per ms), not faster. */
	rate_limiter_init(&rl, &c, T0);
	uint64_t now = T0;
	for (int i = 1; i <= 10; i++) {
		assert_true(rate_limiter_consume(&rl, 200, RL_BANDWIDTH, now));
		now = rate_limiter_deadline_ns(&rl);
		assert_int_equal(now, T0 + (200 * (uint64_t)i - 100) * MS);
	}

	/* While in debt, even an oversize request waits for the debt to be
	 * paid, and a normal one for its tokens on top. An unrelated update
	 * unblocks the limiter, but the bucket is still in debt. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 250, RL_BANDWIDTH, T0));
	struct rate_limiter_config o = ops(10, 0, 10);
	assert_true(rate_limiter_update(&rl, &o, T0 + 10 * MS));
	assert_false(rate_limiter_consume(&rl, 250, RL_BANDWIDTH, T0 + 10 * MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 150 * MS);
	assert_true(rate_limiter_update(&rl, &o, T0 + 10 * MS));
	assert_false(rate_limiter_consume(&rl, 50, RL_BANDWIDTH, T0 + 10 * MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 200 * MS);
	assert_true(rate_limiter_consume(&rl, 50, RL_BANDWIDTH, T0 + 200 * MS));
}

static void replenish_pays_debt(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(100, 0, 100);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 300, RL_BANDWIDTH, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->last_ns, T0 + 200 * MS);
	rate_limiter_replenish(&rl, 100, RL_BANDWIDTH, T0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->last_ns, T0 + 100 * MS);
	/* The limiter's block is not shortened, but the bucket earned 100
	 * bytes meanwhile. */
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 200 * MS);
	assert_true(rate_limiter_consume(&rl, 100, RL_BANDWIDTH, T0 + 200 * MS));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 200 * MS));

	/* More than the debt: the rest goes to the bucket. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 300, RL_BANDWIDTH, T0));
	rate_limiter_replenish(&rl, 250, RL_BANDWIDTH, T0 + 50 * MS);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->last_ns, T0 + 50 * MS);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 100);

	/* Putting back more than fits fills the bucket, no more. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 60, RL_BANDWIDTH, T0));
	rate_limiter_replenish(&rl, 40, RL_BANDWIDTH, T0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 80);
	rate_limiter_replenish(&rl, UINT64_MAX, RL_BANDWIDTH, T0);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 100);
	/* Disabled buckets and bad types are ignored. */
	rate_limiter_replenish(&rl, 5, RL_OPS, T0);
	rate_limiter_replenish(&rl, 5, (enum rate_limiter_token)7, T0);
}

static void ops_and_bandwidth(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(1000, 0, 1000); /* 1 byte per ms */
	c.has_ops = true;
	c.ops = (struct token_bucket_config){.size = 10, .refill_time_ms = 1000}; /* 1 op / 100 ms */
	rate_limiter_init(&rl, &c, T0);
	for (int i = 0; i < 10; i++)
		assert_true(rate_limiter_consume_both(&rl, 50, 1, T0));
	/* Out of ops: all or nothing, the bytes stay in their bucket. */
	assert_false(rate_limiter_consume_both(&rl, 50, 1, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 500);
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 100 * MS);
	/* The block covers the bandwidth bucket too (as in Firecracker). */
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, T0 + 50 * MS));
	assert_true(rate_limiter_consume_both(&rl, 50, 1, T0 + 100 * MS));
	/* Both short: wait for the later of the two. At T0+200ms: 650 bytes,
	 * 1 op; 800 bytes need 150 ms more. */
	assert_false(rate_limiter_consume_both(&rl, 800, 1, T0 + 200 * MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 350 * MS);
	assert_true(rate_limiter_consume_both(&rl, 800, 1, T0 + 350 * MS));

	/* Firecracker's pattern with single consumes: take the op, fail on
	 * bytes, put the op back. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 1000, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_consume(&rl, 1, RL_OPS, T0));
	assert_false(rate_limiter_consume(&rl, 10, RL_BANDWIDTH, T0));
	rate_limiter_replenish(&rl, 1, RL_OPS, T0);
	assert_int_equal(bucket(&rl, RL_OPS)->budget, 10);
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 10 * MS);

	/* An oversize request on one bucket and a short one on the other:
	 * nothing is taken until the short one can be served. */
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 10, RL_OPS, T0));
	assert_false(rate_limiter_consume_both(&rl, 5000, 1, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 1000);
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 100 * MS);
	assert_true(rate_limiter_consume_both(&rl, 5000, 1, T0 + 100 * MS));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 4100 * MS);
}

static void disabled_buckets(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config none = {0};
	rate_limiter_init(&rl, &none, T0);
	assert_false(rate_limiter_enabled(&rl));
	assert_true(rate_limiter_consume_both(&rl, UINT64_MAX, UINT64_MAX, T0));
	assert_false(rate_limiter_is_blocked(&rl));

	/* size 0 or refill_time 0 disables a bucket. */
	struct rate_limiter_config c = bw(0, 10, 1000);
	c.has_ops = true;
	c.ops = (struct token_bucket_config){.size = 10, .refill_time_ms = 0};
	rate_limiter_init(&rl, &c, T0);
	assert_false(rate_limiter_enabled(&rl));
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_OPS, T0));

	/* One bucket on, the other off. */
	c = ops(1, 0, 1000);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_enabled(&rl));
	for (int i = 0; i < 100; i++)
		assert_true(rate_limiter_consume(&rl, 1ull << 40, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_consume(&rl, 1, RL_OPS, T0));
	assert_false(rate_limiter_consume(&rl, 1, RL_OPS, T0));

	struct rate_limiter_config got;
	rate_limiter_get_config(&rl, &got);
	assert_false(got.has_bandwidth);
	assert_true(got.has_ops);
	assert_int_equal(got.ops.size, 1);
}

static void update_mid_flight(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(100, 0, 1000);
	c.has_ops = true;
	c.ops = (struct token_bucket_config){.size = 5, .one_time_burst = 2, .refill_time_ms = 100};
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume_both(&rl, 100, 3, T0));
	assert_false(rate_limiter_consume(&rl, 50, RL_BANDWIDTH, T0));
	assert_int_equal(rate_limiter_deadline_ns(&rl), T0 + 500 * MS);

	/* An update with nothing in it changes nothing, block included. */
	struct rate_limiter_config empty = {0};
	assert_false(rate_limiter_update(&rl, &empty, T0 + MS));
	assert_true(rate_limiter_is_blocked(&rl));

	/* A new bandwidth bucket starts full and unblocks; ops keeps its
	 * state (burst spent, 4 left). */
	struct rate_limiter_config u = bw(1000, 7, 1000);
	assert_true(rate_limiter_update(&rl, &u, T0 + MS));
	assert_false(rate_limiter_is_blocked(&rl));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 1000);
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->burst, 7);
	assert_int_equal(bucket(&rl, RL_OPS)->burst, 0);
	assert_int_equal(bucket(&rl, RL_OPS)->budget, 4);
	assert_true(rate_limiter_consume(&rl, 57, RL_BANDWIDTH, T0 + MS));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 950);
	/* Not blocked: an update says so. */
	assert_false(rate_limiter_update(&rl, &u, T0 + MS));

	struct rate_limiter_config got;
	rate_limiter_get_config(&rl, &got);
	assert_true(got.has_bandwidth && got.has_ops);
	assert_int_equal(got.bandwidth.size, 1000);
	assert_int_equal(got.bandwidth.one_time_burst, 7);
	assert_int_equal(got.ops.one_time_burst, 2);
	assert_int_equal(got.ops.refill_time_ms, 100);

	/* size 0 in an update disables the bucket. */
	struct rate_limiter_config off = ops(0, 0, 0);
	rate_limiter_update(&rl, &off, T0 + MS);
	rate_limiter_get_config(&rl, &got);
	assert_true(got.has_bandwidth);
	assert_false(got.has_ops);
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_OPS, T0 + MS));

	/* The same rule on plain configs. */
	struct rate_limiter_config base = c;
	rate_limiter_config_apply_update(&base, &empty);
	assert_config_equal(&base, &c);
	rate_limiter_config_apply_update(&base, &u);
	assert_true(base.has_bandwidth);
	assert_int_equal(base.bandwidth.size, 1000);
	assert_int_equal(base.ops.size, 5);
	rate_limiter_config_apply_update(&base, &off);
	assert_false(base.has_ops);
	assert_true(base.has_bandwidth);
}

static void overflow_edges(void **state)
{
	(void)state;
	struct rate_limiter rl;
	/* 2^63 tokens per ms. */
	struct rate_limiter_config c = bw(1ull << 63, 1ull << 63, 1);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, T0));
	assert_int_equal(bucket(&rl, RL_BANDWIDTH)->budget, 1);
	assert_false(rate_limiter_consume(&rl, 1ull << 62, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_consume(&rl, 1ull << 62, RL_BANDWIDTH, T0 + MS / 2));

	/* The largest bucket and refill time. */
	c = bw(UINT64_MAX, UINT64_MAX, RATE_LIMITER_MAX_REFILL_MS);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, T0));
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, T0));
	assert_false(rate_limiter_consume(&rl, UINT64_MAX / 2, RL_BANDWIDTH, T0 + 1000 * MS));
	uint64_t d = rate_limiter_deadline_ns(&rl);
	/* Half the refill time, give or take the rounding of a ns. */
	uint64_t half = T0 + RATE_LIMITER_MAX_REFILL_MS * MS / 2;
	assert_true(d >= half - 1 && d <= half + 1);
	assert_false(rate_limiter_consume(&rl, UINT64_MAX / 2, RL_BANDWIDTH, d - 1));
	assert_true(rate_limiter_consume(&rl, UINT64_MAX / 2, RL_BANDWIDTH, d));
	/* A wait past the end of the clock saturates. */
	assert_false(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, d));
	assert_int_equal(rate_limiter_deadline_ns(&rl), UINT64_MAX);
	assert_false(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, UINT64_MAX - 1));

	/* A debt too long for the clock saturates: blocked for good. */
	c = bw(1, 0, RATE_LIMITER_MAX_REFILL_MS);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, T0));
	assert_int_equal(rate_limiter_deadline_ns(&rl), UINT64_MAX);
	assert_false(rate_limiter_timer_fired(&rl, UINT64_MAX - 1));
	rate_limiter_replenish(&rl, UINT64_MAX, RL_BANDWIDTH, T0);

	/* A clock near its end. */
	uint64_t end = UINT64_MAX - 10;
	c = bw(10, 0, 1);
	rate_limiter_init(&rl, &c, end);
	assert_true(rate_limiter_consume(&rl, 10, RL_BANDWIDTH, end));
	assert_false(rate_limiter_consume(&rl, 5, RL_BANDWIDTH, end));
	assert_int_equal(rate_limiter_deadline_ns(&rl), UINT64_MAX);
	assert_int_equal(rate_limiter_wait_ns(&rl, end), 10);
	assert_int_equal(rate_limiter_wait_ns(&rl, UINT64_MAX), 1);
	rate_limiter_init(&rl, &c, end);
	assert_true(rate_limiter_consume(&rl, 1000, RL_BANDWIDTH, end));
	assert_int_equal(rate_limiter_deadline_ns(&rl), UINT64_MAX);

	/* A refill time past the bound (only possible from C) saturates. */
	c = bw(5, 0, UINT64_MAX);
	rate_limiter_init(&rl, &c, T0);
	assert_true(rate_limiter_consume(&rl, 5, RL_BANDWIDTH, T0));
	assert_false(rate_limiter_consume(&rl, 5, RL_BANDWIDTH, T0 + 3600000 * MS));
}

/* Random requests at random times: the tokens handed out never exceed the
 * burst, one bucketful, and what the refill rate earns up to the end of any
 * debt. */
static void never_above_rate(void **state)
{
	(void)state;
	uint64_t seed = 12345;
	for (int round = 0; round < 50; round++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t size = 1 + (seed >> 33) % 1000, refill_ms = 1 + (seed >> 17) % 50;
		uint64_t burst = (seed >> 45) % 3 ? 0 : size / 2;
		struct rate_limiter_config c = bw(size, burst, refill_ms);
		struct rate_limiter rl;
		rate_limiter_init(&rl, &c, T0);
		uint64_t now = T0, taken = 0;
		for (int i = 0; i < 2000; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t want = 1 + (seed >> 30) % (size * 3 / 2 + 1);
			if (rate_limiter_is_blocked(&rl) && (seed >> 20) % 2)
				now = rate_limiter_deadline_ns(&rl);
			else
				now += (seed >> 40) % (refill_ms * MS / 4 + 1);
			if (rate_limiter_consume(&rl, want, RL_BANDWIDTH, now))
				taken += want;
			const struct token_bucket *b = bucket(&rl, RL_BANDWIDTH);
			assert_true(b->budget <= size);
			uint64_t until = b->last_ns > now ? b->last_ns : now;
			unsigned __int128 earned =
				(unsigned __int128)(until - T0) * size / (refill_ms * MS);
			assert_true((unsigned __int128)taken <= burst + size + earned);
		}
	}
}

static int parse(const char *text, struct rate_limiter_config *c, ember_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	if (!j)
		fail_msg("bad test JSON %s: %s", text, je.text);
	int rc = rate_limiter_config_parse(j, c, e);
	json_decref(j);
	return rc;
}

static void parse_good(void **state)
{
	(void)state;
	struct rate_limiter_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"bandwidth\": {\"size\": 1000, \"one_time_burst\": 10,"
			       " \"refill_time\": 100}, \"ops\": {\"size\": 5, \"refill_time\": 1000}}",
			       &c, &e), 0);
	assert_true(c.has_bandwidth && c.has_ops);
	assert_int_equal(c.bandwidth.size, 1000);
	assert_int_equal(c.bandwidth.one_time_burst, 10);
	assert_int_equal(c.bandwidth.refill_time_ms, 100);
	assert_int_equal(c.ops.size, 5);
	assert_int_equal(c.ops.one_time_burst, 0);
	assert_int_equal(c.ops.refill_time_ms, 1000);

	/* Firecracker accepts null for every optional field. */
	assert_int_equal(parse("{\"bandwidth\": null, \"ops\": {\"size\": 0, \"one_time_burst\": null,"
			       " \"refill_time\": 0}}", &c, &e), 0);
	assert_false(c.has_bandwidth);
	assert_true(c.has_ops);
	assert_false(token_bucket_config_enabled(&c.ops));
	assert_int_equal(parse("{}", &c, &e), 0);
	assert_false(c.has_bandwidth || c.has_ops);
	assert_int_equal(parse("null", &c, &e), 0);
	assert_false(c.has_bandwidth || c.has_ops);
	assert_int_equal(rate_limiter_config_parse(NULL, &c, &e), 0);

	/* Bounds: int64 sizes, refill times whose ns fit 64 bits. */
	assert_int_equal(parse("{\"bandwidth\": {\"size\": 9223372036854775807, \"one_time_burst\":"
			       " 9223372036854775807, \"refill_time\": 18446744073709}}", &c, &e), 0);
	assert_int_equal(c.bandwidth.size, INT64_MAX);
	assert_int_equal(c.bandwidth.refill_time_ms, RATE_LIMITER_MAX_REFILL_MS);
}

static void expect_error(const char *text, const char *msg)
{
	struct rate_limiter_config c = bw(1, 2, 3), before = c;
	ember_err e = {{0}};
	assert_int_equal(parse(text, &c, &e), -1);
	if (strcmp(e.msg, msg))
		fail_msg("for %s: error \"%s\", expected \"%s\"", text, e.msg, msg);
	/* On error the output is untouched. */
	assert_config_equal(&c, &before);
}

static void parse_bad(void **state)
{
	(void)state;
	expect_error("[]", "rate_limiter: expected an object, got array");
	expect_error("7", "rate_limiter: expected an object, got integer");
	expect_error("{\"bogus\": 1}", "rate_limiter: unknown field \"bogus\"");
	expect_error("{\"bandwidth\": {\"size\": 1, \"refill_time\": 1, \"rate\": 2}}",
		     "rate_limiter: bandwidth: unknown field \"rate\"");
	expect_error("{\"bandwidth\": {\"size\": \"x\", \"refill_time\": 1}}",
		     "rate_limiter: bandwidth: size: expected integer, got string");
	expect_error("{\"ops\": {\"size\": 1.5, \"refill_time\": 1}}",
		     "rate_limiter: ops: size: expected integer, got number");
	expect_error("{\"ops\": {\"size\": 1, \"refill_time\": true}}",
		     "rate_limiter: ops: refill_time: expected integer, got boolean");
	expect_error("{\"ops\": {\"size\": null, \"refill_time\": 1}}",
		     "rate_limiter: ops: size: expected integer, got null");
	expect_error("{\"ops\": {\"size\": 1, \"refill_time\": 1, \"one_time_burst\": [1]}}",
		     "rate_limiter: ops: one_time_burst: expected integer, got array");
	expect_error("{\"ops\": {\"size\": -1, \"refill_time\": 1}}",
		     "rate_limiter: ops: size: must not be negative (got -1)");
	expect_error("{\"bandwidth\": {\"size\": 1, \"refill_time\": -5}}",
		     "rate_limiter: bandwidth: refill_time: must not be negative (got -5)");
	expect_error("{\"bandwidth\": {\"size\": 1, \"refill_time\": 1, \"one_time_burst\": -1}}",
		     "rate_limiter: bandwidth: one_time_burst: must not be negative (got -1)");
	expect_error("{\"bandwidth\": {\"size\": 1, \"refill_time\": 18446744073710}}",
		     "rate_limiter: bandwidth: refill_time: must be at most 18446744073709 "
		     "(got 18446744073710)");
	expect_error("{\"bandwidth\": {\"refill_time\": 1}}",
		     "rate_limiter: bandwidth: missing field \"size\"");
	expect_error("{\"ops\": {\"size\": 1}}", "rate_limiter: ops: missing field \"refill_time\"");
	expect_error("{\"ops\": 5}", "rate_limiter: ops: expected an object, got integer");
	/* A bad value given is named before a missing field. */
	expect_error("{\"bandwidth\": {\"size\": -1}}",
		     "rate_limiter: bandwidth: size: must not be negative (got -1)");
	expect_error("{\"ops\": {\"size\": 1, \"refill_time\": 1}, \"bandwidth\": \"fast\"}",
		     "rate_limiter: bandwidth: expected an object, got string");

	/* The field's own name, for net's two limiters. */
	json_t *j = json_pack("{s:{s:s}}", "ops", "size", "x");
	struct rate_limiter_config c;
	ember_err e = {{0}};
	assert_int_equal(rate_limiter_config_parse_named(j, "rx_rate_limiter", &c, &e), -1);
	assert_string_equal(e.msg, "rx_rate_limiter: ops: size: expected integer, got string");
	json_decref(j);
}

static char *dump(const struct rate_limiter_config *c)
{
	json_t *j = rate_limiter_config_json(c);
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	return s;
}

static void json_output(void **state)
{
	(void)state;
	/* Firecracker's shape: both buckets named, null when off, a zero
	 * one_time_burst as null. */
	struct rate_limiter_config c = bw(1000000, 0, 100);
	char *s = dump(&c);
	assert_string_equal(s, "{\"bandwidth\":{\"size\":1000000,\"one_time_burst\":null,"
			       "\"refill_time\":100},\"ops\":null}");
	free(s);
	c.has_ops = true;
	c.ops = (struct token_bucket_config){.size = 10, .one_time_burst = 5, .refill_time_ms = 1};
	s = dump(&c);
	assert_string_equal(s, "{\"bandwidth\":{\"size\":1000000,\"one_time_burst\":null,"
			       "\"refill_time\":100},\"ops\":{\"size\":10,\"one_time_burst\":5,"
			       "\"refill_time\":1}}");
	free(s);
	/* No enabled bucket: no limiter, as Firecracker reports it. */
	struct rate_limiter_config off = bw(0, 5, 100);
	s = dump(&off);
	assert_string_equal(s, "null");
	free(s);
	off = (struct rate_limiter_config){0};
	s = dump(&off);
	assert_string_equal(s, "null");
	free(s);

	/* Round trip: output parses back to the same config. */
	s = dump(&c);
	struct rate_limiter_config back;
	assert_int_equal(parse(s, &back, NULL), 0);
	assert_config_equal(&back, &c);
	free(s);

	/* And through a live limiter, as GET /vm/config would. */
	struct rate_limiter rl;
	rate_limiter_init(&rl, &c, T0);
	rate_limiter_get_config(&rl, &back);
	assert_config_equal(&back, &c);
	c.bandwidth.size = INT64_MAX;
	c.bandwidth.one_time_burst = UINT64_MAX; /* beyond JSON: clamped */
	s = dump(&c);
	assert_int_equal(parse(s, &back, NULL), 0);
	assert_int_equal(back.bandwidth.size, INT64_MAX);
	assert_int_equal(back.bandwidth.one_time_burst, INT64_MAX);
	free(s);
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

static void timerfd_helper(void **state)
{
	(void)state;
	struct rate_limiter_timer t;
	ember_err e = {{0}};
	assert_int_equal(rate_limiter_timer_open(&t, &e), 0);
	assert_true(t.fd >= 0);

	/* Not blocked: disarmed, nothing to read. */
	struct rate_limiter rl;
	struct rate_limiter_config c = bw(10, 0, 1);
	uint64_t now = rate_limiter_now_ns();
	rate_limiter_init(&rl, &c, now);
	assert_int_equal(rate_limiter_timer_arm(&t, &rl, &e), 0);
	assert_false(readable(t.fd, 0));
	assert_int_equal(rate_limiter_timer_clear(&t), 0);

	/* Blocked for 0.1 ms: fires, and clearing makes it quiet again. */
	assert_true(rate_limiter_consume(&rl, 10, RL_BANDWIDTH, now));
	assert_false(rate_limiter_consume(&rl, 1, RL_BANDWIDTH, now));
	assert_int_equal(rate_limiter_timer_arm(&t, &rl, &e), 0);
	assert_true(readable(t.fd, 5000));
	assert_int_equal(rate_limiter_timer_clear(&t), 1);
	assert_false(readable(t.fd, 0));
	assert_true(rate_limiter_timer_fired(&rl, rate_limiter_now_ns()));

	/* A deadline at the end of time arms without firing; unblocking and
	 * arming again disarms it. */
	c = bw(1, 0, RATE_LIMITER_MAX_REFILL_MS);
	rate_limiter_init(&rl, &c, now);
	assert_true(rate_limiter_consume(&rl, UINT64_MAX, RL_BANDWIDTH, now));
	assert_int_equal(rate_limiter_timer_arm(&t, &rl, &e), 0);
	assert_false(readable(t.fd, 10));
	struct rate_limiter_config off = bw(0, 0, 0);
	assert_true(rate_limiter_update(&rl, &off, now));
	assert_int_equal(rate_limiter_timer_arm(&t, &rl, &e), 0);
	assert_int_equal(rate_limiter_timer_clear(&t), 0);

	rate_limiter_timer_close(&t);
	assert_int_equal(t.fd, -1);
	rate_limiter_timer_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refill_over_time),
		cmocka_unit_test(refill_is_exact),
		cmocka_unit_test(one_time_burst),
		cmocka_unit_test(oversize_requests),
		cmocka_unit_test(replenish_pays_debt),
		cmocka_unit_test(ops_and_bandwidth),
		cmocka_unit_test(disabled_buckets),
		cmocka_unit_test(update_mid_flight),
		cmocka_unit_test(overflow_edges),
		cmocka_unit_test(never_above_rate),
		cmocka_unit_test(parse_good),
		cmocka_unit_test(parse_bad),
		cmocka_unit_test(json_output),
		cmocka_unit_test(timerfd_helper),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
