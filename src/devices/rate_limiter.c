/* The token buckets and the limiter over them. All arithmetic is exact: a
 * refill rate is the fraction rate_tokens / rate_ns, products are taken in
 * 128 bits, and the part of a token earned but not yet whole is carried in
 * `frac` instead of being dropped, so no time is lost to rounding. */
#include "devices/rate_limiter.h"

#include <string.h>

__extension__ typedef unsigned __int128 u128;

#define NS_PER_MS 1000000u

static uint64_t sat_u64(u128 v)
{
	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

bool token_bucket_config_enabled(const struct token_bucket_config *c)
{
	return c->size && c->refill_time_ms;
}

/* A new bucket starts full, with its whole one-time burst. */
static void bucket_init(struct token_bucket *b, const struct token_bucket_config *c, uint64_t now)
{
	memset(b, 0, sizeof(*b));
	if (!token_bucket_config_enabled(c))
		return;
	b->size = c->size;
	b->initial_burst = b->burst = c->one_time_burst;
	b->refill_time_ms = c->refill_time_ms;
	/* The parsers bound refill_time_ms so this does not saturate. */
	b->refill_ns = sat_u64((u128)c->refill_time_ms * NS_PER_MS);
	uint64_t g = gcd(b->size, b->refill_ns);
	b->rate_tokens = b->size / g;
	b->rate_ns = b->refill_ns / g;
	b->budget = b->size;
	b->last_ns = now;
}

/* Credits the tokens earned since last_ns. */
static void bucket_refill(struct token_bucket *b, uint64_t now)
{
	if (now < b->last_ns)
		return; /* in debt: nothing is earned before last_ns */
	uint64_t delta = now - b->last_ns;
	b->last_ns = now;
	/* A full bucket earns nothing: time spent full is not banked. */
	if (b->budget >= b->size || delta >= b->refill_ns) {
		b->budget = b->size;
		b->frac = 0;
		return;
	}
	/* delta < refill_ns, so this is below 2^128. */
	u128 num = (u128)delta * b->rate_tokens + b->frac;
	u128 tokens = num / b->rate_ns;
	b->frac = (uint64_t)(num % b->rate_ns);
	if (tokens >= b->size - b->budget) {
		b->budget = b->size;
		b->frac = 0;
	} else {
		b->budget += (uint64_t)tokens;
	}
}

/* Nanoseconds from last_ns until k more tokens have been earned. */
static uint64_t bucket_time_for(const struct token_bucket *b, uint64_t k)
{
	u128 num = (u128)k * b->rate_ns;
	if (num <= b->frac)
		return 0;
	num -= b->frac;
	return sat_u64((num + b->rate_tokens - 1) / b->rate_tokens);
}

enum verdict { TAKE, OVERSIZE, WAIT };

/* Whether `tokens` can be taken now; for WAIT, *until is when they can. */
static enum verdict bucket_check(struct token_bucket *b, uint64_t tokens, uint64_t now,
				 uint64_t *until)
{
	if (!b->size || tokens <= b->burst)
		return TAKE;
	bucket_refill(b, now);
	uint64_t need = tokens - b->burst;
	if (need <= b->budget)
		return TAKE;
	if (now < b->last_ns) {
		/* In debt (budget is 0): an oversize request waits for the debt
		 * to be paid, another one for its tokens on top of that. */
		*until = need > b->size ? b->last_ns
				       : sat_add(b->last_ns, bucket_time_for(b, need));
		return WAIT;
	}
	if (need > b->size)
		return OVERSIZE;
	*until = sat_add(now, bucket_time_for(b, need - b->budget));
	return WAIT;
}

/* Takes the tokens bucket_check allowed (right after it, so last_ns == now
 * unless in debt). An oversize request empties the bucket and puts it in
 * debt for the excess: last_ns moves to when the excess will have been
 * earned, which is returned. Otherwise returns 0. */
static uint64_t bucket_take(struct token_bucket *b, uint64_t tokens, uint64_t now)
{
	if (!b->size)
		return 0;
	if (tokens <= b->burst) {
		b->burst -= tokens;
		return 0;
	}
	uint64_t need = tokens - b->burst;
	b->burst = 0;
	if (need <= b->budget) {
		b->budget -= need;
		return 0;
	}
	uint64_t excess = need - b->budget;
	b->budget = 0;
	u128 num = (u128)excess * b->rate_ns;
	if (num <= b->frac) {
		b->frac -= (uint64_t)num;
		return 0;
	}
	num -= b->frac;
	u128 wait = (num + b->rate_tokens - 1) / b->rate_tokens;
	if (wait >= UINT64_MAX - now) {
		b->last_ns = UINT64_MAX;
		b->frac = 0;
	} else {
		b->last_ns = now + (uint64_t)wait;
		/* What the last nanosecond earns beyond the excess. */
		b->frac = (uint64_t)(wait * b->rate_tokens - num);
	}
	return b->last_ns;
}

static void bucket_replenish(struct token_bucket *b, uint64_t tokens, uint64_t now)
{
	if (!b->size || !tokens)
		return;
	/* As Firecracker: while the burst lasts, tokens go back to it. */
	if (b->burst) {
		b->burst = sat_add(b->burst, tokens);
		if (b->burst > b->initial_burst)
			b->burst = b->initial_burst;
		return;
	}
	bucket_refill(b, now);
	if (now >= b->last_ns) {
		b->budget = sat_add(b->budget, tokens);
		if (b->budget >= b->size) {
			b->budget = b->size;
			b->frac = 0;
		}
		return;
	}
	/* In debt: the tokens pay it back. Amounts here are numerators over
	 * rate_ns (as frac is): the returned tokens are tokens * rate_ns, the
	 * debt is what the time from now to last_ns would earn. */
	u128 num = (u128)tokens * b->rate_ns + b->frac;
	u128 debt = (u128)(b->last_ns - now) * b->rate_tokens;
	if (num < debt) {
		b->last_ns -= (uint64_t)(num / b->rate_tokens);
		b->frac = (uint64_t)(num % b->rate_tokens);
		return;
	}
	num -= debt;
	b->last_ns = now;
	u128 whole = num / b->rate_ns;
	b->frac = (uint64_t)(num % b->rate_ns);
	if (whole >= b->size) {
		b->budget = b->size;
		b->frac = 0;
	} else {
		b->budget = (uint64_t)whole;
	}
}

void rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *c,
		       uint64_t now_ns)
{
	static const struct token_bucket_config off;
	memset(rl, 0, sizeof(*rl));
	bucket_init(&rl->bucket[RL_BANDWIDTH], c->has_bandwidth ? &c->bandwidth : &off, now_ns);
	bucket_init(&rl->bucket[RL_OPS], c->has_ops ? &c->ops : &off, now_ns);
}

