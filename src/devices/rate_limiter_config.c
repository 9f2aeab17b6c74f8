/* Firecracker's RateLimiter and TokenBucket objects in JSON. Parsed by hand
 * rather than with json_unpack so that null (which Firecracker accepts for
 * every optional field) is allowed and every error names its field path. */
#include "devices/rate_limiter.h"

#include <string.h>

#include "vmm/config.h"

static int parse_count(json_t *v, const char *name, const char *bucket, const char *field,
		       uint64_t max, uint64_t *out, ember_err *e)
{
	if (!json_is_integer(v))
		return err_set(e, "%s: %s: %s: expected integer, got %s", name, bucket, field,
			       json_type_name(v));
	json_int_t n = json_integer_value(v);
	if (n < 0)
		return err_set(e, "%s: %s: %s: must not be negative (got %lld)", name, bucket,
			       field, (long long)n);
	if ((uint64_t)n > max)
		return err_set(e, "%s: %s: %s: must be at most %llu (got %lld)", name, bucket,
			       field, (unsigned long long)max, (long long)n);
	*out = (uint64_t)n;
	return 0;
}

static int parse_bucket(json_t *j, const char *name, const char *bucket, bool *has,
			struct token_bucket_config *out, ember_err *e)
{
	*has = false;
	*out = (struct token_bucket_config){0};
	if (json_is_null(j))
		return 0;
	if (!json_is_object(j))
		return err_set(e, "%s: %s: expected an object, got %s", name, bucket,
			       json_type_name(j));
	bool size = false, refill = false;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		int rc;
		if (!strcmp(key, "size")) {
			rc = parse_count(v, name, bucket, key, UINT64_MAX, &out->size, e);
			size = true;
		} else if (!strcmp(key, "refill_time")) {
			rc = parse_count(v, name, bucket, key, RATE_LIMITER_MAX_REFILL_MS,
					 &out->refill_time_ms, e);
			refill = true;
		} else if (!strcmp(key, "one_time_burst")) {
			rc = json_is_null(v) ? 0
					     : parse_count(v, name, bucket, key, UINT64_MAX,
							   &out->one_time_burst, e);
		} else {
			return err_set(e, "%s: %s: unknown field `%s`", name, bucket, key);
		}
		if (rc)
			return rc;
	}
	if (!size)
		return err_set(e, "%s: %s: missing field `size`", name, bucket);
	if (!refill)
		return err_set(e, "%s: %s: missing field `refill_time`", name, bucket);
	*has = true;
	return 0;
}

int rate_limiter_config_parse_named(json_t *j, const char *name, struct rate_limiter_config *out,
				    ember_err *e)
{
	struct rate_limiter_config c = {0};
	if (j && !json_is_null(j)) {
		if (!json_is_object(j))
			return err_set(e, "%s: expected an object, got %s", name,
				       json_type_name(j));
		const char *key;
		json_t *v;
		json_object_foreach(j, key, v) {
			int rc;
			if (!strcmp(key, "bandwidth"))
				rc = parse_bucket(v, name, key, &c.has_bandwidth, &c.bandwidth, e);
			else if (!strcmp(key, "ops"))
				rc = parse_bucket(v, name, key, &c.has_ops, &c.ops, e);
			else
				return err_set(e, "%s: unknown field `%s`", name, key);
			if (rc)
				return rc;
		}
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
