/* Firecracker's RateLimiter and TokenBucket objects in JSON; every error
 * names its field path. */
#include "devices/rate_limiter.h"

#include <stdio.h>
#include <string.h>

#include "util/json_strict.h"

static int check_count(struct jint n, const char *what, const char *field, uint64_t max,
		       uint64_t *out, ember_err *e)
{
	if (!n.set)
		return 0;
	if (n.v < 0)
		return err_set(e, "%s: %s: must not be negative (got %lld)", what, field,
			       (long long)n.v);
	if ((uint64_t)n.v > max)
		return err_set(e, "%s: %s: must be at most %llu (got %lld)", what, field,
			       (unsigned long long)max, (long long)n.v);
	*out = (uint64_t)n.v;
	return 0;
}

static int parse_bucket(json_t *j, const char *name, const char *bucket, bool *has,
			struct token_bucket_config *out, ember_err *e)
{
	*has = false;
	*out = (struct token_bucket_config){0};
	if (!j)
		return 0;
	char what[128];
	snprintf(what, sizeof(what), "%s: %s", name, bucket);
	struct {
		struct jint size, one_time_burst, refill_time;
	} v;
	/* size and refill_time are required, but a bad value given is named
	 * before a missing field. */
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), size, JF_INT, false),
		JFIELD(__typeof__(v), one_time_burst, JF_INT, false),
		JFIELD(__typeof__(v), refill_time, JF_INT, false),
	};
	if (json_strict_parse(what, j, f, 3, &v, e) ||
	    check_count(v.size, what, "size", UINT64_MAX, &out->size, e) ||
	    check_count(v.one_time_burst, what, "one_time_burst", UINT64_MAX, &out->one_time_burst,
			e) ||
	    check_count(v.refill_time, what, "refill_time", RATE_LIMITER_MAX_REFILL_MS,
			&out->refill_time_ms, e))
		return -1;
	static const char *const required[] = {"size", "refill_time"};
	for (size_t i = 0; i < 2; i++) {
		json_t *r = json_object_get(j, required[i]);
		if (!r)
			return err_set(e, "%s: missing field \"%s\"", what, required[i]);
		if (json_is_null(r))
			return err_set(e, "%s: %s: expected integer, got null", what, required[i]);
	}
	*has = true;
	return 0;
}

int rate_limiter_config_parse_named(json_t *j, const char *name, struct rate_limiter_config *out,
				    ember_err *e)
{
	struct rate_limiter_config c = {0};
	if (j && !json_is_null(j)) {
		struct {
			json_t *bandwidth, *ops;
		} v;
		static const struct jfield f[] = {
			JFIELD(__typeof__(v), bandwidth, JF_OBJECT, false),
			JFIELD(__typeof__(v), ops, JF_OBJECT, false),
		};
		if (json_strict_parse(name, j, f, 2, &v, e) ||
		    parse_bucket(v.bandwidth, name, "bandwidth", &c.has_bandwidth, &c.bandwidth, e) ||
		    parse_bucket(v.ops, name, "ops", &c.has_ops, &c.ops, e))
			return -1;
	}
	*out = c;
	return 0;
}

int rate_limiter_config_parse(json_t *j, struct rate_limiter_config *out, ember_err *e)
{
	return rate_limiter_config_parse_named(j, "rate_limiter", out, e);
}

/* Parsed values fit; values set from C beyond JSON's range are clamped. */
static json_t *count_json(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *bucket_json(bool has, const struct token_bucket_config *b)
{
	if (!has || !token_bucket_config_enabled(b))
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "size", count_json(b->size));
	json_object_set_new(o, "one_time_burst",
			    b->one_time_burst ? count_json(b->one_time_burst) : json_null());
	json_object_set_new(o, "refill_time", count_json(b->refill_time_ms));
	return o;
}

json_t *rate_limiter_config_json(const struct rate_limiter_config *c)
{
	bool bw = c->has_bandwidth && token_bucket_config_enabled(&c->bandwidth);
	bool ops = c->has_ops && token_bucket_config_enabled(&c->ops);
	if (!bw && !ops)
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "bandwidth", bucket_json(bw, &c->bandwidth));
	json_object_set_new(o, "ops", bucket_json(ops, &c->ops));
	return o;
}

void rate_limiter_config_apply_update(struct rate_limiter_config *base,
				      const struct rate_limiter_config *patch)
{
	if (patch->has_bandwidth) {
		base->has_bandwidth = token_bucket_config_enabled(&patch->bandwidth);
		base->bandwidth = patch->bandwidth;
	}
	if (patch->has_ops) {
		base->has_ops = token_bucket_config_enabled(&patch->ops);
		base->ops = patch->ops;
	}
}