bool rate_limiter_enabled(const struct rate_limiter *rl)
{
	return rl->bucket[RL_BANDWIDTH].size || rl->bucket[RL_OPS].size;
}

/* A block ends by itself once its time has come, even if the device's
 * timer event has not been handled yet. */
static bool still_blocked(struct rate_limiter *rl, uint64_t now)
{
	if (rl->blocked && now >= rl->unblock_ns)
		rl->blocked = false;
	return rl->blocked;
}

bool rate_limiter_consume_both(struct rate_limiter *rl, uint64_t bytes, uint64_t ops,
			       uint64_t now_ns)
{
	if (still_blocked(rl, now_ns))
		return false;
	const uint64_t want[2] = {[RL_BANDWIDTH] = bytes, [RL_OPS] = ops};
	bool wait = false;
	uint64_t until = 0;
	for (int i = 0; i < 2; i++) {
		uint64_t t = 0;
		if (bucket_check(&rl->bucket[i], want[i], now_ns, &t) == WAIT) {
			wait = true;
			until = max_u64(until, t);
		}
	}
	if (!wait) {
		for (int i = 0; i < 2; i++)
			until = max_u64(until, bucket_take(&rl->bucket[i], want[i], now_ns));
		if (until <= now_ns)
			return true;
	}
	rl->blocked = true;
	rl->unblock_ns = until;
	return !wait;
}

bool rate_limiter_consume(struct rate_limiter *rl, uint64_t tokens, enum rate_limiter_token t,
			  uint64_t now_ns)
{
	return rate_limiter_consume_both(rl, t == RL_BANDWIDTH ? tokens : 0,
					 t == RL_OPS ? tokens : 0, now_ns);
}

void rate_limiter_replenish(struct rate_limiter *rl, uint64_t tokens, enum rate_limiter_token t,
			    uint64_t now_ns)
{
	if (t == RL_BANDWIDTH || t == RL_OPS)
		bucket_replenish(&rl->bucket[t], tokens, now_ns);
}

bool rate_limiter_is_blocked(const struct rate_limiter *rl)
{
	return rl->blocked;
}

uint64_t rate_limiter_deadline_ns(const struct rate_limiter *rl)
{
	return rl->blocked ? rl->unblock_ns : 0;
}

uint64_t rate_limiter_wait_ns(const struct rate_limiter *rl, uint64_t now_ns)
{
	if (!rl->blocked)
		return 0;
	return rl->unblock_ns > now_ns ? rl->unblock_ns - now_ns : 1;
}

bool rate_limiter_timer_fired(struct rate_limiter *rl, uint64_t now_ns)
{
	return !still_blocked(rl, now_ns);
}

bool rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *c,
			 uint64_t now_ns)
{
	if (c->has_bandwidth)
		bucket_init(&rl->bucket[RL_BANDWIDTH], &c->bandwidth, now_ns);
	if (c->has_ops)
		bucket_init(&rl->bucket[RL_OPS], &c->ops, now_ns);
	/* A new bucket may let the blocked request through at once: let the
	 * device retry rather than wait out a deadline computed from the old
	 * rate. A bucket left as is and still in debt blocks again. */
	if (!rl->blocked || !(c->has_bandwidth || c->has_ops))
		return false;
	rl->blocked = false;
	return true;
}

static void bucket_get_config(const struct token_bucket *b, bool *has,
			      struct token_bucket_config *out)
{
	*has = b->size != 0;
	*out = (struct token_bucket_config){0};
	if (*has)
		*out = (struct token_bucket_config){.size = b->size,
						    .one_time_burst = b->initial_burst,
						    .refill_time_ms = b->refill_time_ms};
}

void rate_limiter_get_config(const struct rate_limiter *rl, struct rate_limiter_config *out)
{
	bucket_get_config(&rl->bucket[RL_BANDWIDTH], &out->has_bandwidth, &out->bandwidth);
	bucket_get_config(&rl->bucket[RL_OPS], &out->has_ops, &out->ops);
}
